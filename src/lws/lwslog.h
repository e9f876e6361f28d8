/* lwslog.h — libwebsockets' log calls, filtered before they cost anything.
 *
 * Debian builds lws without NDEBUG, so every lwsl_debug() and lwsl_info()
 * of its hot paths (a handshake, a POLLOUT, a close) is compiled in, and
 * lws's own _lws_log and (4.3) _lws_log_cx set up a va_list and make
 * further calls before they look at the level: that was a measurable
 * share of a connect storm's and a broadcast's CPU.  lwslog.c defines both
 * in the executable; when lws calls them through its PLT (a Debian build),
 * a level nobody asked for returns at once, and the rest goes on to lws's
 * formatter and from there to log.c.  When lws binds its own calls
 * (-Bsymbolic-functions, LTO) its own versions run: slower, same lines.
 * lwsc.c reports which ("fast path logs"). */
#ifndef MG_LWSLOG_H
#define MG_LWSLOG_H

/* The lws LLL_* levels that are passed on (log.c sets them with
 * lws_set_log_level, and tells this file). */
void lwslog_set_mask(int mask);

/* How many of lws's log calls have reached this file (the probe). */
unsigned long lwslog_calls(void);

#endif
