/* admin_merge.h — one worker's share of a GET /clients or GET /topics
 * page (a "part"), and the page made from every worker's part.
 *
 * With `workers: N` the worker that got the request asks the others for
 * their parts (admin_fanout.c) and merges them with its own; with one
 * process the page is the merge of one part, so both answer alike.
 *
 * A part is bytes in host order (every worker runs the same binary):
 *   u64 total, u8 more, then entries to the end:
 *   clients: u64 id, u32 len, len bytes of one client's JSON object,
 *            newest (highest id) first, ids below the page's after=;
 *   topics:  u16 len, the name, u64 subscribers, in byte order of the
 *            names, names above after=.
 * total is what the worker holds (open clients, or topics); more says
 * that entries past the last one follow on that worker.  A worker stops
 * at the page's limit, or earlier once the part passes ADMIN_PART_MAX
 * (one entry at least): the merge then takes nothing beyond that
 * worker's last entry, so paging stays exact either way. */
#ifndef MG_ADMIN_MERGE_H
#define MG_ADMIN_MERGE_H

#include <stddef.h>
#include <stdint.h>

#include "json.h"

/* A part is cut after the entry that takes it past this many bytes. */
#define ADMIN_PART_MAX (1u << 20)

/* Writing a part: the head, then entries.  Errors show as b->oom. */
void admin_part_begin(json_buf *b, uint64_t total);
void admin_part_set_more(json_buf *b);
void admin_part_client(json_buf *b, uint64_t id, const char *obj, size_t len);
void admin_part_topic(json_buf *b, const char *name, size_t len, uint64_t subscribers);
/* The part has reached ADMIN_PART_MAX: stop adding entries. */
int admin_part_full(const json_buf *b);

/* One worker's answer. */
typedef struct admin_part {
    uint32_t worker;
    const unsigned char *p;
    size_t len;
} admin_part;

/* Whether p[0..len) is a well-formed part of clients (topics == 0) or of
 * topics (topics == 1). */
int admin_part_valid(const void *p, size_t len, int topics);

/* The page from n well-formed parts, limit entries at most, written as
 * the members `"total":T,"clients":[...],"next":ID|null` (no braces),
 * total being the sum of the parts'.  0, or -1 when out of memory. */
int admin_merge_clients(const admin_part *parts, size_t n, unsigned limit, json_buf *out);
/* The same for topics (`"total":T,"topics":[...],"next":NAME|null`),
 * subscribers summed by name; total is the caller's (distinct topics
 * cannot be summed). */
int admin_merge_topics(const admin_part *parts, size_t n, unsigned limit, uint64_t total,
                       json_buf *out);

#endif
