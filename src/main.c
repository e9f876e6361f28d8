/* main.c — the moongate command: arguments, start-up, the loop, exit.
 *
 *   moongate -c conf/moongate.yaml          run with a config file
 *   moongate --listen 127.0.0.1:9001 --script handler.lua
 *   moongate -t -c FILE                     check a config and exit
 *   moongate -S reload -c FILE              signal the instance FILE's pid_file names */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "admin_fanout.h"
#include "broker.h"
#include "cluster.h"
#include "budget.h"
#include "conn.h"
#include "cstack.h"
#include "gwctl.h"
#include "heartbeat.h"
#include "log.h"
#include "master.h"
#include "notify.h"
#include "peer.h"
#include "pidfile.h"
#include "privs.h"
#include "pubsub.h"
#include "script.h"
#include "server.h"

/* glibc gives the top of the heap back to the kernel once 128 KiB of it
 * is free, so a stream of 16 KiB messages (each a Lua string and a queued
 * frame) grew and trimmed the heap every few messages, and paid a page
 * fault per 4 KiB each time it grew back.  Keep up to 8 MiB of free heap; a
 * block of 1 MiB or more still gets its own mapping, returned when freed. */
static void main_tune_malloc(void)
{
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    mallopt(M_TRIM_THRESHOLD, 8 << 20);
    mallopt(M_TOP_PAD, 1 << 20);
}

static void main_usage(FILE *out)
{
    fputs("usage: moongate [-c FILE] [-t] [--listen HOST:PORT] [--path PATH] [--script FILE]\n"
          "       moongate -S reload|stop|quit|reopen -c FILE\n"
          "\n"
          "A Lua-scriptable WebSocket gateway.\n"
          "\n"
          "  -c, --config FILE     YAML configuration (see conf/moongate.yaml)\n"
          "  -t, --test            check the configuration and the script's syntax, then exit\n"
          "  -l, --listen HOST:PORT\n"
          "                        listen here (replaces the config's first listener)\n"
          "  -p, --path PATH       WebSocket path of that listener (default /)\n"
          "  -s, --script FILE     Lua script with the hooks (replaces the config's script)\n"
          "  -S, --signal NAME     signal the moongate named by FILE's pid_file, and exit:\n"
          "                        reload (HUP), reopen (USR1: reopen log.file),\n"
          "                        quit (QUIT: drain, then exit), stop (TERM, then INT:\n"
          "                        close every connection now).  Exit status 0 sent, 1 error,\n"
          "                        3 not running (no pid file, or its pid is gone)\n"
          "  -h, --help            this help\n"
          "  -V, --version         print the version\n"
          "\n"
          "Without -c, --listen and --script are required and everything else has its\n"
          "default.  Signals: HUP reloads config and script without dropping connections;\n"
          "TERM, INT or QUIT drains (close 1001 to every client) and exits; a second one\n"
          "exits now; USR1 reopens log.file (after logrotate renamed it).\n",
          out);
}

static int main_parse(int argc, char **argv, mg_overrides *o, int *test, const char **sig_name)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"listen", required_argument, NULL, 'l'},
        {"path", required_argument, NULL, 'p'},
        {"script", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {"signal", required_argument, NULL, 'S'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "c:tl:p:s:S:hV", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            o->config_file = optarg;
            break;
        case 't':
            *test = 1;
            break;
        case 'l':
            o->listen = optarg;
            break;
        case 'p':
            o->path = optarg;
            break;
        case 's':
            o->script = optarg;
            break;
        case 'S':
            *sig_name = optarg;
            break;
        case 'h':
            main_usage(stdout);
            exit(0);
        case 'V':
            printf("moongate %s\n", MOONGATE_VERSION);
            exit(0);
        default:
            main_usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "moongate: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (*sig_name && (*test || o->listen || o->path || o->script)) {
        fprintf(stderr, "moongate: --signal takes only -c FILE\n");
        return -1;
    }
    if (*sig_name)
        return 0; /* pidfile_signal says what is missing */
    if (!o->config_file && (!o->listen || !o->script)) {
        fprintf(stderr, "moongate: give -c FILE, or --listen HOST:PORT and --script FILE\n");
        main_usage(stderr);
        return -1;
    }
    return 0;
}

/* Block the signals the loop reads from a signalfd. */
static int main_signalfd(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static void main_cleanup(mg_gw *gw)
{
    if (gw->script)
        script_cancel_timers(gw->script);
    cluster_stop(gw);
    broker_stop(gw);
    gwctl_reload_stop(gw);
    admin_fanout_stop(gw); /* its timers are the lws context's */
    server_stop(gw);
    peers_stop(gw);
    script_free(gw->script);
    gw->script = NULL;
    conn_table_free(gw);
    heartbeat_stop(gw);
    pubsub_free(gw);
    dict_entry *e;
    for (size_t i = 0; (e = dict_next(&gw->store, &i));) {
        value_clear(e->val);
        free(e->val);
    }
    dict_free(&gw->store);
    budget_stop();
    config_free(gw->cfg);
}

/* Listeners are bound: the pid file (one process; the master writes it
 * with workers), then the user: this process runs as from now on. */
static int main_bound(mg_gw *gw, char *err, size_t errlen)
{
    if (!gw->shared && gw->cfg->pid_file) {
        if (pidfile_write(gw->cfg->pid_file, err, errlen) != 0)
            return -1;
        gw->pid_file = strdup(gw->cfg->pid_file);
    }
    return privs_drop(gw->cfg, err, errlen);
}

/* Start, serve until stopped, clean up; the exit status. */
static int main_serve(mg_gw *gw)
{
    char err[2048];

    if (budget_start(gw->cfg->hook_budget_ms) != 0) {
        log_error("cannot start the hook watchdog: %s", strerror(errno));
        config_free(gw->cfg);
        return 1;
    }
    gw->node_id = gw->cfg->cluster ? gw->cfg->cluster->id : 0;
    conn_table_init(gw);
    pubsub_init(gw);
    dict_init(&gw->store);
    gw->exit_code = 0;
    if (gwctl_reload_init(gw) != 0) {
        log_error("cannot set up reloads: %s", strerror(errno));
        main_cleanup(gw);
        return 1;
    }

    if (server_start(gw, gw->signal_fd, err, sizeof(err)) != 0 ||
        main_bound(gw, err, sizeof(err)) != 0) {
        log_error("%s", err);
        main_cleanup(gw);
        return 1;
    }
    gw->generation = 1;
    gw->script = script_load(gw, gw->cfg, gw->generation, err, sizeof(err));
    if (!gw->script) {
        log_error("cannot load script: %s", err);
        main_cleanup(gw);
        return 1;
    }
    if (broker_start(gw, err, sizeof(err)) != 0 || cluster_start(gw, err, sizeof(err)) != 0) {
        log_error("%s", err);
        main_cleanup(gw);
        return 1;
    }
    if (gw->shared) {
        log_info("worker %u ready (pid %d)", gw->worker, (int)getpid());
        gwctl_ready(gw);
    } else {
        log_info("moongate ready (pid %d)", (int)getpid());
        notify_ready("serving");
    }
    log_started();
    server_run(gw);
    main_cleanup(gw);
    log_info("shutdown complete");
    return gw->exit_code;
}

/* The event loop, on the thread cstack_run gives it: everything from the
 * watchdog to the last cleanup happens here.  Returns the exit status. */
static int main_loop(void *arg)
{
    mg_gw *gw = arg;
    int rc = main_serve(gw);
    if (gw->pid_file) {
        pidfile_remove(gw->pid_file);
        free(gw->pid_file);
        gw->pid_file = NULL;
    }
    return rc;
}

/* One gateway process: the only one, or a worker of master.c's. */
static int main_worker(mg_gw *gw)
{
    /* Blocked before the loop thread starts, so every thread has them
     * blocked and only the signalfd sees them. */
    gw->signal_fd = main_signalfd();
    if (gw->signal_fd < 0) {
        fprintf(stderr, "moongate: signal set-up failed: %s\n", strerror(errno));
        config_free(gw->cfg);
        return 1;
    }
    int rc = cstack_run("mg-loop", main_loop, gw);
    if (rc < 0) {
        fprintf(stderr, "moongate: cannot start the event loop thread: %s\n", strerror(errno));
        rc = 1;
    }
    return rc;
}

int main(int argc, char **argv)
{
    static mg_gw gw;
    char err[2048];
    int test = 0;
    const char *signal_name = NULL;

    if (main_parse(argc, argv, &gw.over, &test, &signal_name) != 0)
        return 1;
    if (signal_name)
        return pidfile_signal(gw.over.config_file, signal_name);
    main_tune_malloc();
    /* --script is relative to where moongate was started; reloads must
     * find the same file. */
    char *script_abs = gw.over.script ? realpath(gw.over.script, NULL) : NULL;
    if (gw.over.script && script_abs)
        gw.over.script = script_abs;

    gw.cfg = gwctl_build_config(&gw.over, err, sizeof(err));
    if (!gw.cfg) {
        fprintf(stderr, "moongate: %s\n", err);
        free(script_abs);
        return 1;
    }
    if (test) {
        int rc = script_check(gw.cfg->script, err, sizeof(err));
        if (rc != 0)
            fprintf(stderr, "moongate: %s\n", err);
        else
            printf("%s: configuration ok\n", gw.over.config_file ? gw.over.config_file : "flags");
        config_free(gw.cfg);
        free(script_abs);
        return rc ? 1 : 0;
    }

    log_configure(gw.cfg->log_level, gw.cfg->log_format);
    if ((gw.cfg->pid_file && pidfile_check(gw.cfg->pid_file, err, sizeof(err)) != 0) ||
        (gw.cfg->log_file && log_open_file(gw.cfg->log_file, err, sizeof(err)) != 0)) {
        fprintf(stderr, "moongate: %s\n", err);
        config_free(gw.cfg);
        free(script_abs);
        return 1;
    }
    log_hook_lws();
    gw.metrics = &gw.metrics_own;
    gw.worker = gw.nworkers = 1;
    gw.ctl_fd = -1;
    int rc = gw.cfg->workers > 1 ? master_run(&gw, main_worker) : main_worker(&gw);
    free(script_abs);
    return rc;
}
