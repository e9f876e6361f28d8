/* privs.c — dropping root after the listeners are bound (privs.h). */
#include "privs.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "log.h"

int privs_drop(const mg_config *cfg, char *err, size_t errlen)
{
    if (geteuid() != 0) {
        if (cfg->user)
            log_info("user: %s: not started as root, running as uid %d", cfg->user, (int)geteuid());
        return 0;
    }
    if (!cfg->user) {
        log_warn("running as root: set user: in the config (or start as a user with "
                 "CAP_NET_BIND_SERVICE) so Lua hooks do not run as root");
        return 0;
    }
    struct passwd *pw = getpwnam(cfg->user);
    if (!pw) {
        snprintf(err, errlen, "user: no such user '%s'", cfg->user);
        return -1;
    }
    uid_t uid = pw->pw_uid;
    gid_t gid = pw->pw_gid;
    if (cfg->group) {
        struct group *gr = getgrnam(cfg->group);
        if (!gr) {
            snprintf(err, errlen, "group: no such group '%s'", cfg->group);
            return -1;
        }
        gid = gr->gr_gid;
    }
    /* Groups first: once the uid is not 0 they cannot change. */
    if (initgroups(cfg->user, gid) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
        snprintf(err, errlen, "cannot become user %s (uid %d, gid %d): %s", cfg->user, (int)uid,
                 (int)gid, strerror(errno));
        return -1;
    }
    if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0 || getuid() != uid || geteuid() != uid)) {
        snprintf(err, errlen, "user %s: root could be regained after setuid", cfg->user);
        return -1;
    }
    /* A process that changed its uid is not dumpable, which makes its
     * /proc/PID/fd root's: the workers' /metrics could not count each
     * other's descriptors. */
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    log_info("running as user %s (uid %d, gid %d)", cfg->user, (int)uid, (int)gid);
    return 0;
}
