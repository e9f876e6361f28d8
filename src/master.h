/* master.h — `workers: N`: the master process and its channel to each
 * worker.
 *
 * With N > 1 the moongate process becomes a master that holds no client
 * socket: it maps the shared slots (workers.h), forks N workers and
 * watches them.  Each worker binds the listeners itself with SO_REUSEPORT
 * (the kernel spreads new connections over them) and runs its own loop,
 * Lua state and client table.  The master
 *  - replaces a worker that ends (its clients reconnect; the others notice
 *    nothing), after a pause that grows while it keeps dying young, and
 *    names the worker, its pid and why it ended in the log;
 *  - on SIGHUP, or when a worker passes on POST /reload, reads and checks
 *    the config and the script's syntax once, then tells every worker to
 *    reload and answers when all have; a bad file is refused before any
 *    worker swaps;
 *  - on SIGTERM/SIGINT/SIGQUIT has every worker drain and exits 0 when
 *    they have; a second signal makes them stop at once;
 *  - on SIGUSR1 reopens log.file and hands the new descriptor to every
 *    worker (SCM_RIGHTS), so workers that run as user: need no right to
 *    open it;
 *  - writes pid_file once every worker is ready, removes it at exit.
 * If a worker cannot start the first time (a port in use, a bad script),
 * the master stops the others and exits 1.
 *
 * The channel is a SOCK_SEQPACKET pair: one mg_ctl_msg a packet. */
#ifndef MG_MASTER_H
#define MG_MASTER_H

#include <stdint.h>

#include "gw.h"

typedef enum {
    MG_CTL_READY = 1,   /* worker -> master: started and serving */
    MG_CTL_RELOAD,      /* master -> worker: reload (seq) */
    MG_CTL_RELOADED,    /* worker -> master: its reload ended (seq, ok, error) */
    MG_CTL_RELOAD_ASK,  /* worker -> master: reload every worker (seq: the worker's) */
    MG_CTL_RELOAD_DONE, /* master -> worker: that ended (seq, ok, error) */
    MG_CTL_LOG_FD       /* master -> worker: log.file reopened; its descriptor rides along */
} mg_ctl_type;

typedef struct mg_ctl_msg {
    uint32_t type;
    uint32_t seq;
    uint32_t ok;
    uint32_t worker;
    uint64_t generation;
    char error[1024];
} mg_ctl_msg;

/* Run as the master of gw->cfg->workers workers.  worker_main(gw) runs in
 * each worker after the fork, with gw attached to its slot (workers.h)
 * and gw->ctl_fd its end of the channel; its return is the worker's exit
 * status.  Returns the master's. */
int master_run(mg_gw *gw, int (*worker_main)(mg_gw *gw));

/* Send one message on a channel without blocking: 0, or -1. */
int master_ctl_send(int fd, const mg_ctl_msg *m);

/* Receive one message, and the descriptor sent with it into *passed (or
 * -1).  What recv() returns. */
ssize_t master_ctl_recv(int fd, mg_ctl_msg *m, int *passed);

#endif
