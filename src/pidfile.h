/* pidfile.h — the pid file (pid_file:) and `moongate --signal`, which
 * signals the process it names.
 *
 * The running gateway writes its pid (the master's with workers: N) once
 * its listeners are bound, to a temporary file renamed into place, and
 * removes it when it exits cleanly.  At start a pid file that names a
 * running moongate stops the new one; a stale one is overwritten. */
#ifndef MG_PIDFILE_H
#define MG_PIDFILE_H

#include <stddef.h>

/* Exit statuses of `moongate --signal`. */
#define PIDFILE_EXIT_SENT 0        /* the signal was sent */
#define PIDFILE_EXIT_ERROR 1       /* bad arguments or config, no pid_file, not permitted */
#define PIDFILE_EXIT_NOT_RUNNING 3 /* no pid file, or its process is gone (LSB's "not running") */

/* Before binding: 0 when path is absent or stale, -1 with err when it
 * names a running moongate. */
int pidfile_check(const char *path, char *err, size_t errlen);

/* Write this process's pid to path (temporary file, then rename).  0, or
 * -1 with err. */
int pidfile_write(const char *path, char *err, size_t errlen);

/* Remove path if it still holds this process's pid (a newer instance's
 * file is left alone); a failure is logged. */
void pidfile_remove(const char *path);

/* `moongate --signal NAME -c FILE`: NAME is reload, stop, quit or reopen.
 * Messages go to stderr; returns one of the PIDFILE_EXIT_* statuses. */
int pidfile_signal(const char *config_file, const char *name);

#endif
