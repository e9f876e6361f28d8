/* cstack.c — the event loop's C stack (cstack.h). */
#include "cstack.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

/* Lowest usable address of this thread's stack (above its guard page), or
 * 0 in a thread cstack_run did not start. */
static _Thread_local uintptr_t cstack_lo;

/* Stack left alone under the caller by cstack_trim: its callees, and a
 * signal handler that may interrupt them. */
#define CSTACK_KEEP (64 * 1024)

typedef struct cstack_job {
    int (*fn)(void *);
    void *arg;
    int ret;
    uintptr_t lo;
    const char *name;
} cstack_job;

static void *cstack_main(void *p)
{
    cstack_job *j = p;
    cstack_lo = j->lo;
    pthread_setname_np(pthread_self(), j->name);
    j->ret = j->fn(j->arg);
    return NULL;
}

int cstack_run(const char *name, int (*fn)(void *), void *arg)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    /* Reserved, not committed: MAP_NORESERVE keeps it out of the commit
     * charge, and untouched pages cost nothing. */
    char *base = mmap(NULL, CSTACK_SIZE, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (base == MAP_FAILED)
        return -1;
    cstack_job job = {fn, arg, -1, (uintptr_t)base + page, name};
    pthread_attr_t at;
    pthread_t t;
    int rc = mprotect(base, page, PROT_NONE); /* the guard page: overflow faults */
    if (rc == 0 && (rc = pthread_attr_init(&at)) == 0) {
        rc = pthread_attr_setstack(&at, base, CSTACK_SIZE);
        if (rc == 0)
            rc = pthread_create(&t, &at, cstack_main, &job);
        pthread_attr_destroy(&at);
        if (rc == 0)
            pthread_join(t, NULL);
        else
            errno = rc;
    }
    munmap(base, CSTACK_SIZE);
    return rc == 0 ? job.ret : -1;
}

size_t cstack_room(void)
{
    char probe;
    uintptr_t sp = (uintptr_t)&probe;
    if (!cstack_lo || sp < cstack_lo)
        return SIZE_MAX;
    return sp - cstack_lo;
}

void cstack_trim(void)
{
    char probe;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t end = ((uintptr_t)&probe - CSTACK_KEEP) & ~(page - 1);
    if (cstack_lo && end > cstack_lo)
        madvise((void *)cstack_lo, end - cstack_lo, MADV_DONTNEED);
}
