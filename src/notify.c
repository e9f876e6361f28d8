/* notify.c — the sd_notify datagram protocol (notify.h).
 *
 * The protocol, as systemd documents it: connect nothing, sendto() the
 * socket named by $NOTIFY_SOCKET one datagram of "KEY=VALUE\n" lines; a
 * name starting with '@' is in the abstract namespace (the '@' stands for
 * the leading NUL byte).  The socket is opened per message: messages are a
 * handful per start, reload or stop, and nothing stays open across a fork
 * or an exec. */
#include "notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* The address $NOTIFY_SOCKET names, in *sa; its length, 0 when unset, or
 * -1 when it is not one this protocol allows. */
static socklen_t notify_address(struct sockaddr_un *sa)
{
    const char *name = getenv("NOTIFY_SOCKET");
    if (!name || !*name)
        return 0;
    size_t len = strlen(name);
    if ((name[0] != '/' && name[0] != '@') || len < 2 || len > sizeof(sa->sun_path))
        return (socklen_t)-1;
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, name, len);
    if (name[0] == '@')
        sa->sun_path[0] = '\0';
    /* The length says where the name ends: no NUL needed after a path
     * that fills sun_path, none wanted after an abstract name. */
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
}

int notify_send(const char *msg)
{
    struct sockaddr_un sa;
    socklen_t salen = notify_address(&sa);
    if (salen == 0)
        return 0;
    if (salen == (socklen_t)-1) {
        log_warn("NOTIFY_SOCKET: not an AF_UNIX path or @abstract name: not notifying");
        return -1;
    }
    /* Non-blocking: a service manager that does not read must not stall
     * the event loop; systemd's queue is far deeper than these few lines. */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        log_warn("NOTIFY_SOCKET: socket: %s", strerror(errno));
        return -1;
    }
    ssize_t n = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
    int e = errno;
    close(fd);
    if (n < 0) {
        log_warn("NOTIFY_SOCKET %s: %s", getenv("NOTIFY_SOCKET"), strerror(e));
        return -1;
    }
    return 1;
}

/* msg + "STATUS=<status>\n" when status is given, its newlines made spaces
 * (one line is what systemctl status shows). */
static void notify_with_status(const char *msg, const char *status)
{
    char buf[1024];
    if (!status) {
        notify_send(msg);
        return;
    }
    /* msg is a few short lines: with at most 900 bytes of status the
     * whole fits, the final newline included. */
    snprintf(buf, sizeof(buf), "%sSTATUS=%.900s", msg, status);
    for (size_t i = strlen(msg); buf[i]; i++)
        if (buf[i] == '\n')
            buf[i] = ' ';
    strncat(buf, "\n", sizeof(buf) - strlen(buf) - 1);
    notify_send(buf);
}

void notify_ready(const char *status)
{
    notify_with_status("READY=1\n", status);
}

void notify_reloading(void)
{
    struct timespec ts;
    char buf[128];
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(buf, sizeof(buf), "RELOADING=1\nMONOTONIC_USEC=%llu\n",
             (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
    notify_with_status(buf, "reloading");
}

void notify_stopping(void)
{
    notify_with_status("STOPPING=1\n", "draining connections");
}
