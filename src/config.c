/* config.c — moongate.yaml (libyaml) → a validated mg_config.
 *
 * Loading is table-driven.  Each section has a table of its keys; each key
 * names a value parser, the offset of the field it fills and, where it
 * applies, a range or a list of choices.  parse_map() walks one YAML map
 * against such a table (keys must be known, unique and present when
 * required); the value parsers check types, units, ranges, choices and
 * files.  The first problem is reported as "FILE:LINE:COL: message" at the
 * offending key or value and loading stops; config_free() then releases
 * whatever had been built, so a caller gets a complete config or none.
 *
 * The `app:` section is not checked: it is copied into an mg_node tree for
 * the scripts.  Relative paths resolve against the config file's folder.
 * config_validate() repeats the checks that matter for a config built from
 * command-line flags, without positions. */

#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <amqp.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>
#include <yaml.h>

#include "hsmatch.h"

#define CONFIG_MAX_BYTES (4u << 20) /* a bigger config file is refused */
#define WHERE_MAX 160               /* "listen[0].tls.cert", "app.rooms[3].name" */
#define DURATION_MAX_MS 86400000u   /* 24h: longest heartbeat/limit/shutdown time */
#define HOOK_BUDGET_MAX_MS 60000u
#define APP_MAX_DEPTH 64     /* nesting of the app: tree */
#define CONFIG_MAX_DEPTH 128 /* nesting of the whole file, checked before it is loaded */
#define APP_MAX_NODES 100000 /* values in the app: tree, aliases expanded */
#define DEFAULT_HOST "127.0.0.1"

/* ---------------------------------------------------------------- memory */

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fputs("moongate: out of memory\n", stderr);
        abort();
    }
    return p;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = xcalloc(1, n);
    memcpy(p, s, n);
    return p;
}

/* Replace the string at *slot (freeing the old one) with a copy of s. */
static void str_set(char **slot, const char *s)
{
    free(*slot);
    *slot = s ? xstrdup(s) : NULL;
}

/* ------------------------------------------------------------------ units */

typedef enum { UNIT_OK, UNIT_INVALID, UNIT_NO_UNIT, UNIT_TOO_BIG } unit_status;

typedef struct unit {
    const char *suffix;
    uint64_t factor;
} unit;

static const unit duration_units[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {NULL, 0}};

static const unit size_units[] = {
    {"B", 1},     {"KiB", 1024},       {"MiB", 1024 * 1024},       {"GiB", 1024 * 1024 * 1024},
    {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {NULL, 0}};

/* Unsigned decimal digits only; *too_big is set if they exceed uint64_t.
 * Returns a pointer past the digits (== s when there are none). */
static const char *digits_parse(const char *s, uint64_t *out, int *too_big)
{
    uint64_t n = 0;
    *too_big = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (n > (UINT64_MAX - d) / 10)
            *too_big = 1;
        else
            n = n * 10 + d;
    }
    *out = n;
    return s;
}

/* "<digits><suffix>" with a suffix from units; UNIT_NO_UNIT when the text
 * is bare digits (then *out holds the number). */
static unit_status unit_parse(const char *s, const unit *units, uint64_t *out)
{
    uint64_t n;
    int too_big;
    const char *p = digits_parse(s, &n, &too_big);

    if (p == s)
        return UNIT_INVALID;
    if (*p == '\0') {
        *out = n;
        return too_big ? UNIT_TOO_BIG : UNIT_NO_UNIT;
    }
    for (const unit *u = units; u->suffix; u++) {
        if (strcmp(p, u->suffix) != 0)
            continue;
        if (too_big || n > UINT64_MAX / u->factor)
            return UNIT_TOO_BIG;
        *out = n * u->factor;
        return UNIT_OK;
    }
    return UNIT_INVALID;
}

static unit_status duration_parse(const char *s, uint64_t *ms)
{
    unit_status st = unit_parse(s, duration_units, ms);
    if (st == UNIT_NO_UNIT)
        return *ms == 0 ? UNIT_OK : UNIT_NO_UNIT;
    return st;
}

static unit_status size_parse(const char *s, uint64_t *bytes)
{
    unit_status st = unit_parse(s, size_units, bytes);
    return st == UNIT_NO_UNIT ? UNIT_OK : st;
}

int config_parse_duration(const char *s, uint64_t *ms)
{
    uint64_t v;
    if (!s || duration_parse(s, &v) != UNIT_OK)
        return -1;
    *ms = v;
    return 0;
}

int config_parse_size(const char *s, uint64_t *bytes)
{
    uint64_t v;
    if (!s || size_parse(s, &v) != UNIT_OK)
        return -1;
    *bytes = v;
    return 0;
}

/* Writes ms in a readable exact unit: "24h", "5m", "60s", "250ms" (minutes
 * and hours only from 2 up, so 60000 reads "60s", not "1m"). */
static const char *duration_fmt(uint64_t ms, char *buf, size_t n)
{
    unsigned long long v = (unsigned long long)ms;
    if (v >= 2 * 3600000ull && v % 3600000 == 0)
        snprintf(buf, n, "%lluh", v / 3600000);
    else if (v >= 2 * 60000ull && v % 60000 == 0)
        snprintf(buf, n, "%llum", v / 60000);
    else if (v != 0 && v % 1000 == 0)
        snprintf(buf, n, "%llus", v / 1000);
    else if (v != 0)
        snprintf(buf, n, "%llums", v);
    else
        snprintf(buf, n, "0");
    return buf;
}

/* Writes a byte count in its largest exact binary unit: "1MiB", "100B". */
static const char *size_fmt(uint64_t bytes, char *buf, size_t n)
{
    static const char *const names[] = {"B", "KiB", "MiB", "GiB"};
    unsigned long long v = (unsigned long long)bytes;
    int i = 0;
    while (i < 3 && v != 0 && v % 1024 == 0) {
        v /= 1024;
        i++;
    }
    snprintf(buf, n, "%llu%s", v, names[i]);
    return buf;
}

/* ------------------------------------------------------------------ files */

/* "dir/name", or name itself when it is absolute.  Caller frees. */
static char *path_resolve(const char *dir, const char *name)
{
    if (name[0] == '/' || !dir)
        return xstrdup(name);
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xcalloc(1, n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Checks that path is a readable regular file (or, with want_dir, a
 * searchable directory).  Returns 0, or -1 with a reason in why. */
static int file_check(const char *path, int want_dir, char *why, size_t n)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            snprintf(why, n, "%s not found: %s", want_dir ? "directory" : "file", path);
        else
            snprintf(why, n, "cannot access %s: %s", path, strerror(errno));
        return -1;
    }
    if (want_dir && !S_ISDIR(st.st_mode)) {
        snprintf(why, n, "not a directory: %s", path);
        return -1;
    }
    if (!want_dir && !S_ISREG(st.st_mode)) {
        snprintf(why, n, "not a regular file: %s", path);
        return -1;
    }
    if (access(path, want_dir ? R_OK | X_OK : R_OK) != 0) {
        snprintf(why, n, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* ----------------------------------------------------------- load context */

typedef struct load_ctx {
    const char *file;     /* config path as given, for messages */
    char *dir;            /* realpath of its folder */
    yaml_document_t *doc; /* the parsed document */
    char *err;            /* where the one error message goes */
    size_t errlen;
    size_t app_nodes; /* values built so far for app: */
} load_ctx;

/* Reports "FILE:LINE:COL: message" (1-based) and returns -1. */
static int load_fail(load_ctx *lc, yaml_mark_t mark, const char *fmt, ...)
{
    if (!lc->err || lc->errlen == 0)
        return -1;
    int n = snprintf(lc->err, lc->errlen, "%s:%zu:%zu: ", lc->file, mark.line + 1, mark.column + 1);
    if (n >= 0 && (size_t)n < lc->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(lc->err + n, lc->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Reports "FILE: message" for problems without a position. */
static int load_fail_file(load_ctx *lc, const char *fmt, ...)
{
    if (!lc->err || lc->errlen == 0)
        return -1;
    int n = snprintf(lc->err, lc->errlen, "%s: ", lc->file);
    if (n >= 0 && (size_t)n < lc->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(lc->err + n, lc->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Writes a plain message (config_validate, config_set_listen). */
static int msg_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ------------------------------------------------------------ yaml nodes */

static yaml_node_t *node_at(load_ctx *lc, int index)
{
    return yaml_document_get_node(lc->doc, index);
}

static const char *node_text(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* A plain empty, "~" or "null" scalar: YAML's null. */
static int node_is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = node_text(n);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* "a map", "a list", "nothing" or "'text'", for "expected X, got Y". */
static const char *node_describe(const yaml_node_t *n, char *buf, size_t size)
{
    if (n->type == YAML_MAPPING_NODE)
        return "a map";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a list";
    if (node_is_null(n))
        return "nothing";
    snprintf(buf, size, "'%.40s%s'", node_text(n), strlen(node_text(n)) > 40 ? "..." : "");
    return buf;
}

/* The text of a non-null scalar, or NULL after "WHERE: expected WHAT, got Y". */
static const char *want_scalar(load_ctx *lc, const yaml_node_t *n, const char *where,
                               const char *what)
{
    char buf[64];
    if (n->type == YAML_SCALAR_NODE && !node_is_null(n))
        return node_text(n);
    load_fail(lc, n->start_mark, "%s: expected %s, got %s", where, what,
              node_describe(n, buf, sizeof buf));
    return NULL;
}

/* Child label: "heartbeat" + "interval" -> "heartbeat.interval". */
static void where_join(char *buf, const char *where, const char *name)
{
    if (*where)
        snprintf(buf, WHERE_MAX, "%s.%s", where, name);
    else
        snprintf(buf, WHERE_MAX, "%s", name);
}

typedef struct key_ref {
    const char *text;
    size_t index; /* position in the map, i.e. file order */
} key_ref;

static int key_ref_cmp(const void *a, const void *b)
{
    const key_ref *x = a, *y = b;
    int c = strcmp(x->text, y->text);
    if (c)
        return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Map keys must be scalars and unique.  Reports the first offender in file
 * order (a repeated key at its second appearance). */
static int map_check_keys(load_ctx *lc, const yaml_node_t *map, const char *where)
{
    yaml_node_pair_t *pairs = map->data.mapping.pairs.start;
    size_t n = (size_t)(map->data.mapping.pairs.top - pairs);
    const char *in = *where ? " in " : "";
    char buf[64];

    for (size_t i = 0; i < n; i++) {
        yaml_node_t *k = node_at(lc, pairs[i].key);
        if (k->type != YAML_SCALAR_NODE)
            return load_fail(lc, k->start_mark, "%s%skeys must be plain values, got %s", where,
                             *where ? ": " : "", node_describe(k, buf, sizeof buf));
    }
    if (n < 2)
        return 0;

    key_ref *refs = xcalloc(n, sizeof *refs);
    for (size_t i = 0; i < n; i++)
        refs[i] = (key_ref){node_text(node_at(lc, pairs[i].key)), i};
    qsort(refs, n, sizeof *refs, key_ref_cmp);

    size_t dup = n, first = 0; /* earliest second appearance, and its original */
    for (size_t i = 1, group = 0; i < n; i++) {
        if (strcmp(refs[i].text, refs[group].text) != 0) {
            group = i;
        } else if (refs[i].index < dup) {
            dup = refs[i].index;
            first = refs[group].index;
        }
    }
    free(refs);
    if (dup == n)
        return 0;
    yaml_node_t *k = node_at(lc, pairs[dup].key);
    yaml_node_t *orig = node_at(lc, pairs[first].key);
    return load_fail(lc, k->start_mark, "duplicate key '%s'%s%s (first set at line %zu)",
                     node_text(k), in, where, orig->start_mark.line + 1);
}

/* The value for key name in map, or NULL. */
static yaml_node_t *map_get(load_ctx *lc, const yaml_node_t *map, const char *name)
{
    if (map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node_at(lc, p->key);
        if (k->type == YAML_SCALAR_NODE && !strcmp(node_text(k), name))
            return node_at(lc, p->value);
    }
    return NULL;
}

/* ------------------------------------------------------------- key tables */

typedef struct key_spec key_spec;

/* Parses val for the key ks into the struct at base; where is its label
 * ("heartbeat.interval").  Returns 0, or -1 after load_fail(). */
typedef int (*value_parser)(load_ctx *lc, const yaml_node_t *val, const char *where,
                            const key_spec *ks, void *base);

struct key_spec {
    const char *name;
    value_parser parse;
    size_t offset;              /* of the field filled, in the struct at base */
    int required;               /* missing key is an error */
    uint64_t min, max;          /* allowed range: integers, durations, sizes */
    const char *const *choices; /* an enum's value names, in enum order */
    const key_spec *keys;       /* a subsection's own table */
};

#define FIELD(base, ks, type) ((type *)(void *)((char *)(base) + (ks)->offset))

static int parse_map(load_ctx *lc, const yaml_node_t *map, const char *where, const key_spec *keys,
                     void *base);

static const key_spec *key_find(const key_spec *keys, const char *name)
{
    for (const key_spec *ks = keys; ks->name; ks++)
        if (!strcmp(ks->name, name))
            return ks;
    return NULL;
}

static int key_unknown(load_ctx *lc, const yaml_node_t *key, const char *where,
                       const key_spec *keys)
{
    char known[256] = "";
    size_t len = 0;
    for (const key_spec *ks = keys; ks->name && len < sizeof known; ks++) {
        int n = snprintf(known + len, sizeof known - len, "%s%s", len ? ", " : "", ks->name);
        if (n < 0)
            break;
        len += (size_t)n;
    }
    return load_fail(lc, key->start_mark, "unknown key '%s'%s%s (expected one of: %s)",
                     node_text(key), *where ? " in " : "", where, known);
}

/* Walks map against keys.  A null value (a section whose keys are all
 * commented out) counts as an empty map. */
static int parse_map(load_ctx *lc, const yaml_node_t *map, const char *where, const key_spec *keys,
                     void *base)
{
    char buf[64];
    uint64_t seen = 0;

    if (map->type != YAML_MAPPING_NODE && !node_is_null(map))
        return load_fail(lc, map->start_mark, "%s: expected a map, got %s", where,
                         node_describe(map, buf, sizeof buf));

    if (map->type == YAML_MAPPING_NODE) {
        if (map_check_keys(lc, map, where) != 0)
            return -1;
        for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
             p++) {
            yaml_node_t *key = node_at(lc, p->key);
            const key_spec *ks = key_find(keys, node_text(key));
            char sub[WHERE_MAX];
            if (!ks)
                return key_unknown(lc, key, where, keys);
            seen |= 1ull << (ks - keys);
            where_join(sub, where, ks->name);
            if (ks->parse(lc, node_at(lc, p->value), sub, ks, base) != 0)
                return -1;
        }
    }
    for (const key_spec *ks = keys; ks->name; ks++) {
        if (ks->required && !(seen & (1ull << (ks - keys))))
            return load_fail(lc, map->start_mark, "%s%smissing required key '%s'", where,
                             *where ? ": " : "", ks->name);
    }
    return 0;
}

/* ---------------------------------------------------------- value parsers */

static int parse_section(load_ctx *lc, const yaml_node_t *val, const char *where,
                         const key_spec *ks, void *base)
{
    return parse_map(lc, val, where, ks->keys, base);
}

/* A non-empty string. */
static int parse_string(load_ctx *lc, const yaml_node_t *val, const char *where, const key_spec *ks,
                        void *base)
{
    const char *s = want_scalar(lc, val, where, "a string");
    if (!s)
        return -1;
    if (!*s)
        return load_fail(lc, val->start_mark, "%s: must not be empty", where);
    str_set(FIELD(base, ks, char *), s);
    return 0;
}

/* A YAML sequence at val: its length, or -1 after load_fail(). */
static long seq_len(load_ctx *lc, const yaml_node_t *val, const char *where, const char *what)
{
    char buf[64];
    if (val->type != YAML_SEQUENCE_NODE)
        return load_fail(lc, val->start_mark, "%s: expected a list of %s, got %s", where, what,
                         node_describe(val, buf, sizeof buf));
    return (long)(val->data.sequence.items.top - val->data.sequence.items.start);
}

/* handshake.headers: a list of header names, stored lower-case. */
static int parse_header_list(load_ctx *lc, const yaml_node_t *val, const char *where,
                             const key_spec *ks, void *base)
{
    mg_config *cfg = base;
    char sub[WHERE_MAX];
    (void)ks;

    long count = seq_len(lc, val, where, "header names");
    if (count < 0)
        return -1;
    yaml_node_item_t *items = val->data.sequence.items.start;
    size_t n = (size_t)count;
    if (n > 64)
        return load_fail(lc, val->start_mark, "%s: at most 64 headers", where);
    cfg->keep_headers = xcalloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = node_at(lc, items[i]);
        snprintf(sub, sizeof sub, "%s[%zu]", where, i);
        const char *name = want_scalar(lc, item, sub, "a header name");
        if (!name)
            return -1;
        size_t len = strlen(name);
        if (len == 0 || len > 64 ||
            strspn(name, "abcdefghijklmnopqrstuvwxyz"
                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != len)
            return load_fail(lc, item->start_mark, "%s: not a header name: '%s'", sub, name);
        char *lower = xstrdup(name);
        for (char *c = lower; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c + 32);
        cfg->keep_headers[cfg->nkeep_headers++] = lower;
    }
    return 0;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Checks one entry of a string list: NULL, or why it is not valid. */
typedef const char *(*entry_check)(const char *s);

/* A list of strings (or, with one_ok, a single string for a list of one),
 * each passing check, none twice, at most max: into *out / *n. */
static int parse_str_list(load_ctx *lc, const yaml_node_t *val, const char *where,
                          const char *what, int one_ok, size_t max, entry_check check,
                          char ***out, size_t *n)
{
    char sub[WHERE_MAX];
    const yaml_node_t *only = NULL;
    size_t count = 1;
    if (one_ok && val->type == YAML_SCALAR_NODE) {
        only = val;
    } else {
        long len = seq_len(lc, val, where, what);
        if (len < 0)
            return -1;
        if (len == 0)
            return load_fail(lc, val->start_mark, "%s: the list is empty", where);
        count = (size_t)len;
    }
    if (count > max)
        return load_fail(lc, val->start_mark, "%s: at most %zu entries", where, max);
    strv_free(*out, *n);
    *out = xcalloc(count, sizeof(char *));
    *n = 0;
    for (size_t i = 0; i < count; i++) {
        const yaml_node_t *item = only ? only : node_at(lc, val->data.sequence.items.start[i]);
        if (only)
            snprintf(sub, sizeof sub, "%s", where);
        else
            snprintf(sub, sizeof sub, "%s[%zu]", where, i);
        const char *s = want_scalar(lc, item, sub, what);
        if (!s)
            return -1;
        const char *why = check(s);
        if (why)
            return load_fail(lc, item->start_mark, "%s: %s, got '%s'", sub, why, s);
        for (size_t j = 0; j < *n; j++)
            if (!strcmp((*out)[j], s))
                return load_fail(lc, item->start_mark, "%s: '%s' is listed twice", sub, s);
        (*out)[(*n)++] = xstrdup(s);
    }
    return 0;
}

/* Lists are bounded: each entry is looked at in every handshake. */
#define CONFIG_LIST_MAX 64

/* A listener's path: one, or a list; an entry ending in '*' is a prefix. */
static int parse_ws_paths(load_ctx *lc, const yaml_node_t *val, const char *where,
                          const key_spec *ks, void *base)
{
    mg_listener *l = base;
    (void)ks;
    return parse_str_list(lc, val, where, "a path such as /ws (or a list of them)", 1,
                          CONFIG_LIST_MAX, hsmatch_path_invalid, &l->paths, &l->npaths);
}

static const char *protocol_invalid(const char *s)
{
    if (!hsmatch_is_token(s, strlen(s)))
        return "a subprotocol name is a token (letters, digits and !#$%&'*+-.^_`|~)";
    if (strlen(s) > HSMATCH_PROTOCOL_NAME_MAX)
        return "longer than libwebsockets takes (62 bytes)";
    return NULL;
}

/* The subprotocols a listener chooses from when on_handshake chooses none. */
static int parse_protocols(load_ctx *lc, const yaml_node_t *val, const char *where,
                           const key_spec *ks, void *base)
{
    mg_listener *l = base;
    (void)ks;
    return parse_str_list(lc, val, where, "subprotocol names", 1, CONFIG_LIST_MAX,
                          protocol_invalid, &l->protocols, &l->nprotocols);
}

/* handshake.origins: the Origin values browsers may connect from. */
static int parse_origins(load_ctx *lc, const yaml_node_t *val, const char *where,
                         const key_spec *ks, void *base)
{
    mg_config *cfg = base;
    (void)ks;
    return parse_str_list(lc, val, where, "origins such as https://app.example.com", 1,
                          CONFIG_LIST_MAX, hsmatch_origin_invalid, &cfg->origins,
                          &cfg->norigins);
}

/* A decimal integer in ks->min..ks->max. */
static int parse_integer(load_ctx *lc, const yaml_node_t *val, const char *where,
                         const key_spec *ks, uint64_t *out)
{
    const char *s = want_scalar(lc, val, where, "an integer");
    uint64_t v;
    int too_big;
    if (!s)
        return -1;
    const char *digits = (s[0] == '-' || s[0] == '+') ? s + 1 : s;
    const char *end = digits_parse(digits, &v, &too_big);
    if (end == digits || *end)
        return load_fail(lc, val->start_mark, "%s: expected an integer, got '%s'", where, s);
    if (s[0] == '-' || too_big || v < ks->min || v > ks->max)
        return load_fail(lc, val->start_mark, "%s: must be %llu..%llu, got '%s'", where,
                         (unsigned long long)ks->min, (unsigned long long)ks->max, s);
    *out = v;
    return 0;
}

static int parse_uint32(load_ctx *lc, const yaml_node_t *val, const char *where, const key_spec *ks,
                        void *base)
{
    uint64_t v;
    if (parse_integer(lc, val, where, ks, &v) != 0)
        return -1;
    *FIELD(base, ks, uint32_t) = (uint32_t)v;
    return 0;
}

/* An integer in ks->min..ks->max into an int. */
static int parse_int(load_ctx *lc, const yaml_node_t *val, const char *where, const key_spec *ks,
                     void *base)
{
    uint64_t v;
    if (parse_integer(lc, val, where, ks, &v) != 0)
        return -1;
    *FIELD(base, ks, int) = (int)v;
    return 0;
}

_Static_assert(sizeof(((pmd_config *)0)->min_size) == sizeof(uint64_t),
               "parse_size stores a uint64_t");

static int parse_port(load_ctx *lc, const yaml_node_t *val, const char *where, const key_spec *ks,
                      void *base)
{
    uint64_t v;
    if (parse_integer(lc, val, where, ks, &v) != 0)
        return -1;
    *FIELD(base, ks, int) = (int)v;
    return 0;
}

/* A duration into a uint32_t of milliseconds. */
static int parse_duration(load_ctx *lc, const yaml_node_t *val, const char *where,
                          const key_spec *ks, void *base)
{
    const char *s = want_scalar(lc, val, where, "a duration such as 30s");
    char lo[32], hi[32];
    uint64_t ms = 0;
    if (!s)
        return -1;
    switch (duration_parse(s, &ms)) {
    case UNIT_OK:
        break;
    case UNIT_NO_UNIT:
        return load_fail(lc, val->start_mark,
                         "%s: duration '%s' needs a unit (e.g. %ss or %sms); only 0 may be "
                         "written without one",
                         where, s, s, s);
    case UNIT_INVALID:
        return load_fail(lc, val->start_mark, "%s: invalid duration '%s' (use e.g. 250ms, 30s, 5m)",
                         where, s);
    case UNIT_TOO_BIG:
        ms = UINT64_MAX;
        break;
    }
    if (ms < ks->min || ms > ks->max)
        return load_fail(lc, val->start_mark, "%s: must be %s..%s, got '%s'", where,
                         duration_fmt(ks->min, lo, sizeof lo), duration_fmt(ks->max, hi, sizeof hi),
                         s);
    *FIELD(base, ks, uint32_t) = (uint32_t)ms;
    return 0;
}

/* A size into a uint64_t of bytes. */
static int parse_size(load_ctx *lc, const yaml_node_t *val, const char *where, const key_spec *ks,
                      void *base)
{
    const char *s = want_scalar(lc, val, where, "a size such as 4MiB");
    char lo[32], hi[32];
    uint64_t bytes = 0;
    if (!s)
        return -1;
    switch (size_parse(s, &bytes)) {
    case UNIT_OK:
    case UNIT_NO_UNIT:
        break;
    case UNIT_INVALID:
        return load_fail(lc, val->start_mark,
                         "%s: invalid size '%s' (use e.g. 512KiB, 4MiB, 1GB, or bytes)", where, s);
    case UNIT_TOO_BIG:
        return load_fail(lc, val->start_mark, "%s: size '%s' is too large", where, s);
    }
    if (bytes < ks->min || bytes > ks->max) {
        if (ks->max == UINT64_MAX)
            return load_fail(lc, val->start_mark, "%s: must be at least %s, got '%s'", where,
                             size_fmt(ks->min, lo, sizeof lo), s);
        return load_fail(lc, val->start_mark, "%s: must be %s..%s, got '%s'", where,
                         size_fmt(ks->min, lo, sizeof lo), size_fmt(ks->max, hi, sizeof hi), s);
    }
    *FIELD(base, ks, uint64_t) = bytes;
    return 0;
}

/* One of ks->choices, stored as its index (the enum value). */
static int parse_enum(load_ctx *lc, const yaml_node_t *val, const char *where, const key_spec *ks,
                      void *base)
{
    char list[128] = ""; /* "debug, info, warn or error" */
    size_t len = 0;
    for (int i = 0; ks->choices[i] && len < sizeof list; i++) {
        const char *sep = i == 0 ? "" : ks->choices[i + 1] ? ", " : " or ";
        int n = snprintf(list + len, sizeof list - len, "%s%s", sep, ks->choices[i]);
        if (n < 0)
            break;
        len += (size_t)n;
    }
    const char *s = want_scalar(lc, val, where, list);
    if (!s)
        return -1;
    for (int i = 0; ks->choices[i]; i++) {
        if (!strcmp(s, ks->choices[i])) {
            *FIELD(base, ks, int) = i;
            return 0;
        }
    }
    return load_fail(lc, val->start_mark, "%s: must be %s, got '%s'", where, list, s);
}

/* true or false, stored as an int 1 or 0. */
static int parse_bool(load_ctx *lc, const yaml_node_t *val, const char *where, const key_spec *ks,
                      void *base)
{
    const char *s = want_scalar(lc, val, where, "true or false");
    if (!s)
        return -1;
    if (!strcmp(s, "true") || !strcmp(s, "false")) {
        *FIELD(base, ks, int) = s[0] == 't';
        return 0;
    }
    return load_fail(lc, val->start_mark, "%s: must be true or false, got '%s'", where, s);
}

/* A file or directory that must exist; stored as an absolute path. */
static int parse_existing(load_ctx *lc, const yaml_node_t *val, const char *where,
                          const key_spec *ks, void *base, int want_dir)
{
    const char *s = want_scalar(lc, val, where, want_dir ? "a directory" : "a file name");
    char why[PATH_MAX + 64];
    if (!s)
        return -1;
    char *path = path_resolve(lc->dir, s);
    if (file_check(path, want_dir, why, sizeof why) != 0) {
        free(path);
        return load_fail(lc, val->start_mark, "%s: %s", where, why);
    }
    char *real = realpath(path, NULL);
    char **slot = FIELD(base, ks, char *);
    free(*slot);
    if (real) {
        *slot = real;
        free(path);
    } else {
        *slot = path;
    }
    return 0;
}

static int parse_file(load_ctx *lc, const yaml_node_t *val, const char *where, const key_spec *ks,
                      void *base)
{
    return parse_existing(lc, val, where, ks, base, 0);
}

/* A file that need not exist yet (pid_file, log.file): absolute, relative
 * ones resolved against the config folder like every other path. */
static int parse_new_file(load_ctx *lc, const yaml_node_t *val, const char *where,
                          const key_spec *ks, void *base)
{
    const char *s = want_scalar(lc, val, where, "a file name");
    if (!s)
        return -1;
    if (!*s || s[strlen(s) - 1] == '/')
        return load_fail(lc, val->start_mark, "%s: needs a file name, got '%s'", where, s);
    char **slot = FIELD(base, ks, char *);
    free(*slot);
    *slot = path_resolve(lc->dir, s);
    return 0;
}

/* user: and group: name an account that exists here (checked at load, so
 * that -t finds a typo). */
static int parse_account(load_ctx *lc, const yaml_node_t *val, const char *where,
                         const key_spec *ks, void *base, int group)
{
    if (parse_string(lc, val, where, ks, base) != 0)
        return -1;
    const char *name = *FIELD(base, ks, char *);
    if (group ? getgrnam(name) == NULL : getpwnam(name) == NULL)
        return load_fail(lc, val->start_mark, "%s: no such %s '%s'", where,
                         group ? "group" : "user", name);
    return 0;
}

static int parse_user(load_ctx *lc, const yaml_node_t *val, const char *where, const key_spec *ks,
                      void *base)
{
    return parse_account(lc, val, where, ks, base, 0);
}

static int parse_group(load_ctx *lc, const yaml_node_t *val, const char *where, const key_spec *ks,
                       void *base)
{
    return parse_account(lc, val, where, ks, base, 1);
}

static int parse_dir(load_ctx *lc, const yaml_node_t *val, const char *where, const key_spec *ks,
                     void *base)
{
    return parse_existing(lc, val, where, ks, base, 1);
}

/* A Lua search path "a/?.lua;/b/?.lua;;": each relative entry is prefixed
 * with the config folder; empty entries (Lua's "default here") are kept. */
static int parse_lua_path(load_ctx *lc, const yaml_node_t *val, const char *where,
                          const key_spec *ks, void *base)
{
    const char *s = want_scalar(lc, val, where, "a Lua search path such as lib/?.lua");
    if (!s)
        return -1;
    size_t entries = 1;
    for (const char *p = s; *p; p++)
        entries += *p == ';';
    size_t cap = strlen(s) + entries * (strlen(lc->dir) + 1) + 1;
    char *out = xcalloc(1, cap);
    size_t len = 0;

    for (const char *p = s;;) {
        size_t n = strcspn(p, ";");
        if (n > 0 && p[0] != '/')
            len += (size_t)snprintf(out + len, cap - len, "%s/", lc->dir);
        memcpy(out + len, p, n);
        len += n;
        if (p[n] == '\0')
            break;
        out[len++] = ';';
        p += n + 1;
    }
    out[len] = '\0';
    char **slot = FIELD(base, ks, char *);
    free(*slot);
    *slot = out;
    return 0;
}

/* ------------------------------------------------------------- app: tree */

static void node_free(mg_node *node)
{
    if (!node)
        return;
    for (size_t i = 0; i < node->nitems; i++)
        node_free(node->items[i]);
    free(node->items);
    free(node->key);
    free(node->str);
    free(node);
}

/* YAML 1.2 core-schema number: 12, -3, 1.5, 2e10, .5, 0x1F, 0o17, .inf, .nan. */
static int number_parse(const char *s, double *out)
{
    const char *p = s + (*s == '-' || *s == '+');
    char *end;

    if (!strcmp(p, ".inf") || !strcmp(p, ".Inf") || !strcmp(p, ".INF")) {
        *out = *s == '-' ? -INFINITY : INFINITY;
        return 1;
    }
    if (p == s && (!strcmp(s, ".nan") || !strcmp(s, ".NaN") || !strcmp(s, ".NAN"))) {
        *out = NAN;
        return 1;
    }
    if (p == s && (s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) && s[2]) {
        unsigned long long v = strtoull(s + 2, &end, s[1] == 'x' ? 16 : 8);
        if (*end || !isalnum((unsigned char)s[2]))
            return 0;
        *out = (double)v;
        return 1;
    }
    /* [-+]? ( \.[0-9]+ | [0-9]+ ( \.[0-9]* )? ) ( [eE][-+]?[0-9]+ )? */
    const char *q = p;
    size_t int_digits = 0, frac_digits = 0;
    while (isdigit((unsigned char)*q))
        q++, int_digits++;
    if (*q == '.') {
        q++;
        while (isdigit((unsigned char)*q))
            q++, frac_digits++;
    }
    if (int_digits == 0 && frac_digits == 0)
        return 0;
    if (*q == 'e' || *q == 'E') {
        q++;
        q += *q == '-' || *q == '+';
        if (!isdigit((unsigned char)*q))
            return 0;
        while (isdigit((unsigned char)*q))
            q++;
    }
    if (*q)
        return 0;
    *out = strtod(s, &end);
    return 1;
}

static void node_set_scalar(mg_node *node, const yaml_node_t *n)
{
    const char *s = node_text(n);
    double num;

    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        node->type = MG_NODE_STRING;
    } else if (node_is_null(n)) {
        node->type = MG_NODE_NULL;
    } else if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) {
        node->type = MG_NODE_BOOL;
        node->boolean = 1;
    } else if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) {
        node->type = MG_NODE_BOOL;
        node->boolean = 0;
    } else if (number_parse(s, &num)) {
        node->type = MG_NODE_NUMBER;
        node->num = num;
    } else {
        node->type = MG_NODE_STRING;
    }
    if (node->type == MG_NODE_STRING)
        node->str = xstrdup(s);
}

/* Copies n into a new node at *out (set before anything can fail, so the
 * caller's tree always owns it). */
static int node_build(load_ctx *lc, const yaml_node_t *n, const char *where, int depth,
                      mg_node **out)
{
    if (++lc->app_nodes > APP_MAX_NODES)
        return load_fail(lc, n->start_mark,
                         "app: too many values (more than %d, counting each use of an alias)",
                         APP_MAX_NODES);
    if (depth > APP_MAX_DEPTH)
        return load_fail(lc, n->start_mark,
                         "app: nested too deeply (more than %d levels; a recursive alias?)",
                         APP_MAX_DEPTH);

    mg_node *node = xcalloc(1, sizeof *node);
    char sub[WHERE_MAX];
    *out = node;

    if (n->type == YAML_SCALAR_NODE) {
        node_set_scalar(node, n);
    } else if (n->type == YAML_SEQUENCE_NODE) {
        yaml_node_item_t *items = n->data.sequence.items.start;
        node->type = MG_NODE_SEQ;
        node->nitems = (size_t)(n->data.sequence.items.top - items);
        node->items = xcalloc(node->nitems, sizeof *node->items);
        for (size_t i = 0; i < node->nitems; i++) {
            snprintf(sub, sizeof sub, "%s[%zu]", where, i);
            if (node_build(lc, node_at(lc, items[i]), sub, depth + 1, &node->items[i]) != 0)
                return -1;
        }
    } else {
        yaml_node_pair_t *pairs = n->data.mapping.pairs.start;
        node->type = MG_NODE_MAP;
        if (map_check_keys(lc, n, where) != 0)
            return -1;
        node->nitems = (size_t)(n->data.mapping.pairs.top - pairs);
        node->items = xcalloc(node->nitems, sizeof *node->items);
        for (size_t i = 0; i < node->nitems; i++) {
            const char *key = node_text(node_at(lc, pairs[i].key));
            where_join(sub, where, key);
            if (node_build(lc, node_at(lc, pairs[i].value), sub, depth + 1, &node->items[i]) != 0)
                return -1;
            node->items[i]->key = xstrdup(key);
        }
    }
    return 0;
}

static int parse_app(load_ctx *lc, const yaml_node_t *val, const char *where, const key_spec *ks,
                     void *base)
{
    mg_config *cfg = base;
    (void)ks;
    if (node_is_null(val))
        return 0; /* "app:" with nothing under it: same as no app */
    lc->app_nodes = 0;
    return node_build(lc, val, where, 0, &cfg->app);
}

/* -------------------------------------------------------------- sections */

#define CFG(field) offsetof(mg_config, field)
#define LST(field) offsetof(mg_listener, field)

static const char *const reader_names[] = {"moongate", "libwebsockets", NULL};
static const char *const slow_names[] = {"close", "drop", NULL};
static const char *const dup_names[] = {"replace", "reject", NULL};
static const char *const level_names[] = {"debug", "info", "warn", "error", NULL};
static const char *const format_names[] = {"text", "json", NULL};
static const char *const uring_names[] = {"auto", "off", NULL};

_Static_assert(sizeof(mg_reader) == sizeof(int) && sizeof(mg_slow_action) == sizeof(int) &&
                   sizeof(mg_dup_policy) == sizeof(int) && sizeof(mg_log_level) == sizeof(int) &&
                   sizeof(mg_log_format) == sizeof(int) && sizeof(mg_uring_mode) == sizeof(int),
               "parse_enum stores enums as int");

/* clang-format off */
static const key_spec tls_keys[] = {
    {.name = "cert", .parse = parse_file, .offset = LST(tls_cert), .required = 1},
    {.name = "key",  .parse = parse_file, .offset = LST(tls_key),  .required = 1},
    {0}};

static const key_spec compression_keys[] = {
    {.name = "enabled",                    .parse = parse_bool, .offset = LST(compression.enabled)},
    {.name = "server_max_window_bits",     .parse = parse_int,  .offset = LST(compression.server_max_window_bits), .min = 8, .max = 15},
    {.name = "client_max_window_bits",     .parse = parse_int,  .offset = LST(compression.client_max_window_bits), .min = 8, .max = 15},
    {.name = "mem_level",                  .parse = parse_int,  .offset = LST(compression.mem_level), .min = 1, .max = 9},
    {.name = "level",                      .parse = parse_int,  .offset = LST(compression.level), .min = 0, .max = 9},
    {.name = "server_no_context_takeover", .parse = parse_bool, .offset = LST(compression.server_no_context_takeover)},
    {.name = "client_no_context_takeover", .parse = parse_bool, .offset = LST(compression.client_no_context_takeover)},
    {.name = "min_size",                   .parse = parse_size, .offset = LST(compression.min_size), .max = UINT32_MAX},
    {0}};

static const key_spec listener_keys[] = {
    {.name = "host",   .parse = parse_string,  .offset = LST(host)},
    {.name = "port",   .parse = parse_port,    .offset = LST(port), .required = 1, .min = 1, .max = 65535},
    {.name = "path",   .parse = parse_ws_paths},
    {.name = "protocols", .parse = parse_protocols},
    {.name = "tls",    .parse = parse_section, .keys = tls_keys},
    {.name = "reader", .parse = parse_enum,    .offset = LST(reader), .choices = reader_names},
    {.name = "compression", .parse = parse_section, .keys = compression_keys},
    {0}};

static const key_spec lua_keys[] = {
    {.name = "path",         .parse = parse_lua_path, .offset = CFG(lua_path)},
    {.name = "cpath",        .parse = parse_lua_path, .offset = CFG(lua_cpath)},
    {.name = "hook_budget",  .parse = parse_duration, .offset = CFG(hook_budget_ms),   .min = 1, .max = HOOK_BUDGET_MAX_MS},
    {.name = "memory_limit", .parse = parse_size,     .offset = CFG(lua_memory_limit), .max = UINT64_MAX},
    {.name = "sandbox",      .parse = parse_bool,     .offset = CFG(lua_sandbox)},
    {0}};

static const key_spec static_keys[] = {
    {.name = "root",  .parse = parse_dir,    .offset = CFG(static_root), .required = 1},
    {.name = "index", .parse = parse_string, .offset = CFG(static_index)},
    {.name = "follow_symlinks", .parse = parse_bool, .offset = CFG(static_follow_symlinks)},
    {0}};

static const key_spec heartbeat_keys[] = {
    {.name = "interval",  .parse = parse_duration, .offset = CFG(ping_interval_ms), .max = DURATION_MAX_MS},
    {.name = "timeout",   .parse = parse_duration, .offset = CFG(ping_timeout_ms),  .max = DURATION_MAX_MS},
    {.name = "text_ping", .parse = parse_string,   .offset = CFG(text_ping)},
    {.name = "text_pong", .parse = parse_string,   .offset = CFG(text_pong)},
    {0}};

static const key_spec limits_keys[] = {
    {.name = "max_connections",   .parse = parse_uint32,   .offset = CFG(max_connections),      .min = 1, .max = UINT32_MAX},
    {.name = "max_message_size",  .parse = parse_size,     .offset = CFG(max_message_size),     .min = 1, .max = UINT64_MAX},
    {.name = "send_queue",        .parse = parse_size,     .offset = CFG(send_queue_max),       .min = 1, .max = UINT64_MAX},
    {.name = "slow_consumer",     .parse = parse_enum,     .offset = CFG(slow_consumer),        .choices = slow_names},
    {.name = "handshake_timeout", .parse = parse_duration, .offset = CFG(handshake_timeout_ms), .min = 1, .max = DURATION_MAX_MS},
    {.name = "max_handshakes",    .parse = parse_uint32,   .offset = CFG(max_handshakes),       .min = 1, .max = 1000000},
    {.name = "max_header_size",   .parse = parse_size,     .offset = CFG(max_header_size),      .min = CONFIG_HEADER_SIZE_MIN, .max = CONFIG_HEADER_SIZE_MAX},
    {.name = "message_rate",      .parse = parse_uint32,   .offset = CFG(message_rate),         .max = UINT32_MAX},
    {.name = "message_burst",     .parse = parse_uint32,   .offset = CFG(message_burst),        .max = UINT32_MAX},
    {.name = "close_timeout",     .parse = parse_duration, .offset = CFG(close_timeout_ms),     .max = DURATION_MAX_MS},
    {0}};

static const key_spec handshake_keys[] = {
    {.name = "headers", .parse = parse_header_list},
    {.name = "origins", .parse = parse_origins},
    {0}};

static const key_spec names_keys[] = {
    {.name = "duplicate", .parse = parse_enum, .offset = CFG(duplicate_names), .choices = dup_names},
    {0}};

static const key_spec shutdown_keys[] = {
    {.name = "drain_timeout", .parse = parse_duration, .offset = CFG(drain_timeout_ms), .max = DURATION_MAX_MS},
    {0}};

static const key_spec io_keys[] = {
    {.name = "uring", .parse = parse_enum, .offset = CFG(uring), .choices = uring_names},
    {.name = "require_fast_paths", .parse = parse_bool, .offset = CFG(require_fast_paths)},
    {0}};

static const key_spec log_keys[] = {
    {.name = "level",  .parse = parse_enum, .offset = CFG(log_level),  .choices = level_names},
    {.name = "format", .parse = parse_enum, .offset = CFG(log_format), .choices = format_names},
    {.name = "file",   .parse = parse_new_file, .offset = CFG(log_file)},
    {0}};

static const key_spec admin_keys[] = {
    {.name = "host",  .parse = parse_string, .offset = CFG(admin_host)},
    {.name = "port",  .parse = parse_port,   .offset = CFG(admin_port), .required = 1, .min = 1, .max = 65535},
    {.name = "token", .parse = parse_string, .offset = CFG(admin_token)},
    {0}};
/* clang-format on */

/* Two listeners on the same host:port would fail to bind; say so early. */
static int listener_find_twin(const mg_config *cfg, size_t i)
{
    for (size_t j = 0; j < i; j++) {
        const mg_listener *a = &cfg->listeners[i], *b = &cfg->listeners[j];
        if (a->port == b->port && a->host && b->host && !strcmp(a->host, b->host))
            return (int)j;
    }
    return -1;
}

static void listener_set_path(mg_listener *l, const char *path)
{
    strv_free(l->paths, l->npaths);
    l->paths = xcalloc(1, sizeof(char *));
    l->paths[0] = xstrdup(path);
    l->npaths = 1;
}

static void listener_defaults(mg_listener *l)
{
    l->host = xstrdup(DEFAULT_HOST);
    listener_set_path(l, "/");
    pmd_config_default(&l->compression);
}

/* A listener's compression section, once read: in range, and on a
 * listener moongate reads (libwebsockets' reader takes a compressed
 * frame's RSV1 bit for a protocol error). */
static int listener_check_compression(load_ctx *lc, const yaml_node_t *item, const char *where,
                                      const mg_listener *l)
{
    const char *why = NULL;
    if (pmd_config_check(&l->compression, &why) != 0)
        return load_fail(lc, item->start_mark, "%s.compression: %s", where, why);
    if (l->compression.enabled && l->reader != MG_READER_MOONGATE)
        return load_fail(lc, item->start_mark,
                         "%s.compression: needs reader: moongate (libwebsockets' reader cannot "
                         "read compressed frames)",
                         where);
    return 0;
}

static int parse_listen(load_ctx *lc, const yaml_node_t *val, const char *where, const key_spec *ks,
                        void *base)
{
    mg_config *cfg = base;
    char sub[WHERE_MAX];
    (void)ks;

    long count = seq_len(lc, val, where, "listeners (\"- port: 8080\")");
    if (count < 0)
        return -1;
    yaml_node_item_t *items = val->data.sequence.items.start;
    size_t n = (size_t)count;
    if (n == 0)
        return load_fail(lc, val->start_mark, "%s: needs at least one listener", where);

    cfg->listeners = xcalloc(n, sizeof *cfg->listeners);
    cfg->nlisteners = n;
    for (size_t i = 0; i < n; i++)
        listener_defaults(&cfg->listeners[i]);
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = node_at(lc, items[i]);
        snprintf(sub, sizeof sub, "%s[%zu]", where, i);
        if (parse_map(lc, item, sub, listener_keys, &cfg->listeners[i]) != 0 ||
            listener_check_compression(lc, item, sub, &cfg->listeners[i]) != 0)
            return -1;
        int twin = listener_find_twin(cfg, i);
        if (twin >= 0)
            return load_fail(lc, item->start_mark, "%s: same address %s:%d as %s[%d]", sub,
                             cfg->listeners[i].host, cfg->listeners[i].port, where, twin);
    }
    return 0;
}

static int parse_heartbeat(load_ctx *lc, const yaml_node_t *val, const char *where,
                           const key_spec *ks, void *base)
{
    mg_config *cfg = base;
    if (parse_map(lc, val, where, ks->keys, base) != 0)
        return -1;
    if (!cfg->text_ping != !cfg->text_pong) {
        const char *set = cfg->text_ping ? "text_ping" : "text_pong";
        const char *unset = cfg->text_ping ? "text_pong" : "text_ping";
        yaml_node_t *v = map_get(lc, val, set);
        return load_fail(lc, v->start_mark, "%s.%s: set without %s.%s (set both or neither)", where,
                         set, where, unset);
    }
    return 0;
}

static int parse_admin(load_ctx *lc, const yaml_node_t *val, const char *where, const key_spec *ks,
                       void *base)
{
    mg_config *cfg = base;
    str_set(&cfg->admin_host, DEFAULT_HOST);
    return parse_map(lc, val, where, ks->keys, base);
}

/* ---------------------------------------------------------------- broker */

#define BRK(field) offsetof(mg_broker_config, field)
#define BQ(field) offsetof(mg_broker_queue, field)

/* A string that may be empty ("" is the default exchange). */
static int parse_string_any(load_ctx *lc, const yaml_node_t *val, const char *where,
                            const key_spec *ks, void *base)
{
    const char *s = want_scalar(lc, val, where, "a string");
    if (!s)
        return -1;
    str_set(FIELD(base, ks, char *), s);
    return 0;
}

/* broker.url: checked with rabbitmq-c's own parser. */
static int parse_amqp_url(load_ctx *lc, const yaml_node_t *val, const char *where,
                          const key_spec *ks, void *base)
{
    struct amqp_connection_info info;
    const char *s = want_scalar(lc, val, where, "an amqp:// URL");
    if (!s)
        return -1;
    char *copy = xstrdup(s);
    int rc = amqp_parse_url(copy, &info);
    int tls = rc == AMQP_STATUS_OK && info.ssl;
    free(copy);
    if (rc != AMQP_STATUS_OK)
        return load_fail(lc, val->start_mark,
                         "%s: invalid URL '%s' (expected amqp://user:pass@host:port/vhost)", where,
                         s);
    if (tls)
        return load_fail(lc, val->start_mark, "%s: amqps:// is not supported yet, got '%s'", where,
                         s);
    str_set(FIELD(base, ks, char *), s);
    return 0;
}

static const key_spec broker_queue_keys[] = {
    {.name = "name", .parse = parse_string, .offset = BQ(name), .required = 1},
    {.name = "dead_letter_exchange", .parse = parse_string_any, .offset = BQ(dead_letter_exchange)},
    {.name = "dead_letter_routing_key",
     .parse = parse_string,
     .offset = BQ(dead_letter_routing_key)},
    {.name = "message_ttl",
     .parse = parse_duration,
     .offset = BQ(message_ttl_ms),
     .min = 1,
     .max = DURATION_MAX_MS},
    {0}};

static int parse_broker_queues(load_ctx *lc, const yaml_node_t *val, const char *where,
                               const key_spec *ks, void *base)
{
    mg_broker_config *b = base;
    char sub[WHERE_MAX];
    (void)ks;
    long n = seq_len(lc, val, where, "queues (\"- name: tasks\")");
    if (n < 0)
        return -1;
    b->queues = xcalloc((size_t)n ? (size_t)n : 1, sizeof *b->queues);
    b->nqueues = (size_t)n;
    for (long i = 0; i < n; i++) {
        snprintf(sub, sizeof sub, "%s[%ld]", where, i);
        yaml_node_t *item = node_at(lc, val->data.sequence.items.start[i]);
        if (parse_map(lc, item, sub, broker_queue_keys, &b->queues[i]) != 0)
            return -1;
        for (long j = 0; j < i; j++)
            if (!strcmp(b->queues[j].name, b->queues[i].name))
                return load_fail(lc, item->start_mark, "%s: queue '%s' is declared twice", sub,
                                 b->queues[i].name);
    }
    return 0;
}

static int parse_broker_consume(load_ctx *lc, const yaml_node_t *val, const char *where,
                                const key_spec *ks, void *base)
{
    mg_broker_config *b = base;
    char sub[WHERE_MAX];
    (void)ks;
    long n = seq_len(lc, val, where, "queue names");
    if (n < 0)
        return -1;
    b->consume = xcalloc((size_t)n ? (size_t)n : 1, sizeof *b->consume);
    for (long i = 0; i < n; i++) {
        snprintf(sub, sizeof sub, "%s[%ld]", where, i);
        yaml_node_t *item = node_at(lc, val->data.sequence.items.start[i]);
        const char *s = want_scalar(lc, item, sub, "a queue name");
        if (!s)
            return -1;
        if (!*s)
            return load_fail(lc, item->start_mark, "%s: must not be empty", sub);
        b->consume[b->nconsume++] = xstrdup(s);
    }
    return 0;
}

/* clang-format off */
static const key_spec broker_keys[] = {
    {.name = "url",             .parse = parse_amqp_url,       .offset = BRK(url), .required = 1},
    {.name = "heartbeat",       .parse = parse_duration,       .offset = BRK(heartbeat_ms),       .max = 600000},
    {.name = "connect_timeout", .parse = parse_duration,       .offset = BRK(connect_timeout_ms), .min = 1, .max = DURATION_MAX_MS},
    {.name = "reconnect_min",   .parse = parse_duration,       .offset = BRK(reconnect_min_ms),   .min = 1, .max = DURATION_MAX_MS},
    {.name = "reconnect_max",   .parse = parse_duration,       .offset = BRK(reconnect_max_ms),   .min = 1, .max = DURATION_MAX_MS},
    {.name = "prefetch",        .parse = parse_uint32,         .offset = BRK(prefetch),           .min = 1, .max = 65535},
    {.name = "publish_buffer",  .parse = parse_uint32,         .offset = BRK(publish_buffer),     .min = 1, .max = 10000000},
    {.name = "queues",          .parse = parse_broker_queues},
    {.name = "consume",         .parse = parse_broker_consume},
    {0}};
/* clang-format on */

static int parse_broker(load_ctx *lc, const yaml_node_t *val, const char *where, const key_spec *ks,
                        void *base)
{
    mg_config *cfg = base;
    mg_broker_config *b = xcalloc(1, sizeof *b);
    cfg->broker = b;
    b->heartbeat_ms = 10000;
    b->connect_timeout_ms = 5000;
    b->reconnect_min_ms = 200;
    b->reconnect_max_ms = 10000;
    b->prefetch = 100;
    b->publish_buffer = 10000;
    if (parse_map(lc, val, where, ks->keys, b) != 0)
        return -1;
    if (b->reconnect_max_ms < b->reconnect_min_ms) {
        yaml_node_t *at = map_get(lc, val, "reconnect_max");
        if (!at)
            at = map_get(lc, val, "reconnect_min");
        return load_fail(lc, at ? at->start_mark : val->start_mark,
                         "%s: reconnect_max must not be below reconnect_min", where);
    }
    return 0;
}

static void broker_config_free(mg_broker_config *b)
{
    if (!b)
        return;
    free(b->url);
    for (size_t i = 0; i < b->nqueues; i++) {
        free(b->queues[i].name);
        free(b->queues[i].dead_letter_exchange);
        free(b->queues[i].dead_letter_routing_key);
    }
    free(b->queues);
    for (size_t i = 0; i < b->nconsume; i++)
        free(b->consume[i]);
    free(b->consume);
    free(b);
}

/* workers: N, or auto (the online CPUs, at most CONFIG_MAX_WORKERS). */
static int parse_workers(load_ctx *lc, const yaml_node_t *val, const char *where,
                         const key_spec *ks, void *base)
{
    if (val->type == YAML_SCALAR_NODE && !strcmp((const char *)val->data.scalar.value, "auto")) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        if (n < 1)
            n = 1;
        *FIELD(base, ks, uint32_t) = n > CONFIG_MAX_WORKERS ? CONFIG_MAX_WORKERS : (uint32_t)n;
        return 0;
    }
    return parse_uint32(lc, val, where, ks, base);
}

/* --------------------------------------------------------------- cluster */

#define CLU(field) offsetof(mg_cluster_config, field)

/* cluster.node and cluster.prefix go into AMQP names and routing keys. */
static int parse_cluster_name(load_ctx *lc, const yaml_node_t *val, const char *where,
                              const key_spec *ks, void *base)
{
    const char *s = want_scalar(lc, val, where, "a name");
    if (!s)
        return -1;
    size_t n = strlen(s);
    int ok = n >= 1 && n <= 64;
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)s[i]) || s[i] == '-' || s[i] == '_';
    if (!ok)
        return load_fail(lc, val->start_mark, "%s: 1-64 letters, digits, '-' or '_', got '%s'",
                         where, s);
    str_set(FIELD(base, ks, char *), s);
    return 0;
}

/* clang-format off */
static const key_spec cluster_keys[] = {
    {.name = "node",      .parse = parse_cluster_name, .offset = CLU(node), .required = 1},
    {.name = "id",        .parse = parse_uint32,       .offset = CLU(id), .required = 1, .min = 1, .max = CONFIG_MAX_NODE_ID},
    {.name = "prefix",    .parse = parse_cluster_name, .offset = CLU(prefix)},
    {.name = "queue_max", .parse = parse_uint32,       .offset = CLU(queue_max), .min = 1, .max = 100000000},
    {0}};
/* clang-format on */

static int parse_cluster(load_ctx *lc, const yaml_node_t *val, const char *where,
                         const key_spec *ks, void *base)
{
    mg_config *cfg = base;
    mg_cluster_config *c = xcalloc(1, sizeof *c);
    cfg->cluster = c;
    c->queue_max = 100000;
    if (parse_map(lc, val, where, ks->keys, c) != 0)
        return -1;
    if (!c->prefix)
        c->prefix = xstrdup("moongate");
    return 0;
}

static void cluster_config_free(mg_cluster_config *c)
{
    if (!c)
        return;
    free(c->node);
    free(c->prefix);
    free(c);
}

/* clang-format off */
static const key_spec top_keys[] = {
    {.name = "listen",    .parse = parse_listen,    .required = 1},
    {.name = "script",    .parse = parse_file,      .offset = CFG(script), .required = 1},
    {.name = "lua",       .parse = parse_section,   .keys = lua_keys},
    {.name = "static",    .parse = parse_section,   .keys = static_keys},
    {.name = "heartbeat", .parse = parse_heartbeat, .keys = heartbeat_keys},
    {.name = "limits",    .parse = parse_section,   .keys = limits_keys},
    {.name = "handshake", .parse = parse_section,   .keys = handshake_keys},
    {.name = "names",     .parse = parse_section,   .keys = names_keys},
    {.name = "shutdown",  .parse = parse_section,   .keys = shutdown_keys},
    {.name = "io",        .parse = parse_section,   .keys = io_keys},
    {.name = "log",       .parse = parse_section,   .keys = log_keys},
    {.name = "admin",     .parse = parse_admin,     .keys = admin_keys},
    {.name = "broker",    .parse = parse_broker,    .keys = broker_keys},
    {.name = "cluster",   .parse = parse_cluster,   .keys = cluster_keys},
    {.name = "workers",   .parse = parse_workers,   .offset = CFG(workers), .min = 1, .max = CONFIG_MAX_WORKERS},
    {.name = "app",       .parse = parse_app},
    {.name = "pid_file",  .parse = parse_new_file,  .offset = CFG(pid_file)},
    {.name = "user",      .parse = parse_user,      .offset = CFG(user)},
    {.name = "group",     .parse = parse_group,     .offset = CFG(group)},
    {0}};
/* clang-format on */

/* ------------------------------------------------------------ config_load */

/* Reads the whole file; config files are small.  Opened without
 * blocking: a FIFO or a device named as the config would otherwise block
 * the event loop (a reload) or -t in open() until a writer came. */
static int load_read(load_ctx *lc, char **text, size_t *len)
{
    struct stat st;
    int fd = open(lc->file, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return load_fail_file(lc, "cannot open: %s", strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return load_fail_file(lc, "not a regular file");
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return load_fail_file(lc, "cannot open: %s", strerror(errno));
    }
    if ((uint64_t)st.st_size > CONFIG_MAX_BYTES) {
        fclose(f);
        return load_fail_file(lc, "too large (over %u bytes)", CONFIG_MAX_BYTES);
    }
    *text = xcalloc(1, (size_t)st.st_size + 1);
    *len = fread(*text, 1, (size_t)st.st_size, f);
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(*text);
        *text = NULL;
        return load_fail_file(lc, "cannot read: %s", strerror(errno));
    }
    return 0;
}

/* lc->dir = realpath of the config file's folder. */
static int load_dir(load_ctx *lc)
{
    char *copy = xstrdup(lc->file);
    lc->dir = realpath(dirname(copy), NULL);
    free(copy);
    if (!lc->dir)
        return load_fail_file(lc, "cannot resolve its folder: %s", strerror(errno));
    return 0;
}

/* libyaml's problem as "FILE:LINE:COL: YAML syntax error: ...". */
static int load_yaml_error(load_ctx *lc, const yaml_parser_t *parser, const char *text, size_t len)
{
    yaml_mark_t mark = parser->problem_mark;
    const char *problem = parser->problem ? parser->problem : "unknown problem";

    switch (parser->error) {
    case YAML_MEMORY_ERROR:
        return load_fail_file(lc, "out of memory while parsing");
    case YAML_READER_ERROR:
        /* Only a byte offset is known: count lines up to it. */
        memset(&mark, 0, sizeof mark);
        for (size_t i = 0; i < parser->problem_offset && i < len; i++) {
            if (text[i] == '\n') {
                mark.line++;
                mark.column = 0;
            } else {
                mark.column++;
            }
        }
        return load_fail(lc, mark, "invalid YAML text: %s", problem);
    default:
        if (mark.index < len && text[mark.index] == '\t')
            return load_fail(
                lc, mark, "YAML syntax error: %s (tabs cannot indent YAML; use spaces)", problem);
        if (parser->context)
            return load_fail(lc, mark, "YAML syntax error: %s (%s at line %zu)", problem,
                             parser->context, parser->context_mark.line + 1);
        return load_fail(lc, mark, "YAML syntax error: %s", problem);
    }
}

/* libyaml's scanner keeps a possible simple key per open flow collection
 * and rescans them all at every token, so its time grows with the square
 * of the nesting: a small file of deeply nested brackets took seconds, and
 * a reload stalled every client that long.  So the file's events are read
 * once first, and a file nested deeper than CONFIG_MAX_DEPTH is refused
 * before libyaml builds a document of it (reading the events stops there,
 * after a bounded amount of work).  Syntax errors are left to the load
 * that follows, which reports them. */
static int load_depth_check(load_ctx *lc, const char *text, size_t len)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    int depth = 0, rc = 0;
    if (!yaml_parser_initialize(&parser))
        return load_fail_file(lc, "out of memory while parsing");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    while (yaml_parser_parse(&parser, &ev)) {
        yaml_event_type_t t = ev.type;
        if (t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT)
            depth++;
        else if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT)
            depth--;
        if (depth > CONFIG_MAX_DEPTH)
            rc = load_fail(lc, ev.start_mark, "nested too deeply (more than %d levels)",
                           CONFIG_MAX_DEPTH);
        yaml_event_delete(&ev);
        if (rc || t == YAML_STREAM_END_EVENT)
            break;
    }
    yaml_parser_delete(&parser);
    return rc;
}

/* Anything after the first document is a mistake (or a syntax error). */
static int load_single_document(load_ctx *lc, yaml_parser_t *parser, const char *text, size_t len)
{
    yaml_document_t extra;
    if (!yaml_parser_load(parser, &extra))
        return load_yaml_error(lc, parser, text, len);
    int rc = 0;
    if (yaml_document_get_root_node(&extra))
        rc = load_fail(lc, extra.start_mark, "only one YAML document is allowed");
    yaml_document_delete(&extra);
    return rc;
}

static int load_root(load_ctx *lc, mg_config *cfg)
{
    yaml_node_t *root = yaml_document_get_root_node(lc->doc);
    yaml_mark_t top = {0, 0, 0};
    char buf[64];

    if (!root)
        return load_fail(lc, top, "the file is empty (it needs at least 'listen' and 'script')");
    if (root->type != YAML_MAPPING_NODE && !node_is_null(root))
        return load_fail(lc, root->start_mark, "expected a map of settings at the top, got %s",
                         node_describe(root, buf, sizeof buf));
    return parse_map(lc, root, "", top_keys, cfg);
}

mg_config *config_load(const char *path, char *err, size_t errlen)
{
    load_ctx lc = {.file = path, .err = err, .errlen = errlen};
    yaml_parser_t parser;
    yaml_document_t doc;
    mg_config *cfg = NULL;
    char *text = NULL;
    size_t len = 0;

    if (err && errlen)
        err[0] = '\0';
    if (load_read(&lc, &text, &len) != 0)
        return NULL;
    if (load_dir(&lc) != 0 || load_depth_check(&lc, text, len) != 0) {
        free(text);
        free(lc.dir);
        return NULL;
    }
    if (!yaml_parser_initialize(&parser)) {
        load_fail_file(&lc, "out of memory while parsing");
        goto out;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        load_yaml_error(&lc, &parser, text, len);
        goto out_parser;
    }
    lc.doc = &doc;
    cfg = config_new_defaults();
    cfg->file = xstrdup(path);
    if (load_single_document(&lc, &parser, text, len) != 0 || load_root(&lc, cfg) != 0) {
        config_free(cfg);
        cfg = NULL;
    }
    yaml_document_delete(&doc);
out_parser:
    yaml_parser_delete(&parser);
out:
    free(text);
    free(lc.dir);
    return cfg;
}

/* ------------------------------------------------------- the public rest */

mg_config *config_new_defaults(void)
{
    mg_config *cfg = xcalloc(1, sizeof *cfg);
    cfg->hook_budget_ms = 250;
    cfg->lua_memory_limit = 256ull << 20;
    cfg->static_index = xstrdup("index.html");
    cfg->ping_interval_ms = 25000;
    cfg->ping_timeout_ms = 60000;
    cfg->max_connections = 10000;
    cfg->workers = 1;
    cfg->max_handshakes = 1024;
    cfg->max_header_size = 16 << 10;
    cfg->max_message_size = 1ull << 20;
    cfg->send_queue_max = 4ull << 20;
    cfg->slow_consumer = MG_SLOW_CLOSE;
    cfg->handshake_timeout_ms = 10000;
    cfg->close_timeout_ms = 5000;
    cfg->duplicate_names = MG_DUP_REPLACE;
    cfg->drain_timeout_ms = 10000;
    cfg->uring = MG_URING_AUTO;
    cfg->log_level = MG_LOG_INFO;
    cfg->log_format = MG_LOG_TEXT;
    return cfg;
}

static int listener_validate(const mg_config *cfg, size_t i, char *err, size_t errlen)
{
    const mg_listener *l = &cfg->listeners[i];
    char why[PATH_MAX + 64];

    if (!l->host || !*l->host)
        return msg_fail(err, errlen, "listen[%zu].host: must not be empty", i);
    if (l->port < 1 || l->port > 65535)
        return msg_fail(err, errlen, "listen[%zu].port: must be 1..65535", i);
    if (!l->npaths)
        return msg_fail(err, errlen, "listen[%zu].path: needs a path", i);
    for (size_t k = 0; k < l->npaths; k++) {
        const char *why = hsmatch_path_invalid(l->paths[k]);
        if (why)
            return msg_fail(err, errlen, "listen[%zu].path: %s, got '%s'", i, why, l->paths[k]);
    }
    if (!l->tls_cert != !l->tls_key)
        return msg_fail(err, errlen, "listen[%zu].tls: needs both cert and key", i);
    if (l->tls_cert && file_check(l->tls_cert, 0, why, sizeof why) != 0)
        return msg_fail(err, errlen, "listen[%zu].tls.cert: %s", i, why);
    if (l->tls_key && file_check(l->tls_key, 0, why, sizeof why) != 0)
        return msg_fail(err, errlen, "listen[%zu].tls.key: %s", i, why);
    int twin = listener_find_twin(cfg, i);
    if (twin >= 0)
        return msg_fail(err, errlen, "listen[%zu]: same address %s:%d as listen[%d]", i, l->host,
                        l->port, twin);
    return 0;
}

int config_validate(const mg_config *cfg, char *err, size_t errlen)
{
    char why[PATH_MAX + 64];

    if (err && errlen)
        err[0] = '\0';
    if (cfg->nlisteners == 0)
        return msg_fail(err, errlen,
                        "no listener configured (use --listen HOST:PORT or 'listen:' in the "
                        "config)");
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (listener_validate(cfg, i, err, errlen) != 0)
            return -1;
    if (!cfg->script || !*cfg->script)
        return msg_fail(err, errlen,
                        "no script configured (use --script FILE or 'script:' in the config)");
    if (file_check(cfg->script, 0, why, sizeof why) != 0)
        return msg_fail(err, errlen, "script: %s", why);
    if (cfg->static_root && file_check(cfg->static_root, 1, why, sizeof why) != 0)
        return msg_fail(err, errlen, "static.root: %s", why);
    if (cfg->hook_budget_ms < 1 || cfg->hook_budget_ms > HOOK_BUDGET_MAX_MS)
        return msg_fail(err, errlen, "lua.hook_budget: must be 1ms..60s");
    if (!cfg->text_ping != !cfg->text_pong)
        return msg_fail(err, errlen,
                        "heartbeat: text_ping and text_pong must be set together (both or "
                        "neither)");
    if (cfg->admin_port < 0 || cfg->admin_port > 65535 || (cfg->admin_port && !cfg->admin_host))
        return msg_fail(err, errlen, "admin: needs a host and a port 1..65535");
    if (cfg->cluster && !cfg->broker)
        return msg_fail(err, errlen,
                        "cluster: needs a broker: section (the nodes meet on that RabbitMQ)");
    return 0;
}

/* Splits "HOST:PORT", "[V6]:PORT", ":PORT" or "PORT" (host defaults to
 * 127.0.0.1).  host receives a copy the caller frees. */
static int hostport_parse(const char *s, char **host, int *port, char *err, size_t errlen)
{
    const char *colon, *host_start = s, *host_end;

    if (s[0] == '[') {
        host_end = strchr(s, ']');
        if (!host_end || host_end[1] != ':')
            goto bad;
        host_start = s + 1;
        colon = host_end + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon && memchr(s, ':', (size_t)(colon - s)))
            return msg_fail(err, errlen,
                            "invalid listen address '%s' (write IPv6 addresses as [ADDR]:PORT)", s);
        host_end = colon ? colon : s;
    }

    const char *port_text = colon ? colon + 1 : s;
    uint64_t v;
    int too_big;
    const char *end = digits_parse(port_text, &v, &too_big);
    if (end == port_text || *end)
        goto bad;
    if (too_big || v < 1 || v > 65535)
        return msg_fail(err, errlen, "invalid port in listen address '%s' (must be 1..65535)", s);

    size_t hlen = (size_t)(host_end - host_start);
    if (hlen == 0) {
        *host = xstrdup(DEFAULT_HOST);
    } else {
        *host = xcalloc(1, hlen + 1);
        memcpy(*host, host_start, hlen);
    }
    *port = (int)v;
    return 0;
bad:
    return msg_fail(err, errlen,
                    "invalid listen address '%s' (expected HOST:PORT, e.g. "
                    "127.0.0.1:8080)",
                    s);
}

int config_set_listen(mg_config *cfg, const char *hostport, char *err, size_t errlen)
{
    char *host = NULL;
    int port = 0;

    if (err && errlen)
        err[0] = '\0';
    if (!hostport || hostport_parse(hostport, &host, &port, err, errlen) != 0)
        return -1;
    if (cfg->nlisteners == 0) {
        cfg->listeners = xcalloc(1, sizeof *cfg->listeners);
        cfg->nlisteners = 1;
        listener_set_path(&cfg->listeners[0], "/");
    }
    free(cfg->listeners[0].host);
    cfg->listeners[0].host = host;
    cfg->listeners[0].port = port;
    return 0;
}

int config_set_path(mg_config *cfg, const char *path)
{
    if (!cfg->nlisteners)
        return -1;
    listener_set_path(&cfg->listeners[0], path);
    return 0;
}

void config_free(mg_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        mg_listener *l = &cfg->listeners[i];
        free(l->host);
        strv_free(l->paths, l->npaths);
        strv_free(l->protocols, l->nprotocols);
        free(l->tls_cert);
        free(l->tls_key);
    }
    free(cfg->listeners);
    free(cfg->file);
    free(cfg->script);
    free(cfg->lua_path);
    free(cfg->lua_cpath);
    free(cfg->static_root);
    free(cfg->static_index);
    free(cfg->text_ping);
    free(cfg->text_pong);
    free(cfg->admin_host);
    free(cfg->admin_token);
    free(cfg->log_file);
    free(cfg->pid_file);
    free(cfg->user);
    free(cfg->group);
    for (size_t i = 0; i < cfg->nkeep_headers; i++)
        free(cfg->keep_headers[i]);
    free(cfg->keep_headers);
    strv_free(cfg->origins, cfg->norigins);
    broker_config_free(cfg->broker);
    cluster_config_free(cfg->cluster);
    node_free(cfg->app);
    free(cfg);
}
