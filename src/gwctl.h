/* gwctl.h — the gateway's life cycle: building the config from the file and
 * the command line, reload (SIGHUP or POST /reload), and shutdown (SIGTERM,
 * SIGINT: drain, then stop). */
#ifndef MG_GWCTL_H
#define MG_GWCTL_H

#include "gw.h"

/* The config the overrides describe: the YAML file (if any) with the
 * command-line flags applied, validated.  NULL with err on failure. */
mg_config *gwctl_build_config(const mg_overrides *o, char *err, size_t errlen);

/* Re-read config and script; switch only if both are good.  0 or -1 (the
 * reason is in gw->last_reload_error and the log). */
int gwctl_reload(mg_gw *gw);

/* The signalfd in the loop is readable. */
void gwctl_on_signal(mg_gw *gw, int fd);

/* SIGTERM/SIGINT: stop accepting, close everyone with 1001, stop when all
 * are gone or the drain timeout passes. */
void gwctl_drain(mg_gw *gw);

#endif
