/* dict.h — an open-addressing hash table from byte-string keys to pointers.
 *
 * Used for the client table (ids and names), topics and gw.store.  Keys are
 * copied into the table; values are the caller's.  Deletion uses backward
 * shift, so there are no tombstones and lookups stay short. */
#ifndef MG_DICT_H
#define MG_DICT_H

#include <stddef.h>
#include <stdint.h>

typedef struct dict_entry {
    char *key; /* NULL = empty slot */
    size_t klen;
    uint64_t hash;
    void *val;
} dict_entry;

typedef struct dict {
    dict_entry *slots;
    size_t cap; /* power of two, or 0 */
    size_t count;
} dict;

void dict_init(dict *d);
void dict_free(dict *d); /* frees keys and slots, not values */

void *dict_get(const dict *d, const void *key, size_t klen);
/* Insert or replace; returns the previous value or NULL.  -1 on OOM via *err. */
void *dict_set(dict *d, const void *key, size_t klen, void *val, int *err);
/* Remove; returns the removed value or NULL. */
void *dict_del(dict *d, const void *key, size_t klen);

/* Remove every entry drop(e, arg) says to, freeing its value with free();
 * returns how many.  drop may be asked twice about one entry (a deletion
 * can move an entry already looked at past the scan), so it must answer
 * the same way.  It must not change d. */
size_t dict_del_if(dict *d, int (*drop)(const dict_entry *e, void *arg), void *arg);

/* Iterate: for (size_t i = 0; (e = dict_next(d, &i));) */
dict_entry *dict_next(const dict *d, size_t *pos);

/* Helpers for 64-bit integer keys. */
static inline void *dict_get_u64(const dict *d, uint64_t k)
{
    return dict_get(d, &k, sizeof(k));
}

#endif
