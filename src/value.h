/* value.h — a scalar value kept by the C core for Lua: nil, boolean, number
 * or string.  Connection attributes and gw.store hold these, so they live
 * outside any Lua state and survive a reload. */
#ifndef MG_VALUE_H
#define MG_VALUE_H

#include <stddef.h>

typedef enum { MG_VAL_NIL, MG_VAL_BOOL, MG_VAL_NUM, MG_VAL_STR } mg_value_type;

typedef struct mg_value {
    mg_value_type type;
    int b;
    double n;
    char *s; /* owned, NUL-terminated, may contain NULs within len */
    size_t len;
} mg_value;

/* Deep copy src into dst (dst's old contents are freed).  0 or -1 (OOM). */
int value_copy(mg_value *dst, const mg_value *src);
void value_clear(mg_value *v);

#endif
