/* log.c — leveled log lines to stderr or log.file, as text or JSON lines.
 *
 * Text:  2026-11-22T04:20:00.123Z INFO  [conn 12] message
 * JSON:  {"ts":"...","level":"info","conn":12,"msg":"..."}
 * A record is formatted into one buffer and written with one write(2), so
 * lines never interleave, and multi-line text (Lua tracebacks) stays one
 * record: in JSON its newlines are escaped.
 *
 * With log.file the lines go to that file (O_APPEND, so processes sharing
 * it never overwrite each other); log_reopen() opens the path again and
 * swaps the new file onto the same descriptor with dup3(), so a writer on
 * another thread sees the old file or the new one, never a closed fd. */
#include "log.h"

#include <libwebsockets.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lwslog.h"

static struct {
    mg_log_level level;
    mg_log_format format;
    int lws_mask;    /* lws LLL_* levels passed on */
    uint32_t worker; /* workers: N: this process's number, 0 otherwise */
    int fd;          /* where lines go: STDERR_FILENO, or log.file's descriptor */
    int starting;    /* until log_started(): errors go to stderr as well */
    char path[4096]; /* log.file, or "" */
} log_state = {MG_LOG_INFO, MG_LOG_TEXT, LLL_ERR | LLL_WARN, 0, STDERR_FILENO, 1, ""};

static const char *const log_names[] = {"debug", "info", "warn", "error"};
static const char *const log_tags[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

void log_configure(mg_log_level level, mg_log_format format)
{
    log_state.level = level;
    log_state.format = format;
}

void log_set_worker(uint32_t k)
{
    log_state.worker = k;
}

int log_enabled(mg_log_level level)
{
    return level >= log_state.level;
}

static size_t log_timestamp(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
    return n;
}

/* Append s to out as the inside of a JSON string. */
static size_t log_json_escape(char *out, size_t cap, size_t n, const char *s)
{
    for (; *s && n + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[n++] = '\\';
            out[n++] = (char)ch;
        } else if (ch == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else if (ch < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", ch);
        } else {
            out[n++] = (char)ch;
        }
    }
    return n;
}

static void log_write(mg_log_level level, uint64_t conn_id, const char *msg)
{
    char line[8192];
    char ts[40];
    size_t n = 0, cap = sizeof(line) - 2;

    log_timestamp(ts, sizeof(ts));
    if (log_state.format == MG_LOG_JSON) {
        n = (size_t)snprintf(line, cap, "{\"ts\":\"%s\",\"level\":\"%s\",", ts, log_names[level]);
        if (log_state.worker)
            n += (size_t)snprintf(line + n, cap - n, "\"worker\":%u,", log_state.worker);
        if (conn_id)
            n += (size_t)snprintf(line + n, cap - n, "\"conn\":%llu,", (unsigned long long)conn_id);
        n += (size_t)snprintf(line + n, cap - n, "\"msg\":\"");
        n = log_json_escape(line, cap, n, msg);
        line[n++] = '"';
        line[n++] = '}';
    } else {
        char who[16] = "";
        if (log_state.worker)
            snprintf(who, sizeof(who), "[w%u] ", log_state.worker);
        if (conn_id)
            n = (size_t)snprintf(line, cap, "%s %s %s[conn %llu] %s", ts, log_tags[level], who,
                                 (unsigned long long)conn_id, msg);
        else
            n = (size_t)snprintf(line, cap, "%s %s %s%s", ts, log_tags[level], who, msg);
        if (n > cap)
            n = cap;
    }
    line[n++] = '\n';
    ssize_t w = write(log_state.fd, line, n);
    /* Until the gateway is ready, errors also reach whoever started it:
     * a port in use is seen at the terminal, not only in the file. */
    if (log_state.fd != STDERR_FILENO && log_state.starting && level == MG_LOG_ERROR)
        w = write(STDERR_FILENO, line, n);
    (void)w;
}

static int log_open_path(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
}

int log_open_file(const char *path, char *err, size_t errlen)
{
    if (strlen(path) >= sizeof(log_state.path)) {
        snprintf(err, errlen, "log.file: path too long");
        return -1;
    }
    int fd = log_open_path(path);
    if (fd < 0) {
        snprintf(err, errlen, "log.file: cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    snprintf(log_state.path, sizeof(log_state.path), "%s", path);
    log_state.fd = fd;
    return 0;
}

int log_reopen(void)
{
    if (log_state.fd == STDERR_FILENO)
        return 0;
    int fd = log_open_path(log_state.path);
    if (fd < 0) {
        log_error("cannot reopen the log file %s: %s (still writing to the old one)",
                  log_state.path, strerror(errno));
        return -1;
    }
    int rc = log_adopt(fd);
    close(fd);
    return rc;
}

int log_adopt(int fd)
{
    if (log_state.fd == STDERR_FILENO)
        return 0;
    if (dup3(fd, log_state.fd, O_CLOEXEC) < 0) {
        log_error("cannot switch to the reopened log file: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int log_file_fd(void)
{
    return log_state.fd == STDERR_FILENO ? -1 : log_state.fd;
}

void log_started(void)
{
    log_state.starting = 0;
}

void log_conn(mg_log_level level, uint64_t conn_id, const char *fmt, ...)
{
    char msg[6144];
    va_list ap;

    if (!log_enabled(level))
        return;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof(msg))
        n = (int)sizeof(msg) - 1;
    while (n > 0 && msg[n - 1] == '\n') /* one record, one line ending */
        msg[--n] = '\0';
    log_write(level, conn_id, msg);
}

static void log_from_lws(int level, const char *line)
{
    char msg[1024];
    size_t n = strlen(line);

    /* lws lines carry their own timestamp prefix "[date] W: " and a newline. */
    const char *p = strstr(line, "]");
    if (p && p[1] == ' ')
        line = p + 2;
    n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    snprintf(msg, sizeof(msg), "lws: %.*s", (int)n, line);
    log_write(level == LLL_ERR    ? MG_LOG_ERROR
              : level == LLL_WARN ? MG_LOG_WARN
                                  : MG_LOG_INFO,
              0, msg);
}

/* MOONGATE_LWS_LOG=<mask> (lws LLL_* bits, e.g. 15 for err..info) turns on
 * more of libwebsockets' own logging, for debugging. */
void log_hook_lws(void)
{
    const char *mask = getenv("MOONGATE_LWS_LOG");
    log_state.lws_mask = mask ? atoi(mask) : (LLL_ERR | LLL_WARN);
    lws_set_log_level(log_state.lws_mask, log_from_lws);
    lwslog_set_mask(log_state.lws_mask);
}
