/* static.h — plain GETs of files under static.root.
 *
 * Served from moongate's HTTP callback, not from a libwebsockets mount, so
 * that what may be served is decided here: a regular file (or a folder's
 * index file) whose real path, symlinks followed, lies under the root's
 * real path.  A symlink that leads out of the root is served only with
 * static.follow_symlinks; anything but a regular file (a FIFO, a device:
 * opening one could block the event loop) never.  lws_serve_http_file
 * sends the file (content type from its name, ranges, keep-alive). */
#ifndef MG_STATIC_H
#define MG_STATIC_H

#include <libwebsockets.h>
#include <stddef.h>

/* The file to serve for the URI path uri (as lws hands it over:
 * URL-decoded, dots resolved) under root (a real path), into out; 0, or
 * an HTTP status (404, 403) saying why not.  index: a folder's file. */
int static_resolve(const char *root, const char *index, int follow_symlinks, const char *uri,
                   char *out, size_t outlen);

/* Answer a plain GET for uri on wsi: what an lws HTTP callback returns. */
int static_serve(struct lws *wsi, const char *root, const char *index, int follow_symlinks,
                 const char *uri);

/* The end of a file transfer (LWS_CALLBACK_HTTP_FILE_COMPLETION). */
int static_done(struct lws *wsi);

#endif
