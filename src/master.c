/* master.c — the master process of `workers: N` (master.h). */
#include "master.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gwctl.h"
#include "log.h"
#include "notify.h"
#include "pidfile.h"
#include "script.h"
#include "workers.h"

/* A worker that ends sooner than this after its start counts as dying
 * young: the next start waits MASTER_BACKOFF_MIN_MS, doubling up to
 * MASTER_BACKOFF_MAX_MS while it keeps doing so. */
#define MASTER_YOUNG_MS 2000
#define MASTER_BACKOFF_MIN_MS 100
#define MASTER_BACKOFF_MAX_MS 5000
/* How long workers have to answer a reload before it ends without them. */
#define MASTER_RELOAD_WAIT_MS 30000
/* After the drain timeout, this much more before workers are killed. */
#define MASTER_DRAIN_SLACK_MS 5000
#define MASTER_ASKS_MAX 64

typedef struct master_worker {
    pid_t pid;          /* 0: not running */
    int ctl;            /* our end of its channel, or -1 */
    int ready;          /* said MG_CTL_READY */
    int64_t started_ms; /* fork time */
    int64_t start_at;   /* not running: when to start it again (0: now) */
    int64_t backoff_ms;
    int reload_when_ready; /* started during a reload that then succeeded */
} master_worker;

typedef struct master_ask { /* a worker passed on POST /reload */
    uint32_t worker, seq;
} master_ask;

typedef struct master {
    mg_gw *gw;
    mg_shared *sh;
    uint32_t n;
    master_worker w[CONFIG_MAX_WORKERS + 1]; /* w[1..n] */
    int sfd;
    int (*worker_main)(mg_gw *gw);
    int started;     /* every worker was ready once */
    int draining;    /* SIGTERM seen */
    int64_t kill_at; /* draining: when to SIGKILL what is left */
    int failed;      /* a worker ended badly during the drain or at start */
    char *pid_file;  /* written once every worker was ready; removed at exit */
    /* The reload under way. */
    int reloading, again;
    uint32_t seq;
    uint64_t waiting;  /* workers yet to answer: bit k - 1 */
    uint64_t told;     /* workers told to reload */
    uint32_t failed_n; /* workers whose reload failed */
    int checked;       /* the files passed the master's check */
    int64_t reload_deadline;
    int reload_ok;
    char reload_err[1024];
    mg_config *reload_cfg; /* what the workers are switching to */
    master_ask asks[MASTER_ASKS_MAX], next_asks[MASTER_ASKS_MAX];
    int nasks, nnext;
} master;

/* Copy a message into a smaller field, cut if need be. */
static void master_copy(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = 0;
}

int master_ctl_send(int fd, const mg_ctl_msg *m)
{
    return send(fd, m, sizeof(*m), MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)sizeof(*m) ? 0 : -1;
}

/* One message with a descriptor (SCM_RIGHTS): 0, or -1. */
static int master_ctl_send_fd(int fd, const mg_ctl_msg *m, int passfd)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct iovec iov = {.iov_base = (void *)m, .iov_len = sizeof(*m)};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = ctl.buf,
                         .msg_controllen = sizeof(ctl.buf)};
    memset(ctl.buf, 0, sizeof(ctl.buf));
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &passfd, sizeof(int));
    return sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)sizeof(*m) ? 0 : -1;
}

ssize_t master_ctl_recv(int fd, mg_ctl_msg *m, int *passed)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct iovec iov = {.iov_base = m, .iov_len = sizeof(*m)};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = ctl.buf,
                         .msg_controllen = sizeof(ctl.buf)};
    *passed = -1;
    ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n <= 0)
        return n;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
            c->cmsg_len == CMSG_LEN(sizeof(int)))
            memcpy(passed, CMSG_DATA(c), sizeof(int));
    return n;
}

static int master_signalfd(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

/* ---- starting a worker ---- */

/* In the child: nothing of the master's but the shared slots, and an end
 * to the master's death (the worker drains, as on SIGTERM). */
static void master_child(master *m, uint32_t k, int ctl)
{
    for (uint32_t i = 1; i <= m->n; i++)
        if (m->w[i].ctl >= 0)
            close(m->w[i].ctl);
    close(m->sfd);
    /* Out of the master's process group: a Ctrl-C at a terminal reaches the
     * master alone, which drains the workers once (it would otherwise reach
     * each worker too, and the master's SIGTERM would be their second
     * signal: stop at once). */
    setpgid(0, 0);
    /* The master alone speaks to the service manager (notify.h). */
    unsetenv("NOTIFY_SOCKET");
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != m->sh->master_pid)
        _exit(1); /* the master died before the line above */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    mg_gw *gw = m->gw;
    gw->ctl_fd = ctl;
    workers_attach(gw, m->sh, k);
    log_set_worker(k);
    gw->metrics->reloads = gw->metrics->reload_failures = 0; /* the master counts those */
    /* exit, not _exit: LeakSanitizer checks the worker at its exit (stdio
     * was flushed before the fork, so nothing of the master's is written
     * twice). */
    exit(m->worker_main(gw));
}

static int master_start(master *m, uint32_t k)
{
    master_worker *w = &m->w[k];
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0) {
        log_error("worker %u: cannot make its channel: %s", k, strerror(errno));
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        log_error("worker %u: cannot fork: %s", k, strerror(errno));
        close(sp[0]);
        close(sp[1]);
        return -1;
    }
    if (pid == 0) {
        close(sp[0]);
        master_child(m, k, sp[1]);
    }
    close(sp[1]);
    w->pid = pid;
    w->ctl = sp[0];
    w->ready = 0;
    w->reload_when_ready = 0;
    w->started_ms = gw_clock_ms();
    w->start_at = 0;
    m->sh->slot[k - 1].started_ms = w->started_ms;
    __atomic_store_n(&m->sh->slot[k - 1].pid, (int32_t)pid, __ATOMIC_RELAXED);
    return 0;
}

/* ---- reloads ---- */

static void master_reload_answer(master *m, const master_ask *a, int ok, const char *err)
{
    master_worker *w = &m->w[a->worker];
    mg_ctl_msg r = {.type = MG_CTL_RELOAD_DONE, .seq = a->seq, .ok = (uint32_t)ok};
    master_copy(r.error, sizeof(r.error), err);
    if (w->ctl >= 0)
        master_ctl_send(w->ctl, &r);
}

/* Workers not told (forked, or not ready yet, while the reload ran) have
 * the old config: they reload too, now or once ready (untracked: seq 0). */
static void master_reload_late(master *m)
{
    mg_ctl_msg r = {.type = MG_CTL_RELOAD, .seq = 0};
    for (uint32_t k = 1; k <= m->n; k++) {
        master_worker *w = &m->w[k];
        if (!w->pid || (m->told >> (k - 1) & 1))
            continue;
        if (w->ready)
            master_ctl_send(w->ctl, &r);
        else
            w->reload_when_ready = 1;
    }
}

static void master_reload_end(master *m)
{
    mg_shared *sh = m->sh;
    uint32_t told = (uint32_t)__builtin_popcountll(m->told);
    m->reloading = 0;
    if (m->reload_ok) {
        /* Workers started from now on start with it. */
        config_free(m->gw->cfg);
        m->gw->cfg = m->reload_cfg;
        sh->reloads++;
        sh->reload_error[0] = 0;
        log_info("reload ok on every worker (%u)", told);
        master_reload_late(m);
        notify_ready("serving (reloaded)");
    } else {
        config_free(m->reload_cfg);
        sh->reload_failures++;
        master_copy(sh->reload_error, sizeof(sh->reload_error), m->reload_err);
        if (!m->checked || m->failed_n >= told)
            log_error("reload failed: %s (no worker switched)", m->reload_err);
        else
            log_error("reload failed: %s (on %u of %u workers; the others switched)", m->reload_err,
                      m->failed_n, told);
        notify_ready("serving (reload failed)");
    }
    m->reload_cfg = NULL;
    for (int i = 0; i < m->nasks; i++)
        master_reload_answer(m, &m->asks[i], m->reload_ok, m->reload_err);
    m->nasks = 0;
}

static void master_reload_fail(master *m, const char *err)
{
    if (m->reload_ok) {
        m->reload_ok = 0;
        master_copy(m->reload_err, sizeof(m->reload_err), err);
    }
}

/* Check the files once; if they are good, every running worker reloads. */
static void master_reload_begin(master *m)
{
    char err[1024];
    memcpy(m->asks, m->next_asks, sizeof(m->asks[0]) * (size_t)m->nnext);
    m->nasks = m->nnext;
    m->nnext = 0;
    m->again = 0;
    m->reloading = 1;
    m->reload_ok = 1;
    notify_reloading();
    m->reload_err[0] = 0;
    m->waiting = m->told = 0;
    m->failed_n = 0;
    m->checked = 0;
    m->reload_cfg = gwctl_build_config(&m->gw->over, err, sizeof(err));
    if (!m->reload_cfg || script_check(m->reload_cfg->script, err, sizeof(err)) != 0) {
        for (char *p = err; *p; p++)
            if (*p == '\n' || *p == '\t')
                *p = ' ';
        master_reload_fail(m, err);
        master_reload_end(m);
        return;
    }
    m->checked = 1;
    if (m->reload_cfg->workers != m->n)
        log_warn("workers: %u takes effect at the next start (running %u)", m->reload_cfg->workers,
                 m->n);
    m->seq++;
    mg_ctl_msg r = {.type = MG_CTL_RELOAD, .seq = m->seq};
    for (uint32_t k = 1; k <= m->n; k++) {
        master_worker *w = &m->w[k];
        if (w->pid && w->ready && master_ctl_send(w->ctl, &r) == 0)
            m->waiting |= (uint64_t)1 << (k - 1);
        m->told = m->waiting;
    }
    m->reload_deadline = gw_clock_ms() + MASTER_RELOAD_WAIT_MS;
    if (!m->waiting)
        master_reload_end(m);
}

static void master_reload(master *m, uint32_t worker, uint32_t seq)
{
    if (worker && m->nnext < MASTER_ASKS_MAX)
        m->next_asks[m->nnext++] = (master_ask){worker, seq};
    else if (worker) {
        master_ask a = {worker, seq};
        master_reload_answer(m, &a, 0, "too many reloads waiting");
        return;
    }
    if (m->draining) {
        for (int i = 0; i < m->nnext; i++)
            master_reload_answer(m, &m->next_asks[i], 0, "shutting down");
        m->nnext = 0;
        return;
    }
    if (m->reloading)
        m->again = 1;
    else
        master_reload_begin(m);
}

/* Worker k answered the reload, or ended without answering. */
static void master_reloaded(master *m, uint32_t k, int ok, const char *err)
{
    uint64_t bit = (uint64_t)1 << (k - 1);
    if (!m->reloading || !(m->waiting & bit))
        return;
    m->waiting &= ~bit;
    if (!ok) {
        m->failed_n++;
        char e[1100];
        snprintf(e, sizeof(e), "worker %u: %s", k, err);
        master_reload_fail(m, e);
    }
    if (!m->waiting)
        master_reload_end(m);
}

static void master_reload_tick(master *m, int64_t now)
{
    if (m->reloading && now >= m->reload_deadline) {
        for (uint32_t k = 1; k <= m->n; k++)
            if (m->waiting & ((uint64_t)1 << (k - 1)))
                master_reloaded(m, k, 0, "did not answer in time");
    }
    if (!m->reloading && (m->again || m->nnext))
        master_reload_begin(m);
}

/* ---- the channels ---- */

static void master_on_ctl(master *m, uint32_t k)
{
    master_worker *w = &m->w[k];
    mg_ctl_msg msg;
    for (;;) {
        ssize_t n = recv(w->ctl, &msg, sizeof(msg), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n != (ssize_t)sizeof(msg)) {
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
                close(w->ctl); /* it is ending: SIGCHLD tells how */
                w->ctl = -1;
            }
            return;
        }
        msg.error[sizeof(msg.error) - 1] = 0;
        switch (msg.type) {
        case MG_CTL_READY:
            w->ready = 1;
            if (w->reload_when_ready) { /* forked before a reload switched */
                mg_ctl_msg r = {.type = MG_CTL_RELOAD, .seq = 0};
                w->reload_when_ready = 0;
                master_ctl_send(w->ctl, &r);
            }
            break;
        case MG_CTL_RELOADED:
            if (msg.seq == m->seq)
                master_reloaded(m, k, (int)msg.ok, msg.error);
            break;
        case MG_CTL_RELOAD_ASK:
            log_info("worker %u asks for a reload of every worker", k);
            master_reload(m, k, msg.seq);
            break;
        default:
            break;
        }
    }
}

/* ---- workers that end ---- */

static void master_describe(int status, char *out, size_t len)
{
    if (WIFEXITED(status))
        snprintf(out, len, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, len, "killed by signal %d (%s)%s", WTERMSIG(status),
                 strsignal(WTERMSIG(status)), WCOREDUMP(status) ? ", core dumped" : "");
    else
        snprintf(out, len, "ended (status 0x%x)", status);
}

static void master_ended(master *m, uint32_t k, int status)
{
    master_worker *w = &m->w[k];
    mg_worker_slot *sl = &m->sh->slot[k - 1];
    char how[128];
    int64_t now = gw_clock_ms();
    master_describe(status, how, sizeof(how));
    int clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (w->ctl >= 0)
        close(w->ctl);
    w->ctl = -1;
    int was_ready = w->ready;
    pid_t pid = w->pid;
    w->pid = 0;
    w->ready = 0;
    /* What it held is gone with it: the gauges other workers sum. */
    __atomic_store_n(&sl->pid, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&sl->conns_open, 0, __ATOMIC_RELAXED);
    sl->metrics.connections = 0;
    sl->metrics.handshakes_pending = 0;
    sl->metrics.broker_up = 0;
    sl->metrics.broker_unsettled = 0;
    master_reloaded(m, k, 0, "ended during the reload");
    if (m->draining) {
        if (!clean)
            m->failed = 1;
        log_info("worker %u (pid %d) %s", k, (int)pid, how);
        return;
    }
    if (!m->started && !was_ready) {
        log_error("worker %u (pid %d) %s before it was ready: stopping", k, (int)pid, how);
        m->failed = 1;
        return;
    }
    int young = now - w->started_ms < MASTER_YOUNG_MS;
    w->backoff_ms = !young ? 0
                    : w->backoff_ms
                        ? (w->backoff_ms * 2 > MASTER_BACKOFF_MAX_MS ? MASTER_BACKOFF_MAX_MS
                                                                     : w->backoff_ms * 2)
                        : MASTER_BACKOFF_MIN_MS;
    w->start_at = now + w->backoff_ms;
    sl->restarts++;
    log_warn("worker %u (pid %d) %s; starting a new one%s", k, (int)pid, how,
             w->backoff_ms ? " after a pause (it ended soon after its start)" : "");
}

static void master_reap(master *m)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (uint32_t k = 1; k <= m->n; k++) {
            if (m->w[k].pid == pid) {
                master_ended(m, k, status);
                break;
            }
        }
    }
}

/* ---- signals ---- */

static void master_signal_all(master *m, int sig)
{
    for (uint32_t k = 1; k <= m->n; k++)
        if (m->w[k].pid)
            kill(m->w[k].pid, sig);
}

static void master_drain(master *m)
{
    if (m->draining) { /* a second signal: workers stop now */
        log_info("second signal: workers stop now");
        /* SIGINT, not SIGTERM: a worker that has not read the first yet
         * would see two SIGTERMs as one, and only drain. */
        master_signal_all(m, SIGINT);
        m->kill_at = gw_clock_ms() + 1000;
        return;
    }
    m->draining = 1;
    log_info("draining every worker");
    notify_stopping();
    master_signal_all(m, SIGTERM);
    for (int i = 0; i < m->nnext; i++)
        master_reload_answer(m, &m->next_asks[i], 0, "shutting down");
    m->nnext = 0;
    m->kill_at = gw_clock_ms() + m->gw->cfg->drain_timeout_ms + MASTER_DRAIN_SLACK_MS;
}

/* SIGUSR1: this process opens log.file again and hands the new file to
 * every worker; one that starts later inherits it. */
static void master_reopen(master *m)
{
    int fd = log_file_fd();
    if (fd < 0) {
        log_info("SIGUSR1: no log.file to reopen (logging to stderr)");
        return;
    }
    if (log_reopen() != 0)
        return;
    uint32_t told = 0;
    mg_ctl_msg msg = {.type = MG_CTL_LOG_FD};
    for (uint32_t k = 1; fd >= 0 && k <= m->n; k++) {
        master_worker *w = &m->w[k];
        if (!w->pid || w->ctl < 0)
            continue;
        if (master_ctl_send_fd(w->ctl, &msg, fd) == 0)
            told++;
        else
            log_error("worker %u: cannot pass the reopened log file: %s", k, strerror(errno));
    }
    log_info("SIGUSR1: log file reopened (passed to %u workers)", told);
}

static void master_on_signal(master *m)
{
    struct signalfd_siginfo si;
    while (read(m->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGHUP:
            log_info("SIGHUP: reloading every worker");
            master_reload(m, 0, 0);
            break;
        case SIGTERM:
        case SIGINT:
        case SIGQUIT:
            master_drain(m);
            break;
        case SIGUSR1:
            master_reopen(m);
            break;
        case SIGCHLD:
            master_reap(m);
            break;
        default:
            break;
        }
    }
}

/* ---- the loop ---- */

static int master_running(const master *m)
{
    for (uint32_t k = 1; k <= m->n; k++)
        if (m->w[k].pid)
            return 1;
    return 0;
}

/* Every worker is ready: the pid file, and the log line tests and
 * operators wait for. */
static void master_ready(master *m)
{
    char err[4400];
    const char *path = m->gw->cfg->pid_file;
    m->started = 1;
    if (path) {
        if (pidfile_write(path, err, sizeof(err)) != 0) {
            log_error("%s", err);
            m->failed = 1;
            return;
        }
        m->pid_file = strdup(path);
    }
    log_info("moongate ready (pid %d, %u workers)", (int)getpid(), m->n);
    log_started();
    notify_ready("serving");
}

static void master_tick(master *m)
{
    int64_t now = gw_clock_ms();
    if (m->draining && m->kill_at && now >= m->kill_at) {
        log_warn("workers did not stop in time: killing them");
        master_signal_all(m, SIGKILL);
        m->failed = 1;
        m->kill_at = 0;
    }
    if (!m->draining && !m->failed)
        for (uint32_t k = 1; k <= m->n; k++)
            if (!m->w[k].pid && m->w[k].start_at && now >= m->w[k].start_at &&
                master_start(m, k) != 0)
                m->w[k].start_at = now + MASTER_BACKOFF_MAX_MS;
    if (!m->started) {
        uint32_t ready = 0;
        for (uint32_t k = 1; k <= m->n; k++)
            ready += (uint32_t)m->w[k].ready;
        if (ready == m->n)
            master_ready(m);
    }
    master_reload_tick(m, now);
}

static int master_wait_ms(const master *m)
{
    int64_t now = gw_clock_ms(), next = now + 1000;
    for (uint32_t k = 1; k <= m->n; k++)
        if (!m->w[k].pid && m->w[k].start_at && m->w[k].start_at < next)
            next = m->w[k].start_at;
    if (m->reloading && m->reload_deadline < next)
        next = m->reload_deadline;
    if (m->kill_at && m->kill_at < next)
        next = m->kill_at;
    return next > now ? (int)(next - now) : 0;
}

static void master_poll(master *m)
{
    struct pollfd fds[CONFIG_MAX_WORKERS + 1];
    uint32_t who[CONFIG_MAX_WORKERS + 1];
    int nfds = 0;
    fds[nfds++] = (struct pollfd){.fd = m->sfd, .events = POLLIN};
    for (uint32_t k = 1; k <= m->n; k++)
        if (m->w[k].ctl >= 0) {
            who[nfds] = k;
            fds[nfds++] = (struct pollfd){.fd = m->w[k].ctl, .events = POLLIN};
        }
    if (poll(fds, (nfds_t)nfds, master_wait_ms(m)) <= 0)
        return;
    if (fds[0].revents)
        master_on_signal(m);
    for (int i = 1; i < nfds; i++)
        if (fds[i].revents)
            master_on_ctl(m, who[i]);
}

int master_run(mg_gw *gw, int (*worker_main)(mg_gw *gw))
{
    static master m; /* the master's state: one per process, like gw */
    m.gw = gw;
    m.n = gw->cfg->workers;
    m.worker_main = worker_main;
    m.sh = workers_map(m.n);
    if (!m.sh) {
        log_error("cannot map the memory workers share: %s", strerror(errno));
        return 1;
    }
    m.sfd = master_signalfd();
    if (m.sfd < 0) {
        log_error("signal set-up failed: %s", strerror(errno));
        return 1;
    }
    for (uint32_t k = 1; k <= m.n; k++)
        m.w[k].ctl = -1;
    log_info("master (pid %d) starting %u workers", (int)getpid(), m.n);
    for (uint32_t k = 1; k <= m.n; k++)
        if (master_start(&m, k) != 0) {
            m.failed = 1;
            break;
        }
    if (m.failed)
        master_drain(&m);
    while (master_running(&m)) {
        master_poll(&m);
        if (m.failed && !m.draining)
            master_drain(&m);
        master_tick(&m);
    }
    close(m.sfd);
    if (m.reload_cfg)
        config_free(m.reload_cfg);
    workers_unmap(m.sh);
    config_free(gw->cfg);
    if (m.pid_file) {
        pidfile_remove(m.pid_file);
        free(m.pid_file);
    }
    log_info("master: every worker has ended");
    return m.failed ? 1 : 0;
}
