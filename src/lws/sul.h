/* sul.h — libwebsockets' sorted timer lists, made cheap to insert into.
 *
 * lws 4.1 and 4.3 keep every pending timer of a service thread (each
 * connection's timeout, every lws_sul_schedule) in one list sorted by due
 * time, and insert by walking it from the earliest entry.  A new
 * connection's timeout is almost always the latest one, so each insert
 * walked the whole list: during a connect storm that walk was the biggest
 * single cost.  sul.c replaces lws_dll2_add_sorted with one that walks
 * from both ends at once and stops at whichever finds the place first:
 * the same order, O(1) for the latest and the earliest timer.
 *
 * The one coupling that depends on how lws was linked: lws reaches the
 * executable's definition only by calling its own export through its PLT,
 * as a Debian build does.  Built with -Bsymbolic-functions or LTO, lws
 * calls its own copy; sul_check sees that, and lwsc.c reports the path
 * off (connect storms cost more CPU; nothing else changes).  On a version
 * lwsc.c has not checked, the definition forwards to lws's own. */
#ifndef MG_SUL_H
#define MG_SUL_H

#include <libwebsockets.h>

/* 1 if libwebsockets' own inserts land in sul.c (checked with a probe
 * timer on ctx). */
int sul_check(struct lws_context *ctx);

#endif
