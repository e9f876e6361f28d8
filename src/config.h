/* config.h — the validated configuration.
 *
 * config.c turns moongate.yaml (libyaml) into an mg_config: every key known,
 * every value typed and range-checked, durations in milliseconds, sizes in
 * bytes, relative paths resolved against the config file's folder.  Any
 * problem is reported once as "FILE:LINE:COL: message" and no config is
 * returned, so the caller either has a complete valid config or none.
 * A config is immutable once loaded; a reload loads a new one and swaps. */
#ifndef MG_CONFIG_H
#define MG_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "pmd.h"

typedef struct mg_listener {
    char *host;       /* bind address, default "127.0.0.1" */
    int port;         /* 1..65535, required */
    char **paths;     /* WebSocket paths, default "/"; one ending in '*' is a prefix */
    size_t npaths;    /* at least 1 */
    char **protocols; /* subprotocols chosen when on_handshake chooses none, or NULL */
    size_t nprotocols;
    char *tls_cert; /* PEM certificate file, NULL for plain ws */
    char *tls_key;  /* PEM private key file, NULL for plain ws */
    int reader;     /* mg_reader: who parses the listener's frames */
    pmd_config compression; /* permessage-deflate (compress.h), off by default */
} mg_listener;

/* moongate's own frame reader (fastrx.c), or libwebsockets'. */
typedef enum { MG_READER_MOONGATE, MG_READER_LWS } mg_reader;
typedef enum { MG_SLOW_CLOSE, MG_SLOW_DROP } mg_slow_action;
typedef enum { MG_DUP_REPLACE, MG_DUP_REJECT } mg_dup_policy;
/* io.uring: batch writes through io_uring when the kernel allows, or never. */
typedef enum { MG_URING_AUTO, MG_URING_OFF } mg_uring_mode;
typedef enum { MG_LOG_DEBUG, MG_LOG_INFO, MG_LOG_WARN, MG_LOG_ERROR } mg_log_level;
typedef enum { MG_LOG_TEXT, MG_LOG_JSON } mg_log_format;

/* A free-form YAML value (the `app:` section), handed to Lua as a table. */
typedef enum {
    MG_NODE_NULL,
    MG_NODE_BOOL,
    MG_NODE_NUMBER,
    MG_NODE_STRING,
    MG_NODE_SEQ,
    MG_NODE_MAP
} mg_node_type;

typedef struct mg_node {
    mg_node_type type;
    char *key;              /* key when this node is a map entry, else NULL */
    char *str;              /* MG_NODE_STRING */
    double num;             /* MG_NODE_NUMBER */
    int boolean;            /* MG_NODE_BOOL */
    struct mg_node **items; /* MG_NODE_SEQ / MG_NODE_MAP children, in order */
    size_t nitems;
} mg_node;

/* broker.queues[]: declared (durable) on every connect to the broker. */
typedef struct mg_broker_queue {
    char *name;
    char *dead_letter_exchange;    /* x-dead-letter-exchange, NULL = none ("" = default) */
    char *dead_letter_routing_key; /* x-dead-letter-routing-key, NULL = none */
    uint32_t message_ttl_ms;       /* x-message-ttl, 0 = none */
} mg_broker_queue;

/* The `broker:` section (RabbitMQ, AMQP 0-9-1). */
typedef struct mg_broker_config {
    char *url;                   /* amqp://user:pass@host:port/vhost, required */
    uint32_t heartbeat_ms;       /* AMQP heartbeat, default 10s, 0 = off */
    uint32_t connect_timeout_ms; /* default 5s */
    uint32_t reconnect_min_ms;   /* first retry delay, default 200ms ... */
    uint32_t reconnect_max_ms;   /* ... doubling up to this, default 10s */
    uint32_t prefetch;           /* unsettled deliveries at once, default 100 */
    uint32_t publish_buffer;     /* publishes held while down, default 10000 */
    mg_broker_queue *queues;
    size_t nqueues;
    char **consume; /* queues whose messages go to on_task */
    size_t nconsume;
} mg_broker_config;

/* `cluster:` — several nodes as one gateway over the broker (cluster.h). */
typedef struct mg_cluster_config {
    char *node;         /* this node's name, unique in the cluster */
    uint32_t id;        /* 1..CONFIG_MAX_NODE_ID, unique: part of every connection id */
    char *prefix;       /* of the exchanges the gateway declares; default "moongate" */
    uint32_t queue_max; /* messages a member's queue holds before dropping; default 100000 */
} mg_cluster_config;

#define CONFIG_MAX_NODE_ID 1023

/* Bounds of `workers:` (a connection id keeps its worker in id % workers,
 * and a peer set is a 64-bit mask). */
#define CONFIG_MAX_WORKERS 64

/* Bounds of limits.max_header_size: libwebsockets keeps a request's header
 * data in one buffer whose size it stores in 16 bits. */
#define CONFIG_HEADER_SIZE_MIN 1024
#define CONFIG_HEADER_SIZE_MAX 32768

typedef struct mg_config {
    char *file; /* the YAML file it came from, NULL when built from flags */

    mg_listener *listeners; /* at least one */
    size_t nlisteners;

    char *script;              /* main Lua script, required */
    char *lua_path;            /* prepended to package.path, or NULL */
    char *lua_cpath;           /* prepended to package.cpath, or NULL */
    uint32_t hook_budget_ms;   /* default 250, range 1..60000 */
    uint64_t lua_memory_limit; /* bytes, default 256 MiB, 0 = unlimited */
    int lua_sandbox;           /* lua.sandbox: no debug, io, ffi, os.exit... (mgl_stdlib.c) */

    char *static_root;          /* folder served on plain GET, or NULL */
    char *static_index;         /* default "index.html" */
    int static_follow_symlinks; /* serve symlinks that lead out of the root */

    uint32_t ping_interval_ms; /* default 25000, 0 = no protocol pings */
    uint32_t ping_timeout_ms;  /* default 60000, 0 = never evict */
    char *text_ping;           /* app-level ping text, or NULL */
    char *text_pong;           /* its answer; set iff text_ping is */

    uint32_t max_connections;      /* default 10000 */
    uint32_t max_handshakes;       /* sockets accepted, not yet upgraded; default 1024 */
    uint64_t max_header_size;      /* request line + headers of one upgrade; default 16 KiB */
    uint64_t max_message_size;     /* default 1 MiB */
    uint64_t send_queue_max;       /* default 4 MiB */
    mg_slow_action slow_consumer;  /* default close */
    uint32_t handshake_timeout_ms; /* default 10000 */
    uint32_t message_rate;         /* per second, default 0 = unlimited */
    uint32_t message_burst;        /* default 0 = same as message_rate */
    uint32_t close_timeout_ms;     /* default 5000 */

    char **keep_headers;  /* handshake.headers: extra (non-standard) request */
    size_t nkeep_headers; /* headers kept for conn:header, lower-case */
    char **origins;       /* handshake.origins: allowed Origin values (hsmatch.h), */
    size_t norigins;      /* or none: no check */

    mg_dup_policy duplicate_names; /* default replace */
    uint32_t drain_timeout_ms;     /* default 10000 */
    mg_uring_mode uring;           /* io.uring, read at start; default auto */
    int require_fast_paths;        /* io.require_fast_paths: a fast path off is a start error */

    mg_log_level log_level;   /* default info */
    mg_log_format log_format; /* default text */
    char *log_file;           /* log.file: lines go there (opened at start), or NULL: stderr */

    char *pid_file; /* pid_file: written once the listeners are bound, or NULL */
    char *user;     /* user: started as root, become this user after binding (privs.c) */
    char *group;    /* group: ... and this group (default: the user's own) */

    char *admin_host;  /* default "127.0.0.1" when admin: is present */
    int admin_port;    /* 0 = admin endpoint off (no admin: section) */
    char *admin_token; /* bearer token, or NULL */

    uint32_t workers; /* worker processes, default 1; `auto` = online CPUs (master.c) */

    mg_broker_config *broker;   /* `broker:` section, or NULL */
    mg_cluster_config *cluster; /* `cluster:` section, or NULL */

    mg_node *app; /* free-form `app:` section, or NULL */
} mg_config;

/* A config with every default set and no listener or script. */
mg_config *config_new_defaults(void);

/* Load and validate PATH.  On error returns NULL and writes
 * "PATH:LINE:COL: message" (or "PATH: message" when no position applies)
 * into err. */
mg_config *config_load(const char *path, char *err, size_t errlen);

/* Checks that apply to any config, including one built from flags:
 * at least one listener, a script, files that must exist. */
int config_validate(const mg_config *cfg, char *err, size_t errlen);

/* Replace the first listener (or add one) with host:port from "HOST:PORT". */

int config_set_listen(mg_config *cfg, const char *hostport, char *err, size_t errlen);

/* Make path the only WebSocket path of the first listener (--path). */
int config_set_path(mg_config *cfg, const char *path);

void config_free(mg_config *cfg);

/* Unit parsers, also used by tests: "250ms", "30s", "5m", "1h", "0";
 * "4MiB", "512KiB", "10MB", "123" (bytes).  Return 0 on success. */
int config_parse_duration(const char *s, uint64_t *ms);
int config_parse_size(const char *s, uint64_t *bytes);

#endif
