/* dict.c — an open-addressing hash table from byte-string keys to pointers.
 *
 * Linear probing over a power-of-two array kept at most 3/4 full; FNV-1a
 * hashes; deletion by backward shift. */
#include "dict.h"

#include <stdlib.h>
#include <string.h>

static uint64_t dict_hash(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

void dict_init(dict *d)
{
    d->slots = NULL;
    d->cap = 0;
    d->count = 0;
}

void dict_free(dict *d)
{
    for (size_t i = 0; i < d->cap; i++)
        free(d->slots[i].key);
    free(d->slots);
    dict_init(d);
}

static dict_entry *dict_find(const dict *d, const void *key, size_t klen, uint64_t h)
{
    if (!d->cap)
        return NULL;
    size_t mask = d->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        dict_entry *e = &d->slots[i];
        if (!e->key)
            return NULL;
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
            return e;
    }
}

void *dict_get(const dict *d, const void *key, size_t klen)
{
    dict_entry *e = dict_find(d, key, klen, dict_hash(key, klen));
    return e ? e->val : NULL;
}

static void dict_place(dict_entry *slots, size_t cap, dict_entry e)
{
    size_t mask = cap - 1;
    size_t i = e.hash & mask;
    while (slots[i].key)
        i = (i + 1) & mask;
    slots[i] = e;
}

static int dict_grow(dict *d)
{
    size_t ncap = d->cap ? d->cap * 2 : 16;
    dict_entry *ns = calloc(ncap, sizeof(*ns));
    if (!ns)
        return -1;
    for (size_t i = 0; i < d->cap; i++)
        if (d->slots[i].key)
            dict_place(ns, ncap, d->slots[i]);
    free(d->slots);
    d->slots = ns;
    d->cap = ncap;
    return 0;
}

void *dict_set(dict *d, const void *key, size_t klen, void *val, int *err)
{
    uint64_t h = dict_hash(key, klen);
    dict_entry *e = dict_find(d, key, klen, h);
    if (err)
        *err = 0;
    if (e) {
        void *old = e->val;
        e->val = val;
        return old;
    }
    if ((d->count + 1) * 4 > d->cap * 3 && dict_grow(d) != 0)
        goto oom;
    dict_entry ne = {malloc(klen + 1), klen, h, val};
    if (!ne.key)
        goto oom;
    memcpy(ne.key, key, klen);
    ne.key[klen] = '\0';
    dict_place(d->slots, d->cap, ne);
    d->count++;
    return NULL;
oom:
    if (err)
        *err = -1;
    return NULL;
}

/* Empty slot i (whose key is freed) and pull later members of its probe
 * run into the hole (backward shift). */
static void dict_del_at(dict *d, size_t i)
{
    size_t mask = d->cap - 1;
    free(d->slots[i].key);
    d->count--;
    for (size_t j = (i + 1) & mask; d->slots[j].key; j = (j + 1) & mask) {
        size_t home = d->slots[j].hash & mask;
        int between = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
        if (between)
            continue;
        d->slots[i] = d->slots[j];
        i = j;
    }
    d->slots[i].key = NULL;
}

void *dict_del(dict *d, const void *key, size_t klen)
{
    dict_entry *e = dict_find(d, key, klen, dict_hash(key, klen));
    if (!e)
        return NULL;
    void *val = e->val;
    dict_del_at(d, (size_t)(e - d->slots));
    return val;
}

size_t dict_del_if(dict *d, int (*drop)(const dict_entry *e, void *arg), void *arg)
{
    size_t n = 0;
    for (size_t i = 0; i < d->cap;) {
        dict_entry *e = &d->slots[i];
        if (!e->key || !drop(e, arg)) {
            i++;
            continue;
        }
        void *val = e->val;
        dict_del_at(d, i); /* slot i may now hold another entry: look again */
        free(val);
        n++;
    }
    return n;
}

dict_entry *dict_next(const dict *d, size_t *pos)
{
    while (*pos < d->cap) {
        dict_entry *e = &d->slots[(*pos)++];
        if (e->key)
            return e;
    }
    return NULL;
}
