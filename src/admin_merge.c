/* admin_merge.c — workers' parts of a listing and the page made of them
 * (admin_merge.h).  Kept free of lws and of the client table, so that a
 * unit test can drive every merge (tests/unit/test_admin_merge.c). */
#include "admin_merge.h"

#include <stdlib.h>
#include <string.h>

/* total (u64) and more (u8) */
#define PART_HEAD 9

void admin_part_begin(json_buf *b, uint64_t total)
{
    unsigned char h[PART_HEAD] = {0};
    memcpy(h, &total, 8);
    json_buf_raw(b, (const char *)h, sizeof(h));
}

void admin_part_set_more(json_buf *b)
{
    if (!b->oom && b->len >= PART_HEAD)
        b->p[8] = 1;
}

void admin_part_client(json_buf *b, uint64_t id, const char *obj, size_t len)
{
    uint32_t n = (uint32_t)len;
    json_buf_raw(b, (const char *)&id, 8);
    json_buf_raw(b, (const char *)&n, 4);
    json_buf_raw(b, obj, len);
}

void admin_part_topic(json_buf *b, const char *name, size_t len, uint64_t subscribers)
{
    uint16_t n = (uint16_t)len;
    json_buf_raw(b, (const char *)&n, 2);
    json_buf_raw(b, name, n);
    json_buf_raw(b, (const char *)&subscribers, 8);
}

int admin_part_full(const json_buf *b)
{
    return b->len >= ADMIN_PART_MAX;
}

/* ---- reading ---- */

typedef struct part_rd {
    const unsigned char *p, *end;
} part_rd;

typedef struct entry {
    uint64_t key;  /* clients: the id; topics: the subscribers */
    const char *s; /* clients: the JSON object; topics: the name */
    size_t len;
} entry;

/* The next entry of a part, or 0 at its end (or at a malformed one). */
static int part_next(part_rd *r, int topics, entry *e)
{
    size_t left = (size_t)(r->end - r->p);
    if (!topics) {
        uint32_t n;
        if (left < 12)
            return 0;
        memcpy(&e->key, r->p, 8);
        memcpy(&n, r->p + 8, 4);
        if (left - 12 < n)
            return 0;
        e->s = (const char *)r->p + 12;
        e->len = n;
        r->p += 12 + (size_t)n;
        return 1;
    }
    uint16_t n;
    if (left < 2)
        return 0;
    memcpy(&n, r->p, 2);
    if (left - 2 < (size_t)n + 8)
        return 0;
    e->s = (const char *)r->p + 2;
    e->len = n;
    memcpy(&e->key, r->p + 2 + n, 8);
    r->p += 10 + (size_t)n;
    return 1;
}

static part_rd part_open(const admin_part *pt, uint64_t *total, int *more)
{
    part_rd r = {pt->p + PART_HEAD, pt->p + pt->len};
    memcpy(total, pt->p, 8);
    *more = pt->p[8] != 0;
    return r;
}

int admin_part_valid(const void *p, size_t len, int topics)
{
    if (len < PART_HEAD)
        return 0;
    part_rd r = {(const unsigned char *)p + PART_HEAD, (const unsigned char *)p + len};
    entry e;
    while (part_next(&r, topics, &e))
        ;
    return r.p == r.end;
}

/* Every entry of every part in one array, the totals added up, and the
 * bound: of the parts that say more follows, the last entry that comes
 * first in page order (tighter() says which of two does). */
typedef struct gathered {
    entry *e;
    size_t n;
    uint64_t total;
    const entry *bound; /* the page ends at this entry, or NULL */
} gathered;

static int gather(const admin_part *parts, size_t np, int topics,
                  int (*tighter)(const entry *a, const entry *b), gathered *g)
{
    size_t cap = 0;
    for (size_t i = 0; i < np; i++)
        cap += parts[i].len / (topics ? 10 : 12);
    g->e = malloc((cap ? cap : 1) * sizeof(*g->e));
    g->n = 0;
    g->total = 0;
    g->bound = NULL;
    if (!g->e)
        return -1;
    for (size_t i = 0; i < np; i++) {
        uint64_t total;
        int more;
        part_rd r = part_open(&parts[i], &total, &more);
        size_t first = g->n;
        g->total += total;
        while (g->n < cap && part_next(&r, topics, &g->e[g->n]))
            g->n++;
        /* A part that stopped early bounds the page at its last entry:
         * what lies beyond it on that worker was not sent. */
        const entry *last = g->n > first ? &g->e[g->n - 1] : NULL;
        if (more && last && (!g->bound || tighter(last, g->bound)))
            g->bound = last;
    }
    return 0;
}

static int by_id_desc(const void *a, const void *b)
{
    uint64_t x = ((const entry *)a)->key, y = ((const entry *)b)->key;
    return x < y ? 1 : x > y ? -1 : 0;
}

static int higher_id(const entry *a, const entry *b)
{
    return a->key > b->key;
}

int admin_merge_clients(const admin_part *parts, size_t n, unsigned limit, json_buf *out)
{
    gathered g;
    if (gather(parts, n, 0, higher_id, &g) != 0)
        return -1;
    /* The bound is an entry of g.e: keep its id before sorting moves it. */
    uint64_t floor = g.bound ? g.bound->key : 0;
    qsort(g.e, g.n, sizeof(*g.e), by_id_desc);
    json_buf_printf(out, "\"total\":%llu,\"clients\":[", (unsigned long long)g.total);
    size_t i = 0;
    for (; i < g.n && i < limit && g.e[i].key >= floor; i++) {
        if (i)
            json_buf_raw(out, ",", 1);
        json_buf_raw(out, g.e[i].s, g.e[i].len);
    }
    if (i && (i < g.n || g.bound))
        json_buf_printf(out, "],\"next\":%llu", (unsigned long long)g.e[i - 1].key);
    else
        json_buf_raw(out, "],\"next\":null", 13);
    free(g.e);
    return out->oom ? -1 : 0;
}

static int name_cmp(const entry *a, const entry *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->s, b->s, n);
    return c ? c : a->len < b->len ? -1 : a->len > b->len;
}

static int by_name(const void *a, const void *b)
{
    return name_cmp(a, b);
}

static int lower_name(const entry *a, const entry *b)
{
    return name_cmp(a, b) < 0;
}

int admin_merge_topics(const admin_part *parts, size_t n, unsigned limit, uint64_t total,
                       json_buf *out)
{
    gathered g;
    if (gather(parts, n, 1, lower_name, &g) != 0)
        return -1;
    entry bound = g.bound ? *g.bound : (entry){0};
    qsort(g.e, g.n, sizeof(*g.e), by_name);
    json_buf_printf(out, "\"total\":%llu,\"topics\":[", (unsigned long long)total);
    size_t i = 0, shown = 0;
    const entry *last = NULL;
    while (i < g.n && shown < limit && (!g.bound || name_cmp(&g.e[i], &bound) <= 0)) {
        uint64_t subs = 0;
        size_t j = i;
        for (; j < g.n && name_cmp(&g.e[j], &g.e[i]) == 0; j++)
            subs += g.e[j].key; /* the same topic on several workers */
        json_buf_raw(out, shown ? ",{\"topic\":" : "{\"topic\":", shown ? 10 : 9);
        json_buf_str(out, g.e[i].s, g.e[i].len);
        json_buf_printf(out, ",\"subscribers\":%llu}", (unsigned long long)subs);
        last = &g.e[i];
        shown++;
        i = j;
    }
    json_buf_raw(out, "],\"next\":", 9);
    if (last && (i < g.n || g.bound))
        json_buf_str(out, last->s, last->len);
    else
        json_buf_raw(out, "null", 4);
    free(g.e);
    return out->oom ? -1 : 0;
}
