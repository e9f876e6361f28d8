/* notify.h — telling a service manager where the gateway is in its life:
 * systemd's Type=notify (sd_notify(3)) without libsystemd.
 *
 * When $NOTIFY_SOCKET names an AF_UNIX datagram socket (a path, or an
 * abstract name written with a leading '@'), each call sends one datagram
 * of newline-separated KEY=VALUE lines to it; without it every call does
 * nothing.  Only the process systemd started (the only one, or the master
 * of `workers: N`) calls these: systemd's NotifyAccess=main drops what
 * other processes send. */
#ifndef MG_NOTIFY_H
#define MG_NOTIFY_H

/* Send msg as it is.  1 sent, 0 no $NOTIFY_SOCKET, -1 failed (logged). */
int notify_send(const char *msg);

/* READY=1: every listener is bound and serving, at start or at the end of
 * a reload (which kept the old config and script if it failed); status,
 * if not NULL, goes along as STATUS= (one line). */
void notify_ready(const char *status);
/* RELOADING=1 with MONOTONIC_USEC= (CLOCK_MONOTONIC, microseconds): a
 * reload starts; notify_ready ends it. */
void notify_reloading(void);
/* STOPPING=1: the drain starts. */
void notify_stopping(void);

#endif
