/* sul.h — libwebsockets' sorted timer lists, made cheap to insert into.
 *
 * lws 4.1.6 keeps every pending timer of a service thread (each
 * connection's timeout, every lws_sul_schedule) in one list sorted by due
 * time, and inserts by walking it from the earliest entry.  A new
 * connection's timeout is almost always the latest one, so each insert
 * walked the whole list: during a connect storm that walk was the biggest
 * single cost (a third of the gateway's CPU with 3,000 handshakes in
 * flight).  sul.c replaces lws_dll2_add_sorted — lws calls it through its
 * PLT, so the executable's definition wins — with one that walks from both
 * ends at once and stops at whichever finds the place first: the same
 * order, O(1) for the latest and the earliest timer. */
#ifndef MG_SUL_H
#define MG_SUL_H

#include <libwebsockets.h>

/* 1 if libwebsockets' own inserts land in sul.c (checked with a probe
 * timer on ctx). */
int sul_check(struct lws_context *ctx);

#endif
