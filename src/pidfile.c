/* pidfile.c — the pid file and `moongate --signal` (pidfile.h). */
#include "pidfile.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

/* The pid path holds: >0, 0 when it holds no pid, -1 with errno when it
 * cannot be read. */
static long pidfile_read(const char *path)
{
    char buf[32];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *end;
    long pid = strtol(buf, &end, 10);
    if (end == buf || (*end && *end != '\n') || pid <= 0 || pid > 4194304)
        return 0;
    return pid;
}

/* The comm (executable name) of pid into out; 0 or -1. */
static int pidfile_comm(const char *pid, char *out, size_t len)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%s/comm", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    int ok = fgets(out, (int)len, f) != NULL;
    fclose(f);
    if (!ok)
        return -1;
    out[strcspn(out, "\n")] = '\0';
    return 0;
}

/* pid runs, and runs the same program as this process (a pid reused by
 * something else after a crash is not moongate).  1, 0, or -1 when it runs
 * something else (its name in other). */
static int pidfile_is_moongate(long pid, char *other, size_t len)
{
    char me[64], it[64], num[24];
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
        return 0;
    snprintf(num, sizeof(num), "%ld", pid);
    if (pidfile_comm(num, it, sizeof(it)) != 0)
        return 0; /* gone meanwhile */
    if (pidfile_comm("self", me, sizeof(me)) == 0 && strcmp(me, it) != 0) {
        snprintf(other, len, "%s", it);
        return -1;
    }
    return 1;
}

int pidfile_check(const char *path, char *err, size_t errlen)
{
    char other[64];
    long pid = pidfile_read(path);
    if (pid <= 0 || pid == (long)getpid())
        return 0;
    if (pidfile_is_moongate(pid, other, sizeof(other)) == 1) {
        snprintf(err, errlen,
                 "pid_file %s names a running moongate (pid %ld): stop it first "
                 "(moongate --signal quit -c FILE)",
                 path, pid);
        return -1;
    }
    return 0;
}

int pidfile_write(const char *path, char *err, size_t errlen)
{
    char tmp[4200], line[24];
    if (snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid()) >= (int)sizeof(tmp)) {
        snprintf(err, errlen, "pid_file: path too long");
        return -1;
    }
    long old = pidfile_read(path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "pid_file: cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    int n = snprintf(line, sizeof(line), "%d\n", (int)getpid());
    int bad = write(fd, line, (size_t)n) != n;
    bad |= close(fd) != 0;
    if (bad || rename(tmp, path) != 0) {
        snprintf(err, errlen, "pid_file: cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (old > 0 && old != (long)getpid())
        log_info("pid_file %s: replaced a stale one (pid %ld is not running)", path, old);
    return 0;
}

void pidfile_remove(const char *path)
{
    if (pidfile_read(path) != (long)getpid())
        return;
    if (unlink(path) != 0 && errno != ENOENT)
        log_warn("cannot remove pid_file %s: %s (the next start replaces it)", path,
                 strerror(errno));
}

/* ---- moongate --signal ---- */

static const struct {
    const char *name;
    int sig;
} pidfile_signals[] = {
    {"reload", SIGHUP},
    {"reopen", SIGUSR1},
    {"quit", SIGQUIT},
    {"stop", SIGTERM},
};

/* stop: SIGTERM starts the drain, and SIGINT, a second drain signal, stops
 * at once.  Two SIGTERMs would merge into one while the first is pending;
 * two different signals are both delivered. */
static int pidfile_stop(long pid)
{
    if (kill((pid_t)pid, SIGTERM) != 0)
        return -1;
    if (kill((pid_t)pid, SIGINT) != 0 && errno != ESRCH)
        return -1;
    return 0;
}

int pidfile_signal(const char *config_file, const char *name)
{
    char err[2048], other[64];
    int sig = 0;
    for (size_t i = 0; i < sizeof(pidfile_signals) / sizeof(pidfile_signals[0]); i++)
        if (!strcmp(name, pidfile_signals[i].name))
            sig = pidfile_signals[i].sig;
    if (!sig) {
        fprintf(stderr, "moongate: --signal: unknown '%s' (reload, stop, quit or reopen)\n", name);
        return PIDFILE_EXIT_ERROR;
    }
    if (!config_file) {
        fprintf(stderr, "moongate: --signal needs -c FILE: its pid_file names the process\n");
        return PIDFILE_EXIT_ERROR;
    }
    mg_config *cfg = config_load(config_file, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "moongate: %s\n", err);
        return PIDFILE_EXIT_ERROR;
    }
    int rc = PIDFILE_EXIT_ERROR;
    const char *path = cfg->pid_file;
    long pid;
    if (!path) {
        fprintf(stderr, "moongate: %s sets no pid_file: cannot find the running moongate\n",
                config_file);
    } else if ((pid = pidfile_read(path)) < 0) {
        fprintf(stderr, "moongate: cannot read pid_file %s: %s%s\n", path, strerror(errno),
                errno == ENOENT ? " (is moongate running?)" : "");
        rc = errno == ENOENT ? PIDFILE_EXIT_NOT_RUNNING : PIDFILE_EXIT_ERROR;
    } else if (pid == 0) {
        fprintf(stderr, "moongate: pid_file %s holds no pid\n", path);
    } else {
        int is = pidfile_is_moongate(pid, other, sizeof(other));
        if (is == 0) {
            fprintf(stderr, "moongate: pid %ld from %s is not running (a stale pid file)\n", pid,
                    path);
            rc = PIDFILE_EXIT_NOT_RUNNING;
        } else if (is < 0) {
            fprintf(stderr, "moongate: pid %ld from %s runs '%s', not moongate: not signalled\n",
                    pid, path, other);
            rc = PIDFILE_EXIT_NOT_RUNNING;
        } else if ((sig == SIGTERM ? pidfile_stop(pid) : kill((pid_t)pid, sig)) != 0) {
            fprintf(stderr, "moongate: cannot signal pid %ld: %s\n", pid, strerror(errno));
            rc = errno == ESRCH ? PIDFILE_EXIT_NOT_RUNNING : PIDFILE_EXIT_ERROR;
        } else {
            rc = PIDFILE_EXIT_SENT;
        }
    }
    config_free(cfg);
    return rc;
}
