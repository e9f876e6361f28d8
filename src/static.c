/* static.c — plain GETs of files under static.root (static.h). */
#include "static.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http.h"

/* path lies under the folder root (both real paths). */
static int static_inside(const char *root, const char *path)
{
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/')
        return 1;
    return strncmp(path, root, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* A ".." segment left in uri (lws resolves them; never trust that alone). */
static int static_has_dotdot(const char *uri)
{
    for (const char *p = uri; (p = strstr(p, "..")); p += 2)
        if ((p == uri || p[-1] == '/') && (p[2] == '/' || p[2] == '\0'))
            return 1;
    return 0;
}

int static_resolve(const char *root, const char *index, int follow_symlinks, const char *uri,
                   char *out, size_t outlen)
{
    char path[PATH_MAX], real[PATH_MAX];
    struct stat st;
    if (uri[0] != '/' || static_has_dotdot(uri))
        return 404;
    int n = snprintf(path, sizeof(path), "%s%s", root, uri);
    if (n < 0 || (size_t)n >= sizeof(path))
        return 404;
    if (!realpath(path, real))
        return 404;
    if (stat(real, &st) == 0 && S_ISDIR(st.st_mode)) {
        n = snprintf(path, sizeof(path), "%s/%s", real, index);
        if (n < 0 || (size_t)n >= sizeof(path) || !realpath(path, real))
            return 404;
    }
    if (!follow_symlinks && !static_inside(root, real))
        return 404; /* a symlink out of the root: as if there were nothing */
    /* Opened without blocking, to see what it is: a FIFO's open() would
     * wait for a writer. */
    int fd = open(real, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return errno == EACCES ? 403 : 404;
    int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    close(fd);
    if (!ok)
        return 403;
    if (strlen(real) >= outlen)
        return 404;
    memcpy(out, real, strlen(real) + 1);
    return 0;
}

int static_serve(struct lws *wsi, const char *root, const char *index, int follow_symlinks,
                 const char *uri)
{
    char file[PATH_MAX], real_root[PATH_MAX];
    int status = realpath(root, real_root)
                     ? static_resolve(real_root, index, follow_symlinks, uri, file, sizeof(file))
                     : 404;
    if (status) {
        const char *body = status == 403 ? "forbidden\n" : "not found\n";
        http_respond(wsi, status, "text/plain", body, strlen(body), NULL, NULL);
        return -1; /* answered with "connection: close" */
    }
    const char *mime = lws_get_mimetype(file, NULL);
    int n = lws_serve_http_file(wsi, file, mime ? mime : "application/octet-stream", NULL, 0);
    if (n < 0 || (n > 0 && lws_http_transaction_completed(wsi)))
        return -1;
    return 0;
}

int static_done(struct lws *wsi)
{
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}
