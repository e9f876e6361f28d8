/* workers.h — the memory a master shares with its worker processes.
 *
 * With `workers: N` (N > 1) the master maps one anonymous shared region
 * before it forks (master.c): a header, then a slot per worker.  A worker
 * counts its metrics in its slot, so whichever worker the kernel hands an
 * admin request answers for all of them without asking the others; it
 * mints connection ids from the slot's sequence, so ids stay unique when a
 * worker is replaced (the new one goes on from the old one's); and it
 * publishes how many clients it holds (gw.count("all")).
 *
 * Each field has one writer: the slot's worker, or the master while no
 * worker runs in the slot; the header is the master's.  Readers in other
 * processes load aligned 64-bit words: a value that was true a moment
 * ago, never a torn one. */
#ifndef MG_WORKERS_H
#define MG_WORKERS_H

#include <stdint.h>

#include "gw.h"

struct mg_worker_slot {
    int32_t pid;         /* the running worker, 0 while none (master) */
    uint32_t restarts;   /* workers that ended in this slot and were replaced (master) */
    int64_t started_ms;  /* when the running one was forked (master) */
    uint64_t next_seq;   /* connection ids minted so far (workers_conn_id) */
    uint64_t conns_open; /* clients in state open: this worker's gw.count() */
    uint64_t generation; /* its script generation */
    mg_metrics metrics;  /* its counters (gw->metrics points here) */
} __attribute__((aligned(64)));

struct mg_shared {
    uint32_t nworkers;
    int32_t master_pid;
    uint64_t key;             /* random: names the workers' sockets (peer.c) */
    uint64_t reloads;         /* gateway-wide reloads done ... */
    uint64_t reload_failures; /* ... and refused (master.c) */
    char reload_error[512];   /* why the last one was refused */
    mg_worker_slot slot[];    /* slot[k - 1] is worker k's */
};

/* Map the region for n workers (zeroed, key drawn).  NULL on failure. */
mg_shared *workers_map(uint32_t n);
void workers_unmap(mg_shared *sh);

/* In worker k after the fork: point gw at slot k (metrics, ids). */
void workers_attach(mg_gw *gw, mg_shared *sh, uint32_t k);

/* The next connection id: seq * nworkers + (worker - 1), so that
 * workers_owner tells the worker from the id alone, and with one process
 * ids are 1, 2, 3 ... as they always were.  In a cluster that, times
 * 1024, plus cluster.id: the id names its node too (cluster.c). */
uint64_t workers_conn_id(mg_gw *gw);
uint32_t workers_owner(const mg_gw *gw, uint64_t id);

/* Clients open on every worker (the sum of the slots'). */
uint64_t workers_conns_all(const mg_gw *gw);

/* Every worker's counters added up into out (all fields are uint64_t:
 * gauges such as `connections` add up too). */
void workers_metrics_sum(const mg_shared *sh, mg_metrics *out);

#endif
