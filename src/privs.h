/* privs.h — user: and group:: a gateway started as root binds its
 * listeners (ports below 1024 included), then runs as that user.
 *
 * The alternative without root is CAP_NET_BIND_SERVICE (systemd's
 * AmbientCapabilities=), documented in docs/operations.md. */
#ifndef MG_PRIVS_H
#define MG_PRIVS_H

#include <stddef.h>

#include "config.h"

/* Become cfg->user (and cfg->group, or the user's group) with that
 * user's supplementary groups, and check root cannot be regained.  Not
 * root: nothing to do (a user: is noted in the log).  Root without user:
 * a warning.  0, or -1 with err. */
int privs_drop(const mg_config *cfg, char *err, size_t errlen);

#endif
