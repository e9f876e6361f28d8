/* log.h — leveled log lines to stderr or log.file, as text or JSON lines.
 *
 * The log is the one process-wide sink (signal-free, single-threaded use):
 * log_configure() sets level and format, every module writes through
 * log_msg()/log_conn(), and libwebsockets' own warnings are routed here too. */
#ifndef MG_LOG_H
#define MG_LOG_H

#include <stdint.h>
#include "config.h"

void log_configure(mg_log_level level, mg_log_format format);
int log_enabled(mg_log_level level);
/* A worker of `workers: N` marks its lines: "[w2] " in text, "worker":2 in
 * JSON. */
void log_set_worker(uint32_t k);

/* conn_id 0 means "no connection". */
void log_conn(mg_log_level level, uint64_t conn_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(...) log_conn(MG_LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...) log_conn(MG_LOG_INFO, 0, __VA_ARGS__)
#define log_warn(...) log_conn(MG_LOG_WARN, 0, __VA_ARGS__)
#define log_error(...) log_conn(MG_LOG_ERROR, 0, __VA_ARGS__)

/* log.file: send the lines to path from now on (appending, creating it
 * 0640).  0, or -1 with err. */
int log_open_file(const char *path, char *err, size_t errlen);
/* SIGUSR1: open log.file's path again (after logrotate renamed it) and
 * write there from now on.  On failure the old file stays in use and an
 * error is logged.  0 or -1; 0 without a log file. */
int log_reopen(void);
/* Write to fd's file from now on (a worker, given the master's reopened
 * file).  The caller keeps fd.  0 or -1. */
int log_adopt(int fd);
/* log.file's descriptor, or -1 when lines go to stderr. */
int log_file_fd(void);
/* The gateway is ready: errors stop being copied to stderr. */
void log_started(void);

/* Route libwebsockets' log output (warnings and errors) into ours. */
void log_hook_lws(void);

#endif
