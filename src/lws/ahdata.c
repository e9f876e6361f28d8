/* ahdata.c — emptying a request header in lws's header data (ahdata.h).
 *
 * lws keeps a request's header values in one buffer of
 * max_http_header_data bytes, each value followed by a NUL, in the order
 * they arrived: the request URI first (at offset 0, after the table is
 * reset), then the headers.  lws_http_get_uri_and_method() (public) hands
 * out a pointer to the URI, so the start of that buffer.  The header's first
 * value is looked for after it, as NUL + value + NUL; each candidate is
 * emptied in turn until lws_hdr_copy() (public) reads the header as empty,
 * and put back otherwise: a wrong guess changes nothing. */
#include "ahdata.h"

#include <stdlib.h>
#include <string.h>

#include "lwsc.h"

int ahdata_blank(struct lws *wsi, enum lws_token_indexes t, size_t size)
{
    char *uri;
    int uri_len = 0, rc = -1;
    if (!lwsc_checked() || lws_http_get_uri_and_method(wsi, &uri, &uri_len) < 0 || !uri)
        return -1;
    int len = lws_hdr_fragment_length(wsi, t, 0);
    if (len <= 0 || (size_t)len >= size)
        return -1;
    char *want = malloc((size_t)len + 1), *check = malloc((size_t)len + 1);
    if (!want || !check || lws_hdr_copy_fragment(wsi, want, len + 1, t, 0) != len)
        goto out;
    /* from the URI's NUL on, within the buffer (the URI starts it) */
    for (size_t at = (size_t)uri_len; at + 1 + (size_t)len < size; at++) {
        if (uri[at] != '\0' || uri[at + 1 + (size_t)len] != '\0' ||
            memcmp(uri + at + 1, want, (size_t)len))
            continue;
        char was = uri[at + 1];
        uri[at + 1] = '\0';
        if (lws_hdr_copy(wsi, check, len + 1, t) >= 0 && check[0] == '\0') {
            rc = 0;
            break;
        }
        uri[at + 1] = was;
    }
out:
    free(want);
    free(check);
    return rc;
}
