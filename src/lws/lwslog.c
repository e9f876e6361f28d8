/* lwslog.c — libwebsockets' log calls, filtered before they cost anything
 * (lwslog.h). */
#include "lwslog.h"

#include <libwebsockets.h>
#include <stdarg.h>
#include <stdio.h>

#include "lwsc.h"

/* Process-wide, like lws's own log level: these functions get no context. */
static int lwslog_mask = LLL_ERR | LLL_WARN;
static unsigned long lwslog_count;

void lwslog_set_mask(int mask)
{
    lwslog_mask = mask;
}

unsigned long lwslog_calls(void)
{
    return lwslog_count;
}

/* On a version not checked, nothing is dropped here: lws's level check
 * decides, as in its own _lws_log. */
static int lwslog_dropped(int filter)
{
    lwslog_count++;
    return !(lwslog_mask & filter) && lwsc_checked();
}

void _lws_log(int filter, const char *format, ...)
{
    if (lwslog_dropped(filter))
        return;
    va_list ap;
    va_start(ap, format);
    _lws_logv(filter, format, ap);
    va_end(ap);
}

#if LWS_LIBRARY_VERSION_MAJOR == 4 && LWS_LIBRARY_VERSION_MINOR == 3
/* lws 4.3's log call for lines about an object (a context, vhost or wsi):
 * lws exports no va_list form of it, so a line that passes is formatted
 * here, with lws's own prefix for the object, and handed to _lws_logv. */
void _lws_log_cx(lws_log_cx_t *cx, lws_log_prepend_cx_t prep, void *obj, int filter,
                 const char *_fun, const char *format, ...)
{
    if (lwslog_dropped(filter) || (cx && !(cx->lll_flags & (uint32_t)filter)))
        return;
    char line[1024], *p = line, *e = line + sizeof(line) - 1;
    *p = '\0';
    if (prep && obj)
        prep(cx, obj, &p, e);
    if (_fun && p < e)
        p += snprintf(p, (size_t)(e - p), "%s: ", _fun);
    if (p < e) {
        va_list ap;
        va_start(ap, format);
        vsnprintf(p, (size_t)(e - p), format, ap);
        va_end(ap);
    }
    _lws_log(filter, "%s", line);
}
#endif
