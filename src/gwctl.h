/* gwctl.h — the gateway's life cycle: building the config from the file and
 * the command line, reload (SIGHUP or POST /reload), and shutdown (SIGTERM,
 * SIGINT: drain, then stop). */
#ifndef MG_GWCTL_H
#define MG_GWCTL_H

#include "gw.h"

/* The config the overrides describe: the YAML file (if any) with the
 * command-line flags applied, validated.  NULL with err on failure. */
mg_config *gwctl_build_config(const mg_overrides *o, char *err, size_t errlen);

/* Re-read config and script; switch only if both are good.  The config
 * file is read and checked on a thread of its own, so that no file, however
 * big or hostile, stalls the event loop; the script is then loaded on the
 * loop (gwctl_reload_ready).  A reload asked for while one is under way
 * runs once more after it (the files may have changed since they were
 * read).  done(arg, ok), if given, is called when this reload has ended:
 * ok 1, or 0 with the reason in gw->last_reload_error (and the log). */
typedef void (*gwctl_done_fn)(void *arg, int ok);
void gwctl_reload(mg_gw *gw, gwctl_done_fn done, void *arg);
/* arg no longer wants to hear of it (an admin client went away). */
void gwctl_reload_forget(mg_gw *gw, void *arg);
/* The reload's config thread is done (its eventfd is readable). */
void gwctl_reload_ready(mg_gw *gw);
/* Set up the eventfd (0 or -1), which the loop watches (gwctl_reload_fd);
 * at the end, wait for a thread still reading. */
int gwctl_reload_init(mg_gw *gw);
int gwctl_reload_fd(const mg_gw *gw);
void gwctl_reload_stop(mg_gw *gw);

/* POST /reload: with workers, the master reloads every worker (master.h)
 * and done is called when all have; with one process, gwctl_reload. */
void gwctl_reload_all(mg_gw *gw, gwctl_done_fn done, void *arg);
/* The master's channel is readable: a reload to run, or the end of one
 * asked for; EOF (the master is gone) drains. */
void gwctl_on_ctl(mg_gw *gw);
/* Tell the master this worker serves. */
void gwctl_ready(mg_gw *gw);

/* The signalfd in the loop is readable. */
void gwctl_on_signal(mg_gw *gw, int fd);

/* SIGTERM/SIGINT: stop accepting, close everyone with 1001, stop when all
 * are gone or the drain timeout passes. */
void gwctl_drain(mg_gw *gw);

#endif
