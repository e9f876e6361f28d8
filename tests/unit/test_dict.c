/* test_dict.c — dict.c: set/get/replace/delete with binary and u64 keys,
 * growth through many resizes, backward-shift deletion (scattered deletes
 * in a big table, and every deletion order's worth of checks in small,
 * nearly full tables where probe runs wrap around the end), iteration and
 * dict_free.  Keys the table forgot to free, or freed twice, show up under
 * AddressSanitizer/LeakSanitizer. */

#include "dict.h"
#include "testlib.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Values stored are tagged integers: distinct, non-NULL, never dereferenced. */
#define VAL(i) ((void *)(uintptr_t)((i) + 1))

static void *set_u64(dict *d, uint64_t k, void *v)
{
    int err = 1;
    void *old = dict_set(d, &k, sizeof(k), v, &err);
    CHECK(err == 0);
    return old;
}

static void *del_u64(dict *d, uint64_t k)
{
    return dict_del(d, &k, sizeof(k));
}

/* Deterministic 64-bit generator (splitmix64). */
static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Number of occupied slots, counted independently of d->count. */
static size_t occupied(const dict *d)
{
    size_t n = 0;
    for (size_t i = 0; i < d->cap; i++)
        n += d->slots[i].key != NULL;
    return n;
}

/* -------------------------------------------------------------- basics */

static void test_empty(void)
{
    dict d;
    dict_init(&d);
    CHECK(d.cap == 0 && d.count == 0 && d.slots == NULL);
    CHECK(dict_get(&d, "a", 1) == NULL);
    CHECK(dict_get_u64(&d, 7) == NULL);
    CHECK(dict_del(&d, "a", 1) == NULL);
    size_t pos = 0;
    CHECK(dict_next(&d, &pos) == NULL);
    dict_free(&d);
    CHECK(d.cap == 0 && d.count == 0 && d.slots == NULL);
}

static void test_set_get_replace_delete(void)
{
    dict d;
    int err = 1;
    dict_init(&d);

    CHECK(dict_set(&d, "alpha", 5, VAL(1), &err) == NULL);
    CHECK(err == 0);
    CHECK(d.count == 1);
    CHECK(dict_get(&d, "alpha", 5) == VAL(1));
    CHECK(dict_get(&d, "alph", 4) == NULL);   /* prefix */
    CHECK(dict_get(&d, "alphab", 6) == NULL); /* longer */
    CHECK(dict_get(&d, "Alpha", 5) == NULL);  /* case matters */

    /* Replace returns the old value and keeps the count. */
    err = 1;
    CHECK(dict_set(&d, "alpha", 5, VAL(2), &err) == VAL(1));
    CHECK(err == 0);
    CHECK(d.count == 1);
    CHECK(dict_get(&d, "alpha", 5) == VAL(2));

    /* err may be NULL. */
    CHECK(dict_set(&d, "beta", 4, VAL(3), NULL) == NULL);
    CHECK(d.count == 2);

    CHECK(dict_del(&d, "alpha", 5) == VAL(2));
    CHECK(d.count == 1);
    CHECK(dict_get(&d, "alpha", 5) == NULL);
    CHECK(dict_del(&d, "alpha", 5) == NULL); /* already gone */
    CHECK(dict_get(&d, "beta", 4) == VAL(3));
    CHECK(occupied(&d) == 1);

    /* Re-insert after delete. */
    CHECK(dict_set(&d, "alpha", 5, VAL(4), NULL) == NULL);
    CHECK(dict_get(&d, "alpha", 5) == VAL(4));
    CHECK(d.count == 2);
    dict_free(&d);
}

/* Keys are copied: the caller's buffer may change or go away. */
static void test_keys_copied(void)
{
    dict d;
    char key[8] = "mutable";
    dict_init(&d);
    dict_set(&d, key, 7, VAL(1), NULL);
    memcpy(key, "changed", 7);
    CHECK(dict_get(&d, "mutable", 7) == VAL(1));
    CHECK(dict_get(&d, key, 7) == NULL);

    char *heap = strdup("transient");
    CHECK(heap != NULL);
    if (heap) {
        dict_set(&d, heap, strlen(heap), VAL(2), NULL);
        free(heap);
    }
    CHECK(dict_get(&d, "transient", 9) == VAL(2));

    /* The stored copy is NUL-terminated after klen. */
    size_t pos = 0;
    dict_entry *e;
    int seen = 0;
    while ((e = dict_next(&d, &pos))) {
        CHECK(e->key[e->klen] == '\0');
        seen++;
    }
    CHECK(seen == 2);
    dict_free(&d);
}

static void test_binary_keys(void)
{
    static const struct {
        const char *k;
        size_t len;
    } keys[] = {
        {"a\0b", 3}, {"a\0c", 3}, {"a", 1},    {"a\0", 2},          {"", 0},
        {"\0", 1},   {"\0\0", 2}, {"b\0a", 3}, {"\xff\x00\x80", 3}, {"a\0b\0", 4},
    };
    const size_t n = sizeof(keys) / sizeof(keys[0]);
    dict d;
    dict_init(&d);

    for (size_t i = 0; i < n; i++)
        CHECK(dict_set(&d, keys[i].k, keys[i].len, VAL(i), NULL) == NULL);
    CHECK(d.count == n);
    for (size_t i = 0; i < n; i++)
        CHECK(dict_get(&d, keys[i].k, keys[i].len) == VAL(i));

    /* Iteration returns each key's exact bytes, the empty key included. */
    size_t pos = 0, visits = 0, matched = 0;
    dict_entry *e;
    while ((e = dict_next(&d, &pos))) {
        visits++;
        for (size_t i = 0; i < n; i++)
            if (e->klen == keys[i].len && memcmp(e->key, keys[i].k, e->klen) == 0 &&
                e->val == VAL(i))
                matched++;
    }
    CHECK(visits == n);
    CHECK(matched == n);

    /* A key's bytes, not its C-string prefix, identify it. */
    CHECK(dict_get(&d, "a\0d", 3) == NULL);
    CHECK(dict_get(&d, "\0\0\0", 3) == NULL);

    /* Replace and delete one with embedded NUL; the others stay. */
    CHECK(dict_set(&d, "a\0b", 3, VAL(100), NULL) == VAL(0));
    CHECK(dict_get(&d, "a\0b", 3) == VAL(100));
    CHECK(dict_del(&d, "a\0", 2) == VAL(3));
    CHECK(dict_get(&d, "a\0", 2) == NULL);
    CHECK(dict_get(&d, "a", 1) == VAL(2));
    CHECK(dict_get(&d, "a\0b\0", 4) == VAL(9));
    CHECK(dict_del(&d, "", 0) == VAL(4));
    CHECK(dict_get(&d, "", 0) == NULL);
    CHECK(dict_get(&d, "\0", 1) == VAL(5));
    CHECK(d.count == n - 2);
    dict_free(&d);
}

static void test_u64_keys(void)
{
    const uint64_t keys[] = {0,
                             1,
                             2,
                             255,
                             256,
                             1ULL << 32,
                             (1ULL << 32) + 1,
                             UINT64_MAX,
                             UINT64_MAX - 1,
                             0x8000000000000000ULL};
    const size_t n = sizeof(keys) / sizeof(keys[0]);
    dict d;
    dict_init(&d);
    for (size_t i = 0; i < n; i++)
        CHECK(set_u64(&d, keys[i], VAL(i)) == NULL);
    CHECK(d.count == n);
    for (size_t i = 0; i < n; i++) {
        CHECK(dict_get_u64(&d, keys[i]) == VAL(i));
        uint64_t k = keys[i];
        CHECK(dict_get(&d, &k, sizeof(k)) == VAL(i));
    }
    CHECK(dict_get_u64(&d, 3) == NULL);
    CHECK(dict_get_u64(&d, 1ULL << 31) == NULL);
    /* A u64 key is 8 bytes; a shorter key with the same leading bytes differs. */
    uint64_t one = 1;
    CHECK(dict_get(&d, &one, 4) == NULL);

    CHECK(del_u64(&d, UINT64_MAX) == VAL(7));
    CHECK(dict_get_u64(&d, UINT64_MAX) == NULL);
    CHECK(dict_get_u64(&d, UINT64_MAX - 1) == VAL(8));
    dict_free(&d);
}

/* -------------------------------------------------------------- growth */

#define MANY 10000

static void test_growth(void)
{
    dict d;
    dict_init(&d);
    size_t resizes = 0, last_cap = 0;

    for (uint64_t i = 0; i < MANY; i++) {
        CHECK(set_u64(&d, i * 2654435761ULL, VAL(i)) == NULL);
        if (d.cap != last_cap) {
            resizes++;
            last_cap = d.cap;
        }
        CHECK(d.count == i + 1);
    }
    CHECK(resizes >= 8); /* 16 -> 32 -> ... -> 16384 */
    CHECK((d.cap & (d.cap - 1)) == 0);
    CHECK(d.count * 4 <= d.cap * 3); /* at most 3/4 full */
    CHECK(occupied(&d) == MANY);

    size_t found = 0, absent = 0;
    for (uint64_t i = 0; i < MANY; i++)
        found += dict_get_u64(&d, i * 2654435761ULL) == VAL(i);
    for (uint64_t i = MANY; i < MANY + 1000; i++)
        absent += dict_get_u64(&d, i * 2654435761ULL) == NULL;
    CHECK(found == MANY);
    CHECK(absent == 1000);

    /* String keys too, through the same resizes. */
    dict s;
    dict_init(&s);
    char key[32];
    for (int i = 0; i < MANY; i++) {
        int len = snprintf(key, sizeof(key), "user:%d", i);
        dict_set(&s, key, (size_t)len, VAL(i), NULL);
    }
    CHECK(s.count == MANY);
    found = 0;
    for (int i = 0; i < MANY; i++) {
        int len = snprintf(key, sizeof(key), "user:%d", i);
        found += dict_get(&s, key, (size_t)len) == VAL(i);
    }
    CHECK(found == MANY);
    dict_free(&s);
    dict_free(&d);
}

/* Every key of keys[0..n) not marked gone maps to its value; gone ones are
 * absent.  Returns the number of mismatches. */
static size_t mismatches(const dict *d, const uint64_t *keys, const char *gone, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        void *v = dict_get_u64(d, keys[i]);
        bad += gone[i] ? v != NULL : v != VAL(i);
    }
    return bad;
}

/* Half the keys of a big table deleted in a scattered order. */
static void test_delete_scattered(void)
{
    static uint64_t keys[MANY];
    static char gone[MANY];
    uint64_t seed = 42;
    dict d;
    dict_init(&d);

    for (size_t i = 0; i < MANY; i++) {
        keys[i] = next_rand(&seed);
        gone[i] = 0;
        set_u64(&d, keys[i], VAL(i));
    }
    CHECK(d.count == MANY);

    /* 7919 is prime, so i*7919 mod MANY visits indexes out of order. */
    for (size_t step = 0; step < MANY / 2; step++) {
        size_t i = (step * 7919) % MANY;
        CHECK(!gone[i]);
        CHECK(del_u64(&d, keys[i]) == VAL(i));
        gone[i] = 1;
        if (step % 500 == 499)
            CHECK(mismatches(&d, keys, gone, MANY) == 0);
    }
    CHECK(d.count == MANY / 2);
    CHECK(occupied(&d) == MANY / 2);
    CHECK(mismatches(&d, keys, gone, MANY) == 0);

    /* Deleting a deleted key changes nothing. */
    CHECK(del_u64(&d, keys[0]) == NULL);
    CHECK(d.count == MANY / 2);

    /* Put them back: everything is found again. */
    for (size_t i = 0; i < MANY; i++) {
        if (gone[i]) {
            CHECK(set_u64(&d, keys[i], VAL(i)) == NULL);
            gone[i] = 0;
        }
    }
    CHECK(d.count == MANY);
    CHECK(mismatches(&d, keys, gone, MANY) == 0);
    dict_free(&d);
}

/* Small, nearly full tables (12 keys in 16 slots): long probe runs that wrap
 * past the end of the array.  Every key is deleted in a random order, and
 * every remaining key is looked up after each deletion. */
static void test_delete_wraparound(void)
{
    uint64_t seed = 7;
    size_t bad = 0, wrapped = 0;

    for (int trial = 0; trial < 2000; trial++) {
        uint64_t keys[12];
        char gone[12] = {0};
        size_t order[12];
        dict d;
        dict_init(&d);
        for (size_t i = 0; i < 12; i++) {
            keys[i] = next_rand(&seed);
            set_u64(&d, keys[i], VAL(i));
            order[i] = i;
        }
        if (d.cap != 16) {
            CHECK(d.cap == 16);
            dict_free(&d);
            return;
        }
        /* A run wraps when both the last and the first slot are taken. */
        wrapped += d.slots[15].key && d.slots[0].key;
        for (size_t i = 11; i > 0; i--) {
            size_t j = (size_t)(next_rand(&seed) % (i + 1));
            size_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        for (size_t k = 0; k < 12; k++) {
            size_t i = order[k];
            bad += del_u64(&d, keys[i]) != VAL(i);
            gone[i] = 1;
            bad += mismatches(&d, keys, gone, 12);
            bad += occupied(&d) != 11 - k;
        }
        bad += d.count != 0;
        dict_free(&d);
    }
    CHECK(bad == 0);
    CHECK(wrapped > 100); /* the trials did exercise wrap-around */
}

/* ----------------------------------------------------------- iteration */

static void test_iteration(void)
{
    enum { N = 1000 };
    static int seen[N];
    dict d;
    dict_init(&d);

    for (uint64_t i = 0; i < N; i++)
        set_u64(&d, i, VAL(i));
    for (uint64_t i = 0; i < N; i += 3)
        del_u64(&d, i);

    memset(seen, 0, sizeof(seen));
    size_t visits = 0, bad = 0, pos = 0;
    dict_entry *e;
    while ((e = dict_next(&d, &pos))) {
        uint64_t k;
        visits++;
        if (e->klen != sizeof(k)) {
            bad++;
            continue;
        }
        memcpy(&k, e->key, sizeof(k));
        if (k >= N || e->val != VAL(k)) {
            bad++;
            continue;
        }
        seen[k]++;
    }
    CHECK(bad == 0);
    CHECK(visits == d.count);
    size_t once = 0, deleted_seen = 0;
    for (int i = 0; i < N; i++) {
        if (i % 3 == 0)
            deleted_seen += seen[i] != 0;
        else
            once += seen[i] == 1;
    }
    CHECK(deleted_seen == 0);
    CHECK(once == N - (N + 2) / 3);
    CHECK(dict_next(&d, &pos) == NULL); /* stays at the end */
    dict_free(&d);
}

/* -------------------------------------------------------------- free */

static void test_free_and_reuse(void)
{
    dict d;
    dict_init(&d);
    for (uint64_t i = 0; i < 100; i++)
        set_u64(&d, i, VAL(i));
    dict_free(&d); /* all 100 key copies freed (LeakSanitizer) */
    CHECK(d.slots == NULL && d.cap == 0 && d.count == 0);
    CHECK(dict_get_u64(&d, 5) == NULL);

    /* Usable again after free. */
    CHECK(set_u64(&d, 5, VAL(5)) == NULL);
    CHECK(dict_get_u64(&d, 5) == VAL(5));
    CHECK(d.count == 1);
    dict_free(&d);
    dict_free(&d); /* twice is harmless */
}

/* dict_del_if drops exactly the entries its predicate names, however the
 * backward shift moves the others (random keys, many runs that wrap), and
 * frees their values (LeakSanitizer). */
static int drop_odd(const dict_entry *e, void *arg)
{
    (*(size_t *)arg)++;
    return *(uint64_t *)e->val % 2 == 1;
}

static void test_del_if(void)
{
    enum { N = 3000 };
    static uint64_t keys[N];
    uint64_t seed = 11;
    dict d;
    dict_init(&d);
    for (size_t i = 0; i < N; i++) {
        uint64_t *v = malloc(sizeof(*v));
        CHECK(v != NULL);
        *v = i;
        keys[i] = next_rand(&seed);
        CHECK(set_u64(&d, keys[i], v) == NULL);
    }
    size_t asked = 0;
    CHECK(dict_del_if(&d, drop_odd, &asked) == N / 2);
    CHECK(asked >= N);
    CHECK(d.count == N / 2 && occupied(&d) == N / 2);
    for (size_t i = 0; i < N; i++) {
        uint64_t *v = dict_get_u64(&d, keys[i]);
        CHECK(i % 2 ? v == NULL : v != NULL && *v == i);
    }
    asked = 0;
    CHECK(dict_del_if(&d, drop_odd, &asked) == 0);
    dict_entry *e;
    for (size_t i = 0; (e = dict_next(&d, &i));)
        free(e->val);
    dict_free(&d);
}

TEST_MAIN("dict", T(test_empty), T(test_set_get_replace_delete), T(test_keys_copied),
          T(test_binary_keys), T(test_u64_keys), T(test_growth), T(test_delete_scattered),
          T(test_delete_wraparound), T(test_iteration), T(test_free_and_reuse), T(test_del_if))
