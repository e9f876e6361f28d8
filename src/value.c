/* value.c — copying and freeing mg_value scalars. */
#include "value.h"

#include <stdlib.h>
#include <string.h>

void value_clear(mg_value *v)
{
    free(v->s);
    memset(v, 0, sizeof(*v));
}

int value_copy(mg_value *dst, const mg_value *src)
{
    char *s = NULL;
    if (src->type == MG_VAL_STR) {
        s = malloc(src->len + 1);
        if (!s)
            return -1;
        memcpy(s, src->s, src->len);
        s[src->len] = '\0';
    }
    value_clear(dst);
    *dst = *src;
    dst->s = s;
    return 0;
}
