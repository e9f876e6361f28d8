/* mgl_broker.c — the `msg` handle of on_task and the gw.broker table.
 *
 * A msg handle is a userdata holding the delivery id; its fields (body,
 * headers, routing key...) are copied into its environment table once,
 * when it is created, so they stay readable after it is settled.  There
 * is at most one handle per delivery per state (a weak-valued registry
 * table maps ids to handles), so a handle that is garbage-collected really
 * was dropped by the script: its finalizer tells broker.c, which requeues
 * the delivery if nobody decided about it.  Decisions go to broker.c. */
#include <lauxlib.h>
#include <math.h>
#include <string.h>

#include "broker.h"
#include "conn.h"
#include "mgl_api.h"

#define MSG_MT "moongate.msg"
#define HEADERS_MAX_DEPTH 16

typedef struct {
    const void *tag; /* &lmsg_tag: this userdata is a msg handle */
    uint64_t id;
    const char *final; /* how it ended, once settled; NULL while unsettled */
} lmsg;

static const char lmsg_tag;

static lmsg *lmsg_check(lua_State *L, int idx)
{
    return mgl_api_checkhandle(L, idx, &lmsg_tag, sizeof(lmsg), MSG_MT);
}

/* ------------------------------------------------ AMQP field tables -> Lua */

static void lbroker_push_table(lua_State *L, const amqp_table_t *t, int depth);

static void lbroker_push_field(lua_State *L, const amqp_field_value_t *v, int depth)
{
    switch (v->kind) {
    case AMQP_FIELD_KIND_BOOLEAN:
        lua_pushboolean(L, v->value.boolean);
        break;
    case AMQP_FIELD_KIND_I8:
        lua_pushnumber(L, v->value.i8);
        break;
    case AMQP_FIELD_KIND_U8:
        lua_pushnumber(L, v->value.u8);
        break;
    case AMQP_FIELD_KIND_I16:
        lua_pushnumber(L, v->value.i16);
        break;
    case AMQP_FIELD_KIND_U16:
        lua_pushnumber(L, v->value.u16);
        break;
    case AMQP_FIELD_KIND_I32:
        lua_pushnumber(L, v->value.i32);
        break;
    case AMQP_FIELD_KIND_U32:
        lua_pushnumber(L, v->value.u32);
        break;
    case AMQP_FIELD_KIND_I64:
        lua_pushnumber(L, (lua_Number)v->value.i64);
        break;
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP:
        lua_pushnumber(L, (lua_Number)v->value.u64);
        break;
    case AMQP_FIELD_KIND_F32:
        lua_pushnumber(L, v->value.f32);
        break;
    case AMQP_FIELD_KIND_F64:
        lua_pushnumber(L, v->value.f64);
        break;
    case AMQP_FIELD_KIND_DECIMAL:
        lua_pushnumber(L, v->value.decimal.value / pow(10, v->value.decimal.decimals));
        break;
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
        lua_pushlstring(L, v->value.bytes.bytes, v->value.bytes.len);
        break;
    case AMQP_FIELD_KIND_ARRAY:
        if (depth >= HEADERS_MAX_DEPTH) {
            lua_pushnil(L);
            break;
        }
        lua_createtable(L, v->value.array.num_entries, 0);
        for (int i = 0; i < v->value.array.num_entries; i++) {
            lbroker_push_field(L, &v->value.array.entries[i], depth + 1);
            lua_rawseti(L, -2, i + 1);
        }
        break;
    case AMQP_FIELD_KIND_TABLE:
        if (depth >= HEADERS_MAX_DEPTH)
            lua_pushnil(L);
        else
            lbroker_push_table(L, &v->value.table, depth + 1);
        break;
    default:
        lua_pushnil(L);
    }
}

static void lbroker_push_table(lua_State *L, const amqp_table_t *t, int depth)
{
    lua_createtable(L, 0, t->num_entries);
    for (int i = 0; i < t->num_entries; i++) {
        lua_pushlstring(L, t->entries[i].key.bytes, t->entries[i].key.len);
        lbroker_push_field(L, &t->entries[i].value, depth);
        lua_rawset(L, -3);
    }
}

/* ------------------------------------------------ Lua -> AMQP field tables */

static int lbroker_to_table(lua_State *L, int idx, amqp_pool_t *pool, amqp_table_t *out, int depth);

static amqp_bytes_t lbroker_pool_bytes(amqp_pool_t *pool, const char *s, size_t len)
{
    amqp_bytes_t b = {0, NULL};
    if (len == 0)
        return b;
    b.bytes = amqp_pool_alloc(pool, len);
    if (b.bytes) {
        memcpy(b.bytes, s, len);
        b.len = len;
    }
    return b;
}

/* A Lua value at idx into v (strings copied into pool).  -1 with an error
 * message pushed for a value AMQP cannot carry. */
static int lbroker_to_field(lua_State *L, int idx, amqp_pool_t *pool, amqp_field_value_t *v,
                            int depth)
{
    size_t len;
    const char *s;
    lua_Number n;
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
        v->kind = AMQP_FIELD_KIND_BOOLEAN;
        v->value.boolean = lua_toboolean(L, idx);
        return 0;
    case LUA_TNUMBER:
        n = lua_tonumber(L, idx);
        if (n == floor(n) && fabs(n) < 9007199254740992.0) {
            v->kind = AMQP_FIELD_KIND_I64;
            v->value.i64 = (int64_t)n;
        } else {
            v->kind = AMQP_FIELD_KIND_F64;
            v->value.f64 = n;
        }
        return 0;
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        v->kind = AMQP_FIELD_KIND_UTF8;
        v->value.bytes = lbroker_pool_bytes(pool, s, len);
        return 0;
    case LUA_TTABLE:
        if (depth >= HEADERS_MAX_DEPTH) {
            lua_pushstring(L, "headers nested too deeply");
            return -1;
        }
        v->kind = AMQP_FIELD_KIND_TABLE;
        return lbroker_to_table(L, idx, pool, &v->value.table, depth + 1);
    default:
        lua_pushfstring(L, "a header value cannot be a %s", luaL_typename(L, idx));
        return -1;
    }
}

static int lbroker_to_table(lua_State *L, int idx, amqp_pool_t *pool, amqp_table_t *out, int depth)
{
    int n = 0;
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        n++;
        lua_pop(L, 1);
    }
    out->num_entries = 0;
    out->entries = n ? amqp_pool_alloc(pool, (size_t)n * sizeof(*out->entries)) : NULL;
    if (n && !out->entries) {
        lua_pushstring(L, "out of memory");
        return -1;
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        size_t klen;
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 2);
            lua_pushstring(L, "header names must be strings");
            return -1;
        }
        const char *k = lua_tolstring(L, -2, &klen);
        amqp_table_entry_t *e = &out->entries[out->num_entries++];
        e->key = lbroker_pool_bytes(pool, k, klen);
        if (lbroker_to_field(L, lua_gettop(L), pool, &e->value, depth) != 0) {
            lua_remove(L, -2); /* the value */
            lua_remove(L, -2); /* the key; the message stays */
            return -1;
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* ---------------------------------------------------------- the handle */

static mg_delivery *lmsg_delivery(lua_State *L, int idx, lmsg **hp)
{
    mg_script *s = mgl_api_script(L);
    lmsg *h = lmsg_check(L, idx);
    if (hp)
        *hp = h;
    return broker_find(s->gw, h->id);
}

static const char *lmsg_gone(const lmsg *h)
{
    if (h->final && strcmp(h->final, "lost") == 0)
        return "broker connection lost: the broker requeued it";
    return h->final ? "already settled" : "unknown message";
}

/* The delivery for a method, or push nil, err. */
#define LMSG_OR_FAIL(L, d, h)                                                                      \
    lmsg *h;                                                                                       \
    mg_delivery *d = lmsg_delivery(L, 1, &h);                                                      \
    if (!d)                                                                                        \
        return mgl_api_fail(L, lmsg_gone(h));

static int lmsg_result(lua_State *L, const char *err)
{
    if (err)
        return mgl_api_fail(L, err);
    lua_pushboolean(L, 1);
    return 1;
}

static int lmsg_settle(lua_State *L, link_cmd_type how)
{
    LMSG_OR_FAIL(L, d, h);
    return lmsg_result(L, broker_settle(mgl_api_script(L)->gw, d, how));
}

static int lmsg_ack(lua_State *L)
{
    return lmsg_settle(L, LINK_CMD_ACK);
}

static int lmsg_requeue(lua_State *L)
{
    return lmsg_settle(L, LINK_CMD_REQUEUE);
}

static int lmsg_reject(lua_State *L)
{
    return lmsg_settle(L, LINK_CMD_REJECT);
}

/* Copy one optional bytes property of src into dst, in pool. */
#define LMSG_COPY_PROP(flag, field)                                                                \
    if (src->_flags & (flag))                                                                      \
        dst->field = lbroker_pool_bytes(pool, src->field.bytes, src->field.len);

static void lmsg_copy_props(const amqp_basic_properties_t *src, amqp_basic_properties_t *dst,
                            amqp_pool_t *pool)
{
    *dst = *src;
    LMSG_COPY_PROP(AMQP_BASIC_CONTENT_TYPE_FLAG, content_type);
    LMSG_COPY_PROP(AMQP_BASIC_CONTENT_ENCODING_FLAG, content_encoding);
    LMSG_COPY_PROP(AMQP_BASIC_CORRELATION_ID_FLAG, correlation_id);
    LMSG_COPY_PROP(AMQP_BASIC_REPLY_TO_FLAG, reply_to);
    LMSG_COPY_PROP(AMQP_BASIC_EXPIRATION_FLAG, expiration);
    LMSG_COPY_PROP(AMQP_BASIC_MESSAGE_ID_FLAG, message_id);
    LMSG_COPY_PROP(AMQP_BASIC_TYPE_FLAG, type);
    LMSG_COPY_PROP(AMQP_BASIC_USER_ID_FLAG, user_id);
    LMSG_COPY_PROP(AMQP_BASIC_APP_ID_FLAG, app_id);
    LMSG_COPY_PROP(AMQP_BASIC_CLUSTER_ID_FLAG, cluster_id);
    dst->headers.num_entries = 0;
    dst->headers.entries = NULL;
    if (src->_flags & AMQP_BASIC_HEADERS_FLAG)
        amqp_table_clone(&src->headers, &dst->headers, pool);
}

/* Headers of the copy: the original's, with the table at idx laid over. */
static int lmsg_merge_headers(lua_State *L, int idx, amqp_table_t *h, amqp_pool_t *pool)
{
    amqp_table_t add;
    if (lbroker_to_table(L, idx, pool, &add, 0) != 0)
        return -1;
    amqp_table_entry_t *e =
        amqp_pool_alloc(pool, (size_t)(h->num_entries + add.num_entries + 1) * sizeof(*e));
    if (!e) {
        lua_pushstring(L, "out of memory");
        return -1;
    }
    int n = 0;
    for (int i = 0; i < h->num_entries; i++) {
        int replaced = 0;
        for (int j = 0; j < add.num_entries && !replaced; j++)
            replaced =
                h->entries[i].key.len == add.entries[j].key.len &&
                !memcmp(h->entries[i].key.bytes, add.entries[j].key.bytes, add.entries[j].key.len);
        if (!replaced)
            e[n++] = h->entries[i];
    }
    for (int j = 0; j < add.num_entries; j++)
        e[n++] = add.entries[j];
    h->entries = e;
    h->num_entries = n;
    return 0;
}

static amqp_bytes_t lbroker_dup(const char *s, size_t len)
{
    amqp_bytes_t b = amqp_bytes_malloc(len ? len : 1);
    if (b.bytes) {
        memcpy(b.bytes, s, len);
        b.len = len;
    }
    return b;
}

/* Exchange, routing key and body into a new publish command. */
static link_cmd *lbroker_cmd(lua_State *L, int ex_idx, const char *body, size_t body_len)
{
    size_t exlen, rklen;
    const char *ex = luaL_checklstring(L, ex_idx, &exlen);
    const char *rk = luaL_checklstring(L, ex_idx + 1, &rklen);
    link_cmd *c = link_cmd_new(LINK_CMD_PUBLISH);
    if (!c)
        return NULL;
    c->exchange = lbroker_dup(ex, exlen);
    c->routing_key = lbroker_dup(rk, rklen);
    c->body = lbroker_dup(body, body_len);
    if (!c->exchange.bytes || !c->routing_key.bytes || !c->body.bytes) {
        link_cmd_free(c);
        return NULL;
    }
    return c;
}

/* msg:forward(exchange, routing_key[, headers]) */
static int lmsg_forward(lua_State *L)
{
    LMSG_OR_FAIL(L, d, h);
    if (!lua_isnoneornil(L, 4))
        luaL_checktype(L, 4, LUA_TTABLE);
    link_cmd *c = lbroker_cmd(L, 2, d->d->msg.body.bytes, d->d->msg.body.len);
    if (!c)
        return mgl_api_fail(L, "out of memory");
    lmsg_copy_props(&d->d->msg.properties, &c->props, &c->pool);
    if (lua_istable(L, 4)) {
        if (lmsg_merge_headers(L, 4, &c->props.headers, &c->pool) != 0) {
            link_cmd_free(c);
            return lua_error(L);
        }
    }
    c->props._flags |= AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    c->props.delivery_mode = AMQP_DELIVERY_PERSISTENT;
    return lmsg_result(L, broker_forward(mgl_api_script(L)->gw, d, c));
}

/* msg:assign(conn | nil) */
static int lmsg_assign(lua_State *L)
{
    LMSG_OR_FAIL(L, d, h);
    if (lua_isnoneornil(L, 2)) {
        d->owner = 0;
        lua_pushboolean(L, 1);
        return 1;
    }
    mg_conn *c = mgl_conn_check(L, 2);
    if (!conn_is_open(c))
        return mgl_api_fail(L, "connection closed");
    d->owner = c->id;
    lua_pushboolean(L, 1);
    return 1;
}

static int lmsg_tostring(lua_State *L)
{
    lmsg *h = lmsg_check(L, 1);
    lua_pushfstring(L, "msg: %f", (double)h->id);
    return 1;
}

static int lmsg_gc(lua_State *L)
{
    mg_script *s = mgl_api_script(L);
    lmsg *h = lmsg_check(L, 1);
    if (s->gw->script == s)
        broker_handle_dropped(s->gw, h->id);
    return 0;
}

/* msg.KEY for a key that is not a method (see mgl_api_newclass): state
 * and owner, then the copied fields in the environment table. */
static int lmsg_field(lua_State *L)
{
    lmsg *h;
    mg_delivery *d = lmsg_delivery(L, 1, &h);
    const char *key = lua_tostring(L, 2);
    if (key && strcmp(key, "state") == 0) {
        lua_pushstring(L, d ? (d->state == MG_DLV_FORWARDING ? "forwarding" : "unsettled")
                            : (h->final ? h->final : "settled"));
        return 1;
    }
    if (key && strcmp(key, "owner") == 0) {
        mg_conn *c = d && d->owner ? conn_find(mgl_api_script(L)->gw, d->owner) : NULL;
        if (c)
            mgl_conn_push(L, mgl_api_script(L), c);
        else
            lua_pushnil(L);
        return 1;
    }
    lua_getfenv(L, 1);
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

static void lmsg_field_bytes(lua_State *L, const amqp_basic_properties_t *p, amqp_flags_t flag,
                             amqp_bytes_t b, const char *name)
{
    if (p->_flags & flag) {
        lua_pushlstring(L, b.bytes, b.len);
        lua_setfield(L, -2, name);
    }
}

/* The environment table with the delivery's fields. */
static void lmsg_push_fields(lua_State *L, const mg_delivery *d)
{
    const link_delivery *ld = d->d;
    const amqp_basic_properties_t *p = &ld->msg.properties;
    lua_createtable(L, 0, 12);
    lua_pushnumber(L, (lua_Number)d->id);
    lua_setfield(L, -2, "id");
    lua_pushlstring(L, ld->msg.body.bytes, ld->msg.body.len);
    lua_setfield(L, -2, "body");
    if (p->_flags & AMQP_BASIC_HEADERS_FLAG)
        lbroker_push_table(L, &p->headers, 0);
    else
        lua_newtable(L);
    lua_setfield(L, -2, "headers");
    lua_pushstring(L, ld->exchange);
    lua_setfield(L, -2, "exchange");
    lua_pushstring(L, ld->routing_key);
    lua_setfield(L, -2, "routing_key");
    lua_pushstring(L, ld->queue);
    lua_setfield(L, -2, "queue");
    lua_pushboolean(L, ld->redelivered);
    lua_setfield(L, -2, "redelivered");
    lua_pushnumber(L, (lua_Number)ld->tag);
    lua_setfield(L, -2, "delivery_tag");
    lmsg_field_bytes(L, p, AMQP_BASIC_MESSAGE_ID_FLAG, p->message_id, "message_id");
    lmsg_field_bytes(L, p, AMQP_BASIC_CORRELATION_ID_FLAG, p->correlation_id, "correlation_id");
    lmsg_field_bytes(L, p, AMQP_BASIC_REPLY_TO_FLAG, p->reply_to, "reply_to");
    lmsg_field_bytes(L, p, AMQP_BASIC_CONTENT_TYPE_FLAG, p->content_type, "content_type");
}

/* Push the weak table of live handles (id -> handle), or nil: a raw
 * access, which neither allocates nor runs a metamethod. */
static int lmsg_handles(lua_State *L, mg_script *s)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->msg_handles);
    return lua_istable(L, -1);
}

void mgl_msg_push(lua_State *L, mg_script *s, mg_delivery *d)
{
    int cached = lmsg_handles(L, s);
    if (cached) {
        lua_pushnumber(L, (lua_Number)d->id);
        lua_rawget(L, -2);
        if (mgl_api_tohandle(L, -1, &lmsg_tag, sizeof(lmsg))) {
            lua_remove(L, -2);
            return;
        }
        lua_pop(L, 1);
    }
    lmsg *h = lua_newuserdata(L, sizeof(*h));
    h->tag = &lmsg_tag;
    h->id = d->id;
    h->final = NULL;
    luaL_getmetatable(L, MSG_MT);
    lua_setmetatable(L, -2);
    lmsg_push_fields(L, d);
    lua_setfenv(L, -2);
    if (cached) {
        lua_pushnumber(L, (lua_Number)d->id);
        lua_pushvalue(L, -2);
        lua_rawset(L, -4);
    }
    lua_remove(L, -2); /* the table, or nil */
}

/* The live handle for id pushed, or nothing and NULL (raw accesses only:
 * broker.c calls this outside any hook). */
static lmsg *lmsg_find(mg_script *s, uint64_t id)
{
    lua_State *L = s->L;
    if (!lmsg_handles(L, s)) {
        lua_pop(L, 1);
        return NULL;
    }
    lua_pushnumber(L, (lua_Number)id);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    lmsg *h = mgl_api_tohandle(L, -1, &lmsg_tag, sizeof(lmsg));
    if (!h)
        lua_pop(L, 1);
    return h;
}

void mgl_msg_settled(mg_script *s, uint64_t id, const char *final)
{
    lmsg *h = lmsg_find(s, id);
    if (!h)
        return;
    h->final = final;
    lua_pop(s->L, 1);
}

int mgl_msg_alive(mg_script *s, uint64_t id)
{
    if (!lmsg_find(s, id))
        return 0;
    lua_pop(s->L, 1);
    return 1;
}

/* ---------------------------------------------------------- gw.broker */

/* props.NAME, a string or nil, into field.  -1 with a message pushed. */
static int lbroker_opt_prop(lua_State *L, int idx, const char *name, amqp_basic_properties_t *p,
                            amqp_flags_t flag, amqp_bytes_t *field, amqp_pool_t *pool)
{
    lua_getfield(L, idx, name);
    int type = lua_type(L, -1);
    if (type == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        *field = lbroker_pool_bytes(pool, s, len);
        p->_flags |= flag;
    }
    lua_pop(L, 1);
    if (type == LUA_TSTRING || type == LUA_TNIL)
        return 0;
    lua_pushfstring(L, "props.%s must be a string", name);
    return -1;
}

/* publish's props table at idx. */
static int lbroker_props(lua_State *L, int idx, link_cmd *c)
{
    amqp_basic_properties_t *p = &c->props;
    if (lbroker_opt_prop(L, idx, "message_id", p, AMQP_BASIC_MESSAGE_ID_FLAG, &p->message_id,
                         &c->pool) != 0 ||
        lbroker_opt_prop(L, idx, "correlation_id", p, AMQP_BASIC_CORRELATION_ID_FLAG,
                         &p->correlation_id, &c->pool) != 0 ||
        lbroker_opt_prop(L, idx, "reply_to", p, AMQP_BASIC_REPLY_TO_FLAG, &p->reply_to, &c->pool) !=
            0 ||
        lbroker_opt_prop(L, idx, "content_type", p, AMQP_BASIC_CONTENT_TYPE_FLAG, &p->content_type,
                         &c->pool) != 0)
        return -1;
    return 0;
}

/* gw.broker.publish(exchange, routing_key, body[, headers[, props]]) */
static int lbroker_publish(lua_State *L)
{
    size_t blen;
    luaL_checkstring(L, 1);
    luaL_checkstring(L, 2);
    const char *body = luaL_checklstring(L, 3, &blen);
    if (!lua_isnoneornil(L, 4))
        luaL_checktype(L, 4, LUA_TTABLE);
    if (!lua_isnoneornil(L, 5))
        luaL_checktype(L, 5, LUA_TTABLE);
    mg_gw *gw = mgl_api_script(L)->gw;
    if (!gw->broker)
        return mgl_api_fail(L, "no broker configured");
    link_cmd *c = lbroker_cmd(L, 1, body, blen);
    if (!c)
        return mgl_api_fail(L, "out of memory");
    amqp_basic_properties_t *p = &c->props;
    p->_flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
    p->delivery_mode = AMQP_DELIVERY_PERSISTENT;
    int bad = 0;
    if (lua_istable(L, 4)) {
        bad = lbroker_to_table(L, 4, &c->pool, &p->headers, 0) != 0;
        p->_flags |= AMQP_BASIC_HEADERS_FLAG;
    }
    if (!bad && lua_istable(L, 5))
        bad = lbroker_props(L, 5, c) != 0;
    if (bad) {
        link_cmd_free(c);
        return lua_error(L);
    }
    return lmsg_result(L, broker_publish(gw, c));
}

/* gw.broker.message(id) */
static int lbroker_message(lua_State *L)
{
    mg_script *s = mgl_api_script(L);
    mg_delivery *d = broker_find(s->gw, (uint64_t)luaL_checknumber(L, 1));
    if (!d) {
        lua_pushnil(L);
        return 1;
    }
    mgl_msg_push(L, s, d);
    return 1;
}

/* gw.broker.unsettled([conn]) */
static int lbroker_unsettled(lua_State *L)
{
    mg_script *s = mgl_api_script(L);
    uint64_t owner = 0;
    if (!lua_isnoneornil(L, 1)) {
        mg_conn *c = mgl_conn_check(L, 1);
        if (!c) { /* gone: what it held has been requeued */
            lua_newtable(L);
            return 1;
        }
        owner = c->id;
    }
    lua_newtable(L);
    int n = 0;
    for (mg_delivery *d = broker_first(s->gw); d; d = d->next) {
        if (owner && d->owner != owner)
            continue;
        mgl_msg_push(L, s, d);
        lua_rawseti(L, -2, ++n);
    }
    return 1;
}

/* gw.broker.state() */
static int lbroker_state(lua_State *L)
{
    lua_pushstring(L, broker_state(mgl_api_script(L)->gw));
    return 1;
}

void mgl_broker_open(mg_script *s)
{
    static const luaL_Reg methods[] = {
        {"ack", lmsg_ack},         {"requeue", lmsg_requeue}, {"reject", lmsg_reject},
        {"forward", lmsg_forward}, {"assign", lmsg_assign},   {NULL, NULL},
    };
    static const luaL_Reg fns[] = {
        {"publish", lbroker_publish},
        {"message", lbroker_message},
        {"unsettled", lbroker_unsettled},
        {"state", lbroker_state},
        {NULL, NULL},
    };
    static const luaL_Reg meta[] = {
        {"__tostring", lmsg_tostring},
        {"__gc", lmsg_gc},
        {NULL, NULL},
    };
    lua_State *L = s->L;

    mgl_api_newclass(s, MSG_MT, methods, lmsg_field, meta);

    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    s->msg_handles = luaL_ref(L, LUA_REGISTRYINDEX);

    /* gw.broker, into the gw table at the top of the stack. */
    lua_newtable(L);
    mgl_api_setfuncs(s, fns);
    lua_setfield(L, -2, "broker");
}
