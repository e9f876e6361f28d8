/* workers.c — the memory a master shares with its workers (workers.h). */
#include "workers.h"

#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

_Static_assert(sizeof(mg_metrics) % sizeof(uint64_t) == 0, "mg_metrics is all uint64_t");

static size_t workers_size(uint32_t n)
{
    return sizeof(mg_shared) + (size_t)n * sizeof(mg_worker_slot);
}

mg_shared *workers_map(uint32_t n)
{
    mg_shared *sh =
        mmap(NULL, workers_size(n), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return NULL;
    sh->nworkers = n;
    sh->master_pid = (int32_t)getpid();
    if (getrandom(&sh->key, sizeof(sh->key), 0) != (ssize_t)sizeof(sh->key))
        sh->key = (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)sh;
    return sh;
}

void workers_unmap(mg_shared *sh)
{
    if (sh)
        munmap(sh, workers_size(sh->nworkers));
}

void workers_attach(mg_gw *gw, mg_shared *sh, uint32_t k)
{
    gw->shared = sh;
    gw->worker = k;
    gw->nworkers = sh->nworkers;
    gw->self = &sh->slot[k - 1];
    gw->metrics = &gw->self->metrics;
    /* What the last worker in this slot left open is gone with it. */
    gw->metrics->connections = 0;
    gw->metrics->handshakes_pending = 0;
    gw->metrics->broker_up = 0;
    gw->metrics->broker_unsettled = 0;
    gw->self->conns_open = 0;
}

uint64_t workers_conn_id(mg_gw *gw)
{
    uint64_t local =
        gw->self ? ++gw->self->next_seq * gw->nworkers + (gw->worker - 1) : gw->next_conn_id++;
    return gw->node_id ? local * (CONFIG_MAX_NODE_ID + 1) + gw->node_id : local;
}

uint32_t workers_owner(const mg_gw *gw, uint64_t id)
{
    if (gw->node_id)
        id /= CONFIG_MAX_NODE_ID + 1;
    return gw->self ? (uint32_t)(id % gw->nworkers) + 1 : 1;
}

uint64_t workers_conns_all(const mg_gw *gw)
{
    if (!gw->shared)
        return gw->conns_open;
    uint64_t n = 0;
    for (uint32_t i = 0; i < gw->shared->nworkers; i++)
        n += __atomic_load_n(&gw->shared->slot[i].conns_open, __ATOMIC_RELAXED);
    return n;
}

void workers_metrics_sum(const mg_shared *sh, mg_metrics *out)
{
    memset(out, 0, sizeof(*out));
    uint64_t *o = (uint64_t *)out;
    size_t nf = sizeof(*out) / sizeof(uint64_t);
    for (uint32_t i = 0; i < sh->nworkers; i++) {
        const uint64_t *m = (const uint64_t *)&sh->slot[i].metrics;
        for (size_t f = 0; f < nf; f++)
            o[f] += __atomic_load_n(&m[f], __ATOMIC_RELAXED);
    }
}
