/* test_config.c — config.c: defaults, units, a full config, relative paths,
 * the app: tree, every kind of error with its exact FILE:LINE:COL, and the
 * flag-built path (config_validate, config_set_listen).
 *
 * Each test works in its own mkdtemp folder under /tmp holding app.lua,
 * lib/, tls/cert.pem, tls/key.pem, www/ and the config under test
 * (conf.yaml); the folder is removed afterwards. */

#include "config.h"
#include "testlib.h"

#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef MG_TEST_DATA
#define MG_TEST_DATA "tests/unit/data"
#endif

/* The two required keys, lines 1-3 of most test configs. */
#define BASE "listen:\n  - port: 8080\nscript: app.lua\n"

typedef struct scratch {
    char dir[64];        /* as created: /tmp/mg-config-XXXXXX */
    char real[PATH_MAX]; /* its realpath, which config.c puts in paths */
    char conf[96];       /* dir/conf.yaml */
} scratch;

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fputs(text, f);
    fclose(f);
}

static void scratch_open(scratch *s)
{
    char path[PATH_MAX + 32];
    snprintf(s->dir, sizeof s->dir, "/tmp/mg-config-XXXXXX");
    if (!mkdtemp(s->dir)) {
        perror("mkdtemp");
        exit(2);
    }
    if (!realpath(s->dir, s->real)) {
        perror("realpath");
        exit(2);
    }
    snprintf(s->conf, sizeof s->conf, "%s/conf.yaml", s->dir);
    snprintf(path, sizeof path, "%s/app.lua", s->dir);
    write_file(path, "function on_message(conn, data) conn:send(data) end\n");
    snprintf(path, sizeof path, "%s/lib", s->dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/www", s->dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/tls", s->dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/tls/cert.pem", s->dir);
    write_file(path, "not really a certificate\n");
    snprintf(path, sizeof path, "%s/tls/key.pem", s->dir);
    write_file(path, "not really a key\n");
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void scratch_close(scratch *s)
{
    nftw(s->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static mg_config *scratch_load(scratch *s, const char *yaml, char *err, size_t errlen)
{
    write_file(s->conf, yaml);
    return config_load(s->conf, err, errlen);
}

/* "<dir>/<name>" with the scratch folder's realpath. */
static const char *in_dir(const scratch *s, const char *name, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", s->real, name);
    return buf;
}

/* Loading yaml must fail with exactly "CONF:" + want, where "{dir}" in
 * want stands for the scratch folder's realpath. */
static void expect_error(const char *yaml, const char *want)
{
    scratch s;
    char err[1024], full[2048];
    size_t len;

    scratch_open(&s);
    mg_config *cfg = scratch_load(&s, yaml, err, sizeof err);
    CHECK(cfg == NULL);

    len = (size_t)snprintf(full, sizeof full, "%s:", s.conf);
    for (const char *p = want; *p && len < sizeof full - 1;) {
        if (!strncmp(p, "{dir}", 5)) {
            len += (size_t)snprintf(full + len, sizeof full - len, "%s", s.real);
            p += 5;
        } else {
            full[len++] = *p++;
        }
    }
    full[len < sizeof full ? len : sizeof full - 1] = '\0';
    CHECK_STR(err, full);
    config_free(cfg);
    scratch_close(&s);
}

/* ------------------------------------------------------------ defaults */

static void test_defaults(void)
{
    mg_config *cfg = config_new_defaults();
    CHECK(cfg != NULL);
    CHECK(cfg->file == NULL);
    CHECK(cfg->nlisteners == 0 && cfg->listeners == NULL);
    CHECK(cfg->script == NULL);
    CHECK(cfg->lua_path == NULL && cfg->lua_cpath == NULL);
    CHECK(cfg->hook_budget_ms == 250);
    CHECK(cfg->lua_memory_limit == 256ull * 1024 * 1024);
    CHECK(cfg->static_root == NULL);
    CHECK_STR(cfg->static_index, "index.html");
    CHECK(cfg->ping_interval_ms == 25000);
    CHECK(cfg->ping_timeout_ms == 60000);
    CHECK(cfg->text_ping == NULL && cfg->text_pong == NULL);
    CHECK(cfg->max_connections == 10000);
    CHECK(cfg->max_message_size == 1024 * 1024);
    CHECK(cfg->send_queue_max == 4 * 1024 * 1024);
    CHECK(cfg->slow_consumer == MG_SLOW_CLOSE);
    CHECK(cfg->handshake_timeout_ms == 10000);
    CHECK(cfg->message_rate == 0 && cfg->message_burst == 0);
    CHECK(cfg->close_timeout_ms == 5000);
    CHECK(cfg->duplicate_names == MG_DUP_REPLACE);
    CHECK(cfg->drain_timeout_ms == 10000);
    CHECK(cfg->uring == MG_URING_AUTO);
    CHECK(cfg->log_level == MG_LOG_INFO);
    CHECK(cfg->log_format == MG_LOG_TEXT);
    CHECK(cfg->admin_port == 0 && cfg->admin_host == NULL && cfg->admin_token == NULL);
    CHECK(cfg->app == NULL);
    config_free(cfg);
    config_free(NULL); /* allowed, like free() */
}

/* --------------------------------------------------------------- units */

static void test_duration_units(void)
{
    uint64_t ms = 12345;
    CHECK(config_parse_duration("0", &ms) == 0 && ms == 0);
    CHECK(config_parse_duration("0ms", &ms) == 0 && ms == 0);
    CHECK(config_parse_duration("0s", &ms) == 0 && ms == 0);
    CHECK(config_parse_duration("250ms", &ms) == 0 && ms == 250);
    CHECK(config_parse_duration("30s", &ms) == 0 && ms == 30000);
    CHECK(config_parse_duration("5m", &ms) == 0 && ms == 300000);
    CHECK(config_parse_duration("1h", &ms) == 0 && ms == 3600000);
    CHECK(config_parse_duration("007s", &ms) == 0 && ms == 7000);
    CHECK(config_parse_duration("18446744073709551615ms", &ms) == 0 && ms == UINT64_MAX);

    ms = 777;
    static const char *const bad[] = {
        "",
        "30",
        "1",
        "5x",
        "-1s",
        "+1s",
        "1.5s",
        "s",
        " 5s",
        "5s ",
        "5 s",
        "5S",
        "5sec",
        "5ms5",
        "1h30m",
        "0x10s",
        "18446744073709551616ms", /* digits overflow */
        "5124095576030433h",      /* overflows when multiplied */
        "18446744073709552s",     /* ditto, seconds */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = config_parse_duration(bad[i], &ms);
        CHECK(rc != 0);
        if (rc == 0)
            fprintf(stderr, "  accepted bad duration '%s'\n", bad[i]);
    }
    CHECK(ms == 777); /* untouched on failure */
    CHECK(config_parse_duration(NULL, &ms) != 0);
}

static void test_size_units(void)
{
    uint64_t b = 1;
    CHECK(config_parse_size("0", &b) == 0 && b == 0);
    CHECK(config_parse_size("123", &b) == 0 && b == 123);
    CHECK(config_parse_size("2B", &b) == 0 && b == 2);
    CHECK(config_parse_size("512KiB", &b) == 0 && b == 512 * 1024);
    CHECK(config_parse_size("4MiB", &b) == 0 && b == 4 * 1024 * 1024);
    CHECK(config_parse_size("1GiB", &b) == 0 && b == 1024ull * 1024 * 1024);
    CHECK(config_parse_size("10KB", &b) == 0 && b == 10000);
    CHECK(config_parse_size("10MB", &b) == 0 && b == 10000000);
    CHECK(config_parse_size("3GB", &b) == 0 && b == 3000000000ull);
    CHECK(config_parse_size("18446744073709551615", &b) == 0 && b == UINT64_MAX);
    CHECK(config_parse_size("17179869183GiB", &b) == 0 && b == 17179869183ull << 30);

    b = 99;
    static const char *const bad[] = {
        "",
        "4mb",
        "4MIB",
        "4 MiB",
        "MiB",
        "-1",
        "1.5MiB",
        "4MiB ",
        " 4MiB",
        "4Mi",
        "4KiBB",
        "1e6",
        "0x100",
        "18446744073709551616", /* 2^64 */
        "17179869184GiB",       /* 2^34 GiB = 2^64 bytes */
        "18446744073709552KB",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = config_parse_size(bad[i], &b);
        CHECK(rc != 0);
        if (rc == 0)
            fprintf(stderr, "  accepted bad size '%s'\n", bad[i]);
    }
    CHECK(b == 99);
    CHECK(config_parse_size(NULL, &b) != 0);
}

/* ------------------------------------------------------- valid configs */

static void test_minimal_config(void)
{
    scratch s;
    char err[1024] = "", buf[PATH_MAX + 32];
    scratch_open(&s);
    mg_config *cfg = scratch_load(&s, BASE, err, sizeof err);
    CHECK(cfg != NULL);
    CHECK_STR(err, "");
    if (cfg) {
        CHECK_STR(cfg->file, s.conf);
        CHECK(cfg->nlisteners == 1);
        CHECK_STR(cfg->listeners[0].host, "127.0.0.1");
        CHECK(cfg->listeners[0].port == 8080);
        CHECK_STR(cfg->listeners[0].paths[0], "/");
        CHECK(cfg->listeners[0].tls_cert == NULL && cfg->listeners[0].tls_key == NULL);
        CHECK_STR(cfg->script, in_dir(&s, "app.lua", buf, sizeof buf));
        /* everything else stays at its default */
        CHECK(cfg->hook_budget_ms == 250);
        CHECK(cfg->ping_interval_ms == 25000 && cfg->ping_timeout_ms == 60000);
        CHECK(cfg->max_message_size == 1024 * 1024);
        CHECK(cfg->static_root == NULL);
        CHECK_STR(cfg->static_index, "index.html");
        CHECK(cfg->admin_port == 0 && cfg->admin_host == NULL);
        CHECK(cfg->app == NULL);
        CHECK(config_validate(cfg, err, sizeof err) == 0);
    }
    config_free(cfg);
    scratch_close(&s);
}

static void test_full_config(void)
{
    static const char yaml[] = "# every key, none at its default\n"
                               "listen:\n"
                               "  - host: 0.0.0.0\n"
                               "    port: 8080\n"
                               "    path: /ws\n"
                               "  - host: \"::1\"\n"
                               "    port: 8443\n"
                               "    path: /secure\n"
                               "    tls:\n"
                               "      cert: tls/cert.pem\n"
                               "      key: tls/key.pem\n"
                               "script: app.lua\n"
                               "lua:\n"
                               "  path: lib/?.lua\n"
                               "  cpath: lib/?.so\n"
                               "  hook_budget: 2s\n"
                               "  memory_limit: 64MiB\n"
                               "static:\n"
                               "  root: www\n"
                               "  index: home.html\n"
                               "heartbeat:\n"
                               "  interval: 0\n"
                               "  timeout: 2m\n"
                               "  text_ping: ping?\n"
                               "  text_pong: pong!\n"
                               "limits:\n"
                               "  max_connections: 5\n"
                               "  max_message_size: 64KiB\n"
                               "  send_queue: 1MB\n"
                               "  slow_consumer: drop\n"
                               "  handshake_timeout: 1500ms\n"
                               "  message_rate: 20\n"
                               "  message_burst: 40\n"
                               "  close_timeout: 0\n"
                               "names:\n"
                               "  duplicate: reject\n"
                               "shutdown:\n"
                               "  drain_timeout: 1h\n"
                               "io:\n"
                               "  uring: off\n"
                               "log:\n"
                               "  level: debug\n"
                               "  format: json\n"
                               "admin:\n"
                               "  host: 10.0.0.1\n"
                               "  port: 9191\n"
                               "  token: s3cret\n"
                               "app:\n"
                               "  motd: hi\n";
    scratch s;
    char err[1024] = "", buf[PATH_MAX + 32], want[2 * PATH_MAX];
    scratch_open(&s);
    mg_config *cfg = scratch_load(&s, yaml, err, sizeof err);
    CHECK(cfg != NULL);
    CHECK_STR(err, "");
    if (!cfg) {
        scratch_close(&s);
        return;
    }
    CHECK(cfg->nlisteners == 2);
    CHECK_STR(cfg->listeners[0].host, "0.0.0.0");
    CHECK(cfg->listeners[0].port == 8080);
    CHECK_STR(cfg->listeners[0].paths[0], "/ws");
    CHECK(cfg->listeners[0].tls_cert == NULL);
    CHECK_STR(cfg->listeners[1].host, "::1");
    CHECK(cfg->listeners[1].port == 8443);
    CHECK_STR(cfg->listeners[1].paths[0], "/secure");
    CHECK_STR(cfg->listeners[1].tls_cert, in_dir(&s, "tls/cert.pem", buf, sizeof buf));
    CHECK_STR(cfg->listeners[1].tls_key, in_dir(&s, "tls/key.pem", buf, sizeof buf));
    CHECK_STR(cfg->script, in_dir(&s, "app.lua", buf, sizeof buf));
    CHECK_STR(cfg->lua_path, in_dir(&s, "lib/?.lua", buf, sizeof buf));
    CHECK_STR(cfg->lua_cpath, in_dir(&s, "lib/?.so", buf, sizeof buf));
    CHECK(cfg->hook_budget_ms == 2000);
    CHECK(cfg->lua_memory_limit == 64ull << 20);
    snprintf(want, sizeof want, "%s/www", s.real);
    CHECK_STR(cfg->static_root, want);
    CHECK_STR(cfg->static_index, "home.html");
    CHECK(cfg->ping_interval_ms == 0);
    CHECK(cfg->ping_timeout_ms == 120000);
    CHECK_STR(cfg->text_ping, "ping?");
    CHECK_STR(cfg->text_pong, "pong!");
    CHECK(cfg->max_connections == 5);
    CHECK(cfg->max_message_size == 64 * 1024);
    CHECK(cfg->send_queue_max == 1000000);
    CHECK(cfg->slow_consumer == MG_SLOW_DROP);
    CHECK(cfg->handshake_timeout_ms == 1500);
    CHECK(cfg->message_rate == 20);
    CHECK(cfg->message_burst == 40);
    CHECK(cfg->close_timeout_ms == 0);
    CHECK(cfg->duplicate_names == MG_DUP_REJECT);
    CHECK(cfg->drain_timeout_ms == 3600000);
    CHECK(cfg->uring == MG_URING_OFF);
    CHECK(cfg->log_level == MG_LOG_DEBUG);
    CHECK(cfg->log_format == MG_LOG_JSON);
    CHECK_STR(cfg->admin_host, "10.0.0.1");
    CHECK(cfg->admin_port == 9191);
    CHECK_STR(cfg->admin_token, "s3cret");
    CHECK(cfg->app != NULL && cfg->app->type == MG_NODE_MAP && cfg->app->nitems == 1);
    CHECK(config_validate(cfg, err, sizeof err) == 0);
    CHECK_STR(err, "");
    config_free(cfg);
    scratch_close(&s);
}

/* Section keys are all optional: a section with nothing under it (or only
 * comments) keeps the defaults; values may be quoted; aliases work. */
static void test_empty_sections_quotes_aliases(void)
{
    static const char yaml[] = BASE "heartbeat:\n"
                                    "  # interval: 5s\n"
                                    "limits:\n"
                                    "log: {}\n"
                                    "lua:\n"
                                    "  hook_budget: \"1ms\"\n"
                                    "  memory_limit: '0'\n"
                                    "shutdown:\n"
                                    "  drain_timeout: &t 30s\n"
                                    "names: {duplicate: 'reject'}\n"
                                    "app:\n"
                                    "  wait: *t\n";
    scratch s;
    char err[1024] = "";
    scratch_open(&s);
    mg_config *cfg = scratch_load(&s, yaml, err, sizeof err);
    CHECK(cfg != NULL);
    CHECK_STR(err, "");
    if (cfg) {
        CHECK(cfg->ping_interval_ms == 25000);
        CHECK(cfg->max_connections == 10000);
        CHECK(cfg->log_level == MG_LOG_INFO);
        CHECK(cfg->hook_budget_ms == 1);
        CHECK(cfg->lua_memory_limit == 0);
        CHECK(cfg->drain_timeout_ms == 30000);
        CHECK(cfg->duplicate_names == MG_DUP_REJECT);
        CHECK(cfg->app && cfg->app->nitems == 1 && cfg->app->items[0]->type == MG_NODE_STRING);
        if (cfg->app && cfg->app->nitems == 1)
            CHECK_STR(cfg->app->items[0]->str, "30s");
    }
    config_free(cfg);
    scratch_close(&s);
}

/* Relative paths resolve against the config file's folder, whatever the
 * current directory; absolute ones are kept; ".." is resolved. */
static void test_relative_paths(void)
{
    scratch s;
    char err[1024] = "", yaml[PATH_MAX + 512], buf[PATH_MAX + 32], want[3 * PATH_MAX],
         cwd[PATH_MAX];

    scratch_open(&s);
    snprintf(yaml, sizeof yaml,
             "listen:\n"
             "  - port: 8443\n"
             "    tls: {cert: ./tls/../tls/cert.pem, key: %s/tls/key.pem}\n"
             "script: lib/../app.lua\n"
             "lua:\n"
             "  path: lib/?.lua;/usr/share/lua/5.1/?.lua;;./?/init.lua\n"
             "  cpath: /opt/lib/?.so\n"
             "static:\n"
             "  root: www/\n",
             s.real);

    /* Load it from elsewhere, by a relative path with a "." in it. */
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK(chdir("/") == 0);
    char rel[128];
    snprintf(rel, sizeof rel, ".%s/./conf.yaml", s.dir);
    write_file(s.conf, yaml);
    mg_config *cfg = config_load(rel, err, sizeof err);
    CHECK(chdir(cwd) == 0);

    CHECK(cfg != NULL);
    CHECK_STR(err, "");
    if (cfg) {
        CHECK_STR(cfg->file, rel);
        CHECK_STR(cfg->script, in_dir(&s, "app.lua", buf, sizeof buf));
        CHECK_STR(cfg->listeners[0].tls_cert, in_dir(&s, "tls/cert.pem", buf, sizeof buf));
        CHECK_STR(cfg->listeners[0].tls_key, in_dir(&s, "tls/key.pem", buf, sizeof buf));
        snprintf(want, sizeof want, "%s/lib/?.lua;/usr/share/lua/5.1/?.lua;;%s/./?/init.lua",
                 s.real, s.real);
        CHECK_STR(cfg->lua_path, want);
        CHECK_STR(cfg->lua_cpath, "/opt/lib/?.so");
        CHECK_STR(cfg->static_root, in_dir(&s, "www", buf, sizeof buf));
        CHECK(cfg->script[0] == '/');
    }
    config_free(cfg);
    scratch_close(&s);
}

/* The shipped conf/moongate.yaml loads, laid out as in the repository
 * (conf/, scripts/app.lua, static/) inside a scratch folder. */
static void test_shipped_config(void)
{
    scratch s;
    char err[1024] = "", path[PATH_MAX + 64], want[PATH_MAX + 64];

    /* MG_TEST_DATA is ROOT/tests/unit/data (which need not exist) */
    const char *data = MG_TEST_DATA, *tail = "tests/unit/data";
    size_t root_len = strlen(data) >= strlen(tail) ? strlen(data) - strlen(tail) : 0;
    snprintf(path, sizeof path, "%.*sconf/moongate.yaml", (int)root_len, data);
    FILE *in = fopen(path, "r");
    CHECK(in != NULL);
    if (!in)
        return;
    scratch_open(&s);
    snprintf(path, sizeof path, "%s/conf", s.dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/scripts", s.dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/static", s.dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/scripts/app.lua", s.dir);
    write_file(path, "-- app\n");

    snprintf(path, sizeof path, "%s/conf/moongate.yaml", s.dir);
    FILE *out = fopen(path, "w");
    CHECK(out != NULL);
    for (int c; out && (c = fgetc(in)) != EOF;)
        fputc(c, out);
    if (out)
        fclose(out);
    fclose(in);

    mg_config *cfg = config_load(path, err, sizeof err);
    CHECK(cfg != NULL);
    CHECK_STR(err, "");
    if (cfg) {
        CHECK(cfg->nlisteners == 1);
        CHECK_STR(cfg->listeners[0].host, "127.0.0.1");
        CHECK(cfg->listeners[0].port == 8080);
        CHECK_STR(cfg->listeners[0].paths[0], "/ws");
        snprintf(want, sizeof want, "%s/scripts/app.lua", s.real);
        CHECK_STR(cfg->script, want);
        snprintf(want, sizeof want, "%s/conf/../scripts/?.lua", s.real);
        CHECK_STR(cfg->lua_path, want);
        snprintf(want, sizeof want, "%s/static", s.real);
        CHECK_STR(cfg->static_root, want);
        CHECK_STR(cfg->static_index, "index.html");
        CHECK(cfg->ping_interval_ms == 25000 && cfg->ping_timeout_ms == 60000);
        CHECK_STR(cfg->text_ping, "Ping");
        CHECK_STR(cfg->text_pong, "Pong");
        CHECK_STR(cfg->admin_host, "127.0.0.1");
        CHECK(cfg->admin_port == 9090);
        CHECK(cfg->admin_token == NULL);
        CHECK(cfg->app != NULL);
    }
    config_free(cfg);
    scratch_close(&s);
}

static void test_admin_section(void)
{
    scratch s;
    char err[1024] = "";
    scratch_open(&s);
    mg_config *cfg = scratch_load(&s, BASE "admin:\n  port: 9090\n", err, sizeof err);
    CHECK(cfg != NULL);
    if (cfg) {
        CHECK_STR(cfg->admin_host, "127.0.0.1");
        CHECK(cfg->admin_port == 9090);
        CHECK(cfg->admin_token == NULL);
    }
    config_free(cfg);
    scratch_close(&s);

    expect_error(BASE "admin:\n  host: 0.0.0.0\n", "5:3: admin: missing required key 'port'");
    expect_error(BASE "admin:\n", "4:7: admin: missing required key 'port'");
    expect_error(BASE "admin:\n  port: 0\n", "5:9: admin.port: must be 1..65535, got '0'");
    expect_error(BASE "admin:\n  port: 9090\n  token: \"\"\n",
                 "6:10: admin.token: must not be empty");
}

/* ---------------------------------------------------------------- broker */

static void test_broker_section(void)
{
    scratch s;
    char err[1024] = "";
    scratch_open(&s);
    mg_config *cfg =
        scratch_load(&s, BASE "broker:\n  url: amqp://u:p@127.0.0.1:5673/v\n", err, sizeof err);
    CHECK(cfg != NULL);
    if (cfg) {
        mg_broker_config *b = cfg->broker;
        CHECK(b != NULL);
        CHECK_STR(b->url, "amqp://u:p@127.0.0.1:5673/v");
        CHECK(b->heartbeat_ms == 10000 && b->connect_timeout_ms == 5000);
        CHECK(b->reconnect_min_ms == 200 && b->reconnect_max_ms == 10000);
        CHECK(b->prefetch == 100 && b->publish_buffer == 10000);
        CHECK(b->nqueues == 0 && b->nconsume == 0);
    }
    config_free(cfg);
    scratch_close(&s);

    scratch_open(&s);
    cfg = scratch_load(&s,
                       BASE "broker:\n"
                            "  url: amqp://127.0.0.1/\n"
                            "  heartbeat: 0\n"
                            "  prefetch: 7\n"
                            "  reconnect_min: 1s\n"
                            "  reconnect_max: 1s\n"
                            "  queues:\n"
                            "    - name: tasks\n"
                            "      dead_letter_exchange: \"\"\n"
                            "      dead_letter_routing_key: tasks.dead\n"
                            "    - {name: tasks.retry, message_ttl: 5s}\n"
                            "  consume: [tasks, other]\n",
                       err, sizeof err);
    CHECK(cfg != NULL);
    CHECK_STR(err, "");
    if (cfg && cfg->broker) {
        mg_broker_config *b = cfg->broker;
        CHECK(b->heartbeat_ms == 0 && b->prefetch == 7);
        CHECK(b->nqueues == 2);
        CHECK_STR(b->queues[0].name, "tasks");
        CHECK_STR(b->queues[0].dead_letter_exchange, "");
        CHECK_STR(b->queues[0].dead_letter_routing_key, "tasks.dead");
        CHECK(b->queues[0].message_ttl_ms == 0);
        CHECK_STR(b->queues[1].name, "tasks.retry");
        CHECK(b->queues[1].dead_letter_exchange == NULL);
        CHECK(b->queues[1].message_ttl_ms == 5000);
        CHECK(b->nconsume == 2);
        CHECK_STR(b->consume[0], "tasks");
        CHECK_STR(b->consume[1], "other");
    }
    config_free(cfg);
    scratch_close(&s);

    expect_error(BASE "broker:\n  heartbeat: 5s\n", "5:3: broker: missing required key 'url'");
    expect_error(BASE "broker:\n  url: http://x/\n",
                 "5:8: broker.url: invalid URL 'http://x/' (expected "
                 "amqp://user:pass@host:port/vhost)");
    expect_error(BASE "broker:\n  url: amqps://x/\n",
                 "5:8: broker.url: amqps:// is not supported yet, got 'amqps://x/'");
    expect_error(BASE "broker:\n  url: amqp://x/\n  prefetch: 0\n",
                 "6:13: broker.prefetch: must be 1..65535, got '0'");
    expect_error(BASE "broker:\n  url: amqp://x/\n  reconnect_min: 5s\n  reconnect_max: 1s\n",
                 "7:18: broker: reconnect_max must not be below reconnect_min");
    expect_error(BASE "broker:\n  url: amqp://x/\n  queues:\n    - durable: true\n",
                 "7:7: unknown key 'durable' in broker.queues[0] (expected one of: name, "
                 "dead_letter_exchange, dead_letter_routing_key, message_ttl)");
    expect_error(BASE "broker:\n  url: amqp://x/\n  queues:\n    - name: a\n    - name: a\n",
                 "8:7: broker.queues[1]: queue 'a' is declared twice");
    expect_error(BASE "broker:\n  url: amqp://x/\n  queues: tasks\n",
                 "6:11: broker.queues: expected a list of queues (\"- name: tasks\"), got "
                 "'tasks'");
    expect_error(BASE "broker:\n  url: amqp://x/\n  consume: [\"\"]\n",
                 "6:13: broker.consume[0]: must not be empty");
}

/* ------------------------------------------------------------ app tree */

static const mg_node *item(const mg_node *map, const char *key)
{
    for (size_t i = 0; map && i < map->nitems; i++)
        if (map->items[i]->key && !strcmp(map->items[i]->key, key))
            return map->items[i];
    return NULL;
}

static int is_num(const mg_node *n, double v)
{
    return n && n->type == MG_NODE_NUMBER && n->num == v;
}

static int is_str(const mg_node *n, const char *v)
{
    return n && n->type == MG_NODE_STRING && n->str && !strcmp(n->str, v);
}

static void test_app_tree(void)
{
    static const char yaml[] = BASE "app:\n"
                                    "  name: moon\n"
                                    "  quoted: \"42\"\n"
                                    "  single: 'true'\n"
                                    "  count: 42\n"
                                    "  neg: -7\n"
                                    "  ratio: 0.5\n"
                                    "  exp: 1e3\n"
                                    "  hex: 0x1F\n"
                                    "  oct: 0o17\n"
                                    "  inf: -.inf\n"
                                    "  nan: .nan\n"
                                    "  yes_bool: true\n"
                                    "  no_bool: False\n"
                                    "  tilde: ~\n"
                                    "  empty:\n"
                                    "  nul: null\n"
                                    "  quoted_null: 'null'\n"
                                    "  version: 1.2.3\n"
                                    "  word_yes: yes\n"
                                    "  list: [1, two, {three: 3}, [], {}]\n"
                                    "  nested:\n"
                                    "    deep:\n"
                                    "      deeper: [x]\n";
    scratch s;
    char err[1024] = "";
    scratch_open(&s);
    mg_config *cfg = scratch_load(&s, yaml, err, sizeof err);
    CHECK(cfg != NULL);
    CHECK_STR(err, "");
    const mg_node *app = cfg ? cfg->app : NULL;
    CHECK(app && app->type == MG_NODE_MAP && app->key == NULL && app->nitems == 21);
    if (!app) {
        config_free(cfg);
        scratch_close(&s);
        return;
    }
    CHECK_STR(app->items[0]->key, "name"); /* file order kept */
    CHECK_STR(app->items[20]->key, "nested");
    CHECK(is_str(item(app, "name"), "moon"));
    CHECK(is_str(item(app, "quoted"), "42"));
    CHECK(is_str(item(app, "single"), "true"));
    CHECK(is_num(item(app, "count"), 42));
    CHECK(is_num(item(app, "neg"), -7));
    CHECK(is_num(item(app, "ratio"), 0.5));
    CHECK(is_num(item(app, "exp"), 1000));
    CHECK(is_num(item(app, "hex"), 31));
    CHECK(is_num(item(app, "oct"), 15));
    CHECK(item(app, "inf") && item(app, "inf")->type == MG_NODE_NUMBER &&
          isinf(item(app, "inf")->num) && item(app, "inf")->num < 0);
    CHECK(item(app, "nan") && item(app, "nan")->type == MG_NODE_NUMBER &&
          isnan(item(app, "nan")->num));
    CHECK(item(app, "yes_bool") && item(app, "yes_bool")->type == MG_NODE_BOOL &&
          item(app, "yes_bool")->boolean == 1);
    CHECK(item(app, "no_bool") && item(app, "no_bool")->type == MG_NODE_BOOL &&
          item(app, "no_bool")->boolean == 0);
    CHECK(item(app, "tilde") && item(app, "tilde")->type == MG_NODE_NULL);
    CHECK(item(app, "empty") && item(app, "empty")->type == MG_NODE_NULL);
    CHECK(item(app, "nul") && item(app, "nul")->type == MG_NODE_NULL);
    CHECK(is_str(item(app, "quoted_null"), "null"));
    CHECK(is_str(item(app, "version"), "1.2.3"));
    CHECK(is_str(item(app, "word_yes"), "yes")); /* YAML 1.2: not a boolean */

    const mg_node *list = item(app, "list");
    CHECK(list && list->type == MG_NODE_SEQ && list->nitems == 5);
    if (list && list->nitems == 5) {
        CHECK(is_num(list->items[0], 1) && list->items[0]->key == NULL);
        CHECK(is_str(list->items[1], "two"));
        CHECK(list->items[2]->type == MG_NODE_MAP && is_num(item(list->items[2], "three"), 3));
        CHECK(list->items[3]->type == MG_NODE_SEQ && list->items[3]->nitems == 0);
        CHECK(list->items[4]->type == MG_NODE_MAP && list->items[4]->nitems == 0);
    }
    const mg_node *deeper = item(item(item(app, "nested"), "deep"), "deeper");
    CHECK(deeper && deeper->type == MG_NODE_SEQ && deeper->nitems == 1 &&
          is_str(deeper->items[0], "x"));
    config_free(cfg);
    scratch_close(&s);
}

static void test_app_scalar_and_null(void)
{
    scratch s;
    char err[1024] = "";
    scratch_open(&s);
    mg_config *cfg = scratch_load(&s, BASE "app:\n", err, sizeof err);
    CHECK(cfg != NULL && cfg->app == NULL); /* "app:" alone = no app */
    config_free(cfg);
    cfg = scratch_load(&s, BASE "app: 5\n", err, sizeof err);
    CHECK(cfg != NULL && is_num(cfg->app, 5));
    config_free(cfg);
    scratch_close(&s);
}

static void test_app_errors(void)
{
    /* a partly built tree is freed (ASan would notice a leak) */
    expect_error(BASE "app:\n  rooms:\n    - name: a\n      name: b\n",
                 "7:7: duplicate key 'name' in app.rooms[0] (first set at line 6)");
    expect_error(BASE "app:\n  ? [x]\n  : 1\n", "5:5: app: keys must be plain values, got a list");
    expect_error(BASE "app: &a [*a]\n",
                 "4:6: app: nested too deeply (more than 64 levels; a recursive alias?)");

    /* "billion laughs": 10^5 values from a few lines of aliases */
    scratch s;
    char err[1024] = "";
    scratch_open(&s);
    mg_config *cfg = scratch_load(&s,
                                  BASE "app:\n"
                                       "  a: &a [1,2,3,4,5,6,7,8,9,10]\n"
                                       "  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                                       "  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
                                       "  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                                       "  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
                                       "  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n",
                                  err, sizeof err);
    CHECK(cfg == NULL);
    CHECK(strstr(err, ": app: too many values (more than 100000") != NULL);
    config_free(cfg);
    scratch_close(&s);
}

/* -------------------------------------------------------------- errors */

static void test_err_unknown_keys(void)
{
    expect_error(BASE "heartbeat:\n  interval: 5s\n  pingg: 3s\n",
                 "6:3: unknown key 'pingg' in heartbeat (expected one of: interval, timeout, "
                 "text_ping, text_pong)");
    expect_error(BASE "heartbeats:\n  interval: 5s\n",
                 "4:1: unknown key 'heartbeats' (expected one of: listen, script, lua, static, "
                 "heartbeat, limits, handshake, names, shutdown, io, log, admin, broker, cluster, "
                 "workers, app, pid_file, user, group)");
    expect_error("listen:\n  - port: 8080\n    prot: 1\nscript: app.lua\n",
                 "3:5: unknown key 'prot' in listen[0] (expected one of: host, port, path, "
                 "protocols, tls, reader, compression)");
    expect_error("listen:\n  - port: 8443\n    tls:\n      cert: tls/cert.pem\n      key: "
                 "tls/key.pem\n      ca: x\nscript: app.lua\n",
                 "6:7: unknown key 'ca' in listen[0].tls (expected one of: cert, key)");
}

/* pid_file, log.file, user, group: files that need not exist yet, resolved
 * against the config folder; accounts that must exist. */
static void test_control_keys(void)
{
    scratch s;
    char err[1024] = "", buf[PATH_MAX + 32];

    scratch_open(&s);
    mg_config *cfg = scratch_load(
        &s,
        BASE "pid_file: run/mg.pid\nuser: root\ngroup: root\nlog:\n  file: /var/log/mg/mg.log\n",
        err, sizeof err);
    CHECK(cfg != NULL);
    CHECK_STR(err, "");
    if (cfg) {
        /* s.dir, not its realpath: the folder itself need not exist. */
        snprintf(buf, sizeof buf, "%s/run/mg.pid", s.dir);
        CHECK_STR(cfg->pid_file, buf);
        CHECK_STR(cfg->log_file, "/var/log/mg/mg.log");
        CHECK_STR(cfg->user, "root");
        CHECK_STR(cfg->group, "root");
    }
    config_free(cfg);
    cfg = scratch_load(&s, BASE, err, sizeof err);
    CHECK(cfg && !cfg->pid_file && !cfg->log_file && !cfg->user && !cfg->group);
    config_free(cfg);
    scratch_close(&s);

    expect_error(BASE "user: no-such-user-here\n", "4:7: user: no such user 'no-such-user-here'");
    expect_error(BASE "group: no-such-group\n", "4:8: group: no such group 'no-such-group'");
    expect_error(BASE "pid_file: run/\n", "4:11: pid_file: needs a file name, got 'run/'");
    expect_error(BASE "log:\n  file: \"\"\n", "5:9: log.file: needs a file name, got ''");
}

static void test_err_durations(void)
{
    expect_error(BASE "heartbeat:\n  interval: 5x\n",
                 "5:13: heartbeat.interval: invalid duration '5x' (use e.g. 250ms, 30s, 5m)");
    expect_error(BASE "heartbeat:\n  timeout: 30\n",
                 "5:12: heartbeat.timeout: duration '30' needs a unit (e.g. 30s or 30ms); only 0 "
                 "may be written without one");
    expect_error(BASE "heartbeat:\n  timeout: -1s\n",
                 "5:12: heartbeat.timeout: invalid duration '-1s' (use e.g. 250ms, 30s, 5m)");
    expect_error(BASE "shutdown:\n  drain_timeout: 25h\n",
                 "5:18: shutdown.drain_timeout: must be 0..24h, got '25h'");
    expect_error(BASE "heartbeat:\n  interval: 99999999999999999999999ms\n",
                 "5:13: heartbeat.interval: must be 0..24h, got '99999999999999999999999ms'");
    expect_error(BASE "heartbeat:\n  interval: 5124095576030433h\n",
                 "5:13: heartbeat.interval: must be 0..24h, got '5124095576030433h'");
    expect_error(BASE "limits:\n  max_header_size: 64KiB\n",
                 "5:20: limits.max_header_size: must be 1KiB..32KiB, got '64KiB'");
    expect_error(BASE "limits:\n  max_header_size: 512\n",
                 "5:20: limits.max_header_size: must be 1KiB..32KiB, got '512'");
    expect_error(BASE "lua:\n  hook_budget: 0\n",
                 "5:16: lua.hook_budget: must be 1ms..60s, got '0'");
    expect_error(BASE "lua:\n  hook_budget: 61s\n",
                 "5:16: lua.hook_budget: must be 1ms..60s, got '61s'");
    expect_error(BASE "limits:\n  handshake_timeout: 0s\n",
                 "5:22: limits.handshake_timeout: must be 1ms..24h, got '0s'");
}

static void test_err_sizes(void)
{
    expect_error(BASE "limits:\n  max_message_size: 1 MiB\n",
                 "5:21: limits.max_message_size: invalid size '1 MiB' (use e.g. 512KiB, 4MiB, "
                 "1GB, or bytes)");
    expect_error(BASE "lua:\n  memory_limit: 17179869184GiB\n",
                 "5:17: lua.memory_limit: size '17179869184GiB' is too large");
    expect_error(BASE "limits:\n  send_queue: 0\n",
                 "5:15: limits.send_queue: must be at least 1B, got '0'");
    expect_error(BASE "limits:\n  send_queue: 4mb\n",
                 "5:15: limits.send_queue: invalid size '4mb' (use e.g. 512KiB, 4MiB, 1GB, or "
                 "bytes)");
}

static void test_err_integers(void)
{
    expect_error(BASE "limits:\n  max_connections: lots\n",
                 "5:20: limits.max_connections: expected an integer, got 'lots'");
    expect_error(BASE "limits:\n  max_connections: 1.5\n",
                 "5:20: limits.max_connections: expected an integer, got '1.5'");
    expect_error(BASE "limits:\n  max_connections: 0\n",
                 "5:20: limits.max_connections: must be 1..4294967295, got '0'");
    expect_error(BASE "limits:\n  max_connections: 4294967296\n",
                 "5:20: limits.max_connections: must be 1..4294967295, got '4294967296'");
    expect_error(BASE "limits:\n  message_rate: -1\n",
                 "5:17: limits.message_rate: must be 0..4294967295, got '-1'");
    expect_error(BASE "limits:\n  message_burst: 99999999999999999999999\n",
                 "5:18: limits.message_burst: must be 0..4294967295, got "
                 "'99999999999999999999999'");
}

static void test_err_ports(void)
{
    expect_error("listen:\n  - port: 8080\n  - port: 70000\nscript: app.lua\n",
                 "3:11: listen[1].port: must be 1..65535, got '70000'");
    expect_error("listen:\n  - port: 0\nscript: app.lua\n",
                 "2:11: listen[0].port: must be 1..65535, got '0'");
    expect_error("listen:\n  - port: http\nscript: app.lua\n",
                 "2:11: listen[0].port: expected an integer, got 'http'");
}

static void test_err_missing_required(void)
{
    expect_error("listen:\n  - port: 8080\n", "1:1: missing required key 'script'");
    expect_error("# comment\n\nscript: app.lua\n", "3:1: missing required key 'listen'");
    expect_error("listen:\n  - host: 0.0.0.0\n    path: /ws\nscript: app.lua\n",
                 "2:5: listen[0]: missing required key 'port'");
    expect_error("listen:\n  - port: 8080\n  -\nscript: app.lua\n",
                 "3:4: listen[1]: missing required key 'port'");
    expect_error(BASE "static:\n  index: home.html\n", "5:3: static: missing required key 'root'");
}

static void test_err_listen_shape(void)
{
    expect_error("listen:\n  port: 8080\nscript: app.lua\n",
                 "2:3: listen: expected a list of listeners (\"- port: 8080\"), got a map");
    expect_error("listen: 127.0.0.1:8080\nscript: app.lua\n",
                 "1:9: listen: expected a list of listeners (\"- port: 8080\"), got "
                 "'127.0.0.1:8080'");
    expect_error("listen: []\nscript: app.lua\n", "1:9: listen: needs at least one listener");
    expect_error("listen:\n  - 8080\nscript: app.lua\n",
                 "2:5: listen[0]: expected a map, got '8080'");
    expect_error("listen:\n  - port: 8080\n  - port: 8081\n  - host: 127.0.0.1\n    port: "
                 "8080\nscript: app.lua\n",
                 "4:5: listen[2]: same address 127.0.0.1:8080 as listen[0]");
    expect_error("listen:\n  - port: 8080\n    path: ws\nscript: app.lua\n",
                 "3:11: listen[0].path: must start with '/', got 'ws'");
    expect_error("listen:\n  - port: 8080\n    host: ''\nscript: app.lua\n",
                 "3:11: listen[0].host: must not be empty");
}

/* listen[].path as a list with prefixes, listen[].protocols and
 * handshake.origins, and their errors at the offending entry. */
static void test_handshake_lists(void)
{
    scratch s;
    char err[1024];
    scratch_open(&s);
    mg_config *cfg = scratch_load(&s,
                                  "listen:\n  - port: 8080\n    path: [/ws, /push, \"/api/*\"]\n"
                                  "    protocols: [mqtt, v12.stomp]\nscript: app.lua\n"
                                  "handshake:\n  origins: [https://a.example.com, "
                                  "\"https://*.example.org\"]\n",
                                  err, sizeof err);
    CHECK(cfg != NULL);
    if (cfg) {
        CHECK(cfg->listeners[0].npaths == 3);
        CHECK_STR(cfg->listeners[0].paths[2], "/api/*");
        CHECK(cfg->listeners[0].nprotocols == 2);
        CHECK_STR(cfg->listeners[0].protocols[1], "v12.stomp");
        CHECK(cfg->norigins == 2);
        CHECK_STR(cfg->origins[1], "https://*.example.org");
    }
    config_free(cfg);
    cfg = scratch_load(&s, BASE, err, sizeof err);
    CHECK(cfg && cfg->listeners[0].npaths == 1 && cfg->listeners[0].nprotocols == 0 &&
          cfg->norigins == 0);
    config_free(cfg);
    scratch_close(&s);

    expect_error("listen:\n  - port: 8080\n    path: [/ws, ws]\nscript: app.lua\n",
                 "3:17: listen[0].path[1]: must start with '/', got 'ws'");
    expect_error("listen:\n  - port: 8080\n    path: [/ws, \"/a*/b\"]\nscript: app.lua\n",
                 "3:17: listen[0].path[1]: '*' may only end a path (a prefix such as /api/*), "
                 "got '/a*/b'");
    expect_error("listen:\n  - port: 8080\n    path: [/ws, /ws]\nscript: app.lua\n",
                 "3:17: listen[0].path[1]: '/ws' is listed twice");
    expect_error("listen:\n  - port: 8080\n    path: []\nscript: app.lua\n",
                 "3:11: listen[0].path: the list is empty");
    expect_error("listen:\n  - port: 8080\n    protocols: [chat, \"a b\"]\nscript: app.lua\n",
                 "3:23: listen[0].protocols[1]: a subprotocol name is a token (letters, digits "
                 "and !#$%&'*+-.^_`|~), got 'a b'");
    expect_error(BASE "handshake:\n  origins: [https://a.example.com/]\n",
                 "5:13: handshake.origins[0]: nothing may follow the host and port (no path, "
                 "no trailing '/'), got 'https://a.example.com/'");
    expect_error(BASE "handshake:\n  origins: [a.example.com]\n",
                 "5:13: handshake.origins[0]: expected scheme://host[:port], e.g. "
                 "https://app.example.com, got 'a.example.com'");
}

static void test_err_files(void)
{
    expect_error("listen:\n  - port: 8080\nscript: nope.lua\n",
                 "3:9: script: file not found: {dir}/nope.lua");
    expect_error("listen:\n  - port: 8080\nscript: lib/sub/nope.lua\n",
                 "3:9: script: file not found: {dir}/lib/sub/nope.lua");
    expect_error("listen:\n  - port: 8080\nscript: www\n",
                 "3:9: script: not a regular file: {dir}/www");
    expect_error("listen:\n  - port: 8080\nscript: /nonexistent/app.lua\n",
                 "3:9: script: file not found: /nonexistent/app.lua");
    expect_error(BASE "static:\n  root: nowhere\n",
                 "5:9: static.root: directory not found: {dir}/nowhere");
    expect_error(BASE "static:\n  root: app.lua\n",
                 "5:9: static.root: not a directory: {dir}/app.lua");
    expect_error("listen:\n  - port: 8443\n    tls:\n      cert: tls/missing.pem\n      key: "
                 "tls/key.pem\nscript: app.lua\n",
                 "4:13: listen[0].tls.cert: file not found: {dir}/tls/missing.pem");
    expect_error("listen:\n  - port: 8443\n    tls:\n      cert: tls/cert.pem\n      key: "
                 "tls\nscript: app.lua\n",
                 "5:12: listen[0].tls.key: not a regular file: {dir}/tls");
    if (geteuid() != 0) { /* root reads anything */
        scratch s;
        char err[1024] = "", path[PATH_MAX + 32], want[3 * PATH_MAX];
        scratch_open(&s);
        snprintf(path, sizeof path, "%s/app.lua", s.dir);
        chmod(path, 0);
        mg_config *cfg = scratch_load(&s, BASE, err, sizeof err);
        CHECK(cfg == NULL);
        snprintf(want, sizeof want, "%s:3:9: script: cannot read %s/app.lua: Permission denied",
                 s.conf, s.real);
        CHECK_STR(err, want);
        config_free(cfg);
        scratch_close(&s);
    }
}

static void test_err_tls_pair(void)
{
    expect_error("listen:\n  - port: 8443\n    tls:\n      cert: tls/cert.pem\nscript: app.lua\n",
                 "4:7: listen[0].tls: missing required key 'key'");
    expect_error("listen:\n  - port: 8443\n    tls:\n      key: tls/key.pem\nscript: app.lua\n",
                 "4:7: listen[0].tls: missing required key 'cert'");
    expect_error("listen:\n  - port: 8443\n    tls:\nscript: app.lua\n",
                 "3:9: listen[0].tls: missing required key 'cert'");
    expect_error("listen:\n  - port: 8443\n    tls: yes\nscript: app.lua\n",
                 "3:10: listen[0].tls: expected a map, got 'yes'");
}

static void test_err_text_ping_pair(void)
{
    expect_error(BASE "heartbeat:\n  text_ping: Ping\n",
                 "5:14: heartbeat.text_ping: set without heartbeat.text_pong (set both or "
                 "neither)");
    expect_error(BASE "heartbeat:\n  interval: 5s\n  text_pong: Pong\n",
                 "6:14: heartbeat.text_pong: set without heartbeat.text_ping (set both or "
                 "neither)");
    expect_error(BASE "heartbeat:\n  text_ping: \"\"\n  text_pong: Pong\n",
                 "5:14: heartbeat.text_ping: must not be empty");
}

static void test_err_enums(void)
{
    expect_error(BASE "limits:\n  slow_consumer: kill\n",
                 "5:18: limits.slow_consumer: must be close or drop, got 'kill'");
    expect_error(BASE "names:\n  duplicate: keep\n",
                 "5:14: names.duplicate: must be replace or reject, got 'keep'");
    expect_error(BASE "log:\n  level: verbose\n",
                 "5:10: log.level: must be debug, info, warn or error, got 'verbose'");
    expect_error(BASE "log:\n  format: xml\n", "5:11: log.format: must be text or json, got 'xml'");
    expect_error(BASE "io:\n  uring: on\n", "5:10: io.uring: must be auto or off, got 'on'");
    expect_error(BASE "log:\n  level: INFO\n",
                 "5:10: log.level: must be debug, info, warn or error, got 'INFO'");
}

static void test_err_types(void)
{
    expect_error(BASE "heartbeat: 5s\n", "4:12: heartbeat: expected a map, got '5s'");
    expect_error(BASE "limits: [1, 2]\n", "4:9: limits: expected a map, got a list");
    expect_error(BASE "heartbeat:\n  interval: {a: 1}\n",
                 "5:13: heartbeat.interval: expected a duration such as 30s, got a map");
    expect_error(BASE "heartbeat:\n  interval: [5s]\n",
                 "5:13: heartbeat.interval: expected a duration such as 30s, got a list");
    expect_error(BASE "log:\n  level:\n",
                 "5:9: log.level: expected debug, info, warn or error, got nothing");
    expect_error(BASE "limits:\n  max_connections: ~\n",
                 "5:20: limits.max_connections: expected an integer, got nothing");
    expect_error("listen:\n  - port: 8080\nscript: [a.lua]\n",
                 "3:9: script: expected a file name, got a list");
    expect_error("listen:\n  - port: 8080\nscript:\n",
                 "3:8: script: expected a file name, got nothing");
}

static void test_err_duplicate_keys(void)
{
    expect_error(BASE "script: app.lua\n", "4:1: duplicate key 'script' (first set at line 3)");
    expect_error(BASE "heartbeat:\n  interval: 5s\n  timeout: 9s\n  interval: 6s\n",
                 "7:3: duplicate key 'interval' in heartbeat (first set at line 5)");
    expect_error("listen:\n  - port: 8080\n    port: 8081\nscript: app.lua\n",
                 "3:5: duplicate key 'port' in listen[0] (first set at line 2)");
    /* the first repeat in file order is the one reported */
    expect_error(BASE "log: {level: info, format: text, format: json, level: warn}\n",
                 "4:34: duplicate key 'format' in log (first set at line 4)");
}

static void test_err_syntax(void)
{
    expect_error(BASE "heartbeat:\n  interval: 5s\n bad: [\n",
                 "6:2: YAML syntax error: did not find expected key (while parsing a block "
                 "mapping at line 1)");
    expect_error(BASE "log: level: info\n",
                 "4:11: YAML syntax error: mapping values are not allowed in this context");
    expect_error(BASE "app: \"abc\n",
                 "5:1: YAML syntax error: found unexpected end of stream (while scanning a "
                 "quoted scalar at line 4)");
    expect_error(BASE "limits:\n\tmax_connections: 5\n",
                 "5:1: YAML syntax error: found character that cannot start any token (tabs "
                 "cannot indent YAML; use spaces)");
    expect_error(BASE "app: *nope\n", "4:6: YAML syntax error: found undefined alias");
    expect_error(BASE "app: \"\xff\"\n", "4:7: invalid YAML text: invalid leading UTF-8 octet");
    /* a syntax error in a second document is still a syntax error */
    expect_error(BASE "---\nx: [\n",
                 "6:1: YAML syntax error: did not find expected node content (while parsing a "
                 "flow node at line 6)");
}

static void test_err_documents(void)
{
    expect_error(BASE "---\nfoo: 1\n", "4:1: only one YAML document is allowed");
    expect_error("", "1:1: the file is empty (it needs at least 'listen' and 'script')");
    expect_error("# nothing but a comment\n",
                 "1:1: the file is empty (it needs at least 'listen' and 'script')");
    expect_error("hello\n", "1:1: expected a map of settings at the top, got 'hello'");
    expect_error("- port: 8080\n", "1:1: expected a map of settings at the top, got a list");
}

static void test_err_config_file(void)
{
    char err[1024] = "";
    mg_config *cfg = config_load("/nonexistent/moongate.yaml", err, sizeof err);
    CHECK(cfg == NULL);
    CHECK_STR(err, "/nonexistent/moongate.yaml: cannot open: No such file or directory");

    scratch s;
    scratch_open(&s);
    cfg = config_load(s.dir, err, sizeof err);
    CHECK(cfg == NULL);
    char want[256];
    snprintf(want, sizeof want, "%s: not a regular file", s.dir);
    CHECK_STR(err, want);

    /* a tiny error buffer truncates but never overflows; none at all is fine */
    char small[8];
    cfg = scratch_load(&s, "listen: 5\n", small, sizeof small);
    CHECK(cfg == NULL && strlen(small) == sizeof small - 1);
    cfg = scratch_load(&s, "listen: 5\n", NULL, 0);
    CHECK(cfg == NULL);
    scratch_close(&s);
}

/* ----------------------------------------------- configs built from flags */

static void test_validate(void)
{
    scratch s;
    char err[1024] = "", buf[PATH_MAX + 32];
    mg_config *cfg = config_new_defaults();

    CHECK(config_validate(cfg, err, sizeof err) != 0);
    CHECK_STR(err, "no listener configured (use --listen HOST:PORT or 'listen:' in the config)");
    CHECK(config_set_listen(cfg, "127.0.0.1:8080", err, sizeof err) == 0);
    CHECK(config_validate(cfg, err, sizeof err) != 0);
    CHECK_STR(err, "no script configured (use --script FILE or 'script:' in the config)");

    cfg->script = strdup("/nonexistent/app.lua");
    CHECK(config_validate(cfg, err, sizeof err) != 0);
    CHECK_STR(err, "script: file not found: /nonexistent/app.lua");

    scratch_open(&s);
    free(cfg->script);
    cfg->script = strdup(in_dir(&s, "app.lua", buf, sizeof buf));
    CHECK(config_validate(cfg, err, sizeof err) == 0);
    CHECK_STR(err, "");

    cfg->text_ping = strdup("Ping");
    CHECK(config_validate(cfg, err, sizeof err) != 0);
    CHECK_STR(err, "heartbeat: text_ping and text_pong must be set together (both or neither)");
    cfg->text_pong = strdup("Pong");
    CHECK(config_validate(cfg, err, sizeof err) == 0);

    cfg->listeners[0].tls_cert = strdup(in_dir(&s, "tls/cert.pem", buf, sizeof buf));
    CHECK(config_validate(cfg, err, sizeof err) != 0);
    CHECK_STR(err, "listen[0].tls: needs both cert and key");
    cfg->listeners[0].tls_key = strdup(in_dir(&s, "tls/nokey.pem", buf, sizeof buf));
    CHECK(config_validate(cfg, err, sizeof err) != 0);
    char want[3 * PATH_MAX];
    snprintf(want, sizeof want, "listen[0].tls.key: file not found: %s/tls/nokey.pem", s.real);
    CHECK_STR(err, want);
    free(cfg->listeners[0].tls_key);
    cfg->listeners[0].tls_key = strdup(in_dir(&s, "tls/key.pem", buf, sizeof buf));
    CHECK(config_validate(cfg, err, sizeof err) == 0);

    cfg->static_root = strdup(in_dir(&s, "app.lua", buf, sizeof buf));
    CHECK(config_validate(cfg, err, sizeof err) != 0);
    snprintf(want, sizeof want, "static.root: not a directory: %s/app.lua", s.real);
    CHECK_STR(err, want);
    free(cfg->static_root);
    cfg->static_root = NULL;

    cfg->hook_budget_ms = 0;
    CHECK(config_validate(cfg, err, sizeof err) != 0);
    CHECK_STR(err, "lua.hook_budget: must be 1ms..60s");
    cfg->hook_budget_ms = 250;

    cfg->listeners[0].port = 0;
    CHECK(config_validate(cfg, err, sizeof err) != 0);
    CHECK_STR(err, "listen[0].port: must be 1..65535");
    cfg->listeners[0].port = 8080;
    CHECK(config_validate(cfg, err, sizeof err) == 0);

    config_free(cfg);
    scratch_close(&s);
}

static void test_set_listen(void)
{
    char err[1024] = "";
    mg_config *cfg = config_new_defaults();

    CHECK(config_set_listen(cfg, "0.0.0.0:9000", err, sizeof err) == 0);
    CHECK(cfg->nlisteners == 1);
    CHECK_STR(cfg->listeners[0].host, "0.0.0.0");
    CHECK(cfg->listeners[0].port == 9000);
    CHECK_STR(cfg->listeners[0].paths[0], "/");

    CHECK(config_set_listen(cfg, "[::1]:8080", err, sizeof err) == 0);
    CHECK(cfg->nlisteners == 1); /* replaced, not added */
    CHECK_STR(cfg->listeners[0].host, "::1");
    CHECK(cfg->listeners[0].port == 8080);

    CHECK(config_set_listen(cfg, "8081", err, sizeof err) == 0);
    CHECK_STR(cfg->listeners[0].host, "127.0.0.1");
    CHECK(cfg->listeners[0].port == 8081);
    CHECK(config_set_listen(cfg, ":8082", err, sizeof err) == 0);
    CHECK_STR(cfg->listeners[0].host, "127.0.0.1");
    CHECK(cfg->listeners[0].port == 8082);
    CHECK(config_set_listen(cfg, "localhost:65535", err, sizeof err) == 0);
    CHECK_STR(cfg->listeners[0].host, "localhost");
    CHECK(cfg->listeners[0].port == 65535);

    static const struct {
        const char *in, *msg;
    } bad[] = {
        {"host:0", "invalid port in listen address 'host:0' (must be 1..65535)"},
        {"host:65536", "invalid port in listen address 'host:65536' (must be 1..65535)"},
        {"host:99999999999999999999999",
         "invalid port in listen address 'host:99999999999999999999999' (must be 1..65535)"},
        {"host:http", "invalid listen address 'host:http' (expected HOST:PORT, e.g. "
                      "127.0.0.1:8080)"},
        {"host:", "invalid listen address 'host:' (expected HOST:PORT, e.g. 127.0.0.1:8080)"},
        {"host", "invalid listen address 'host' (expected HOST:PORT, e.g. 127.0.0.1:8080)"},
        {"", "invalid listen address '' (expected HOST:PORT, e.g. 127.0.0.1:8080)"},
        {"[::1]8080", "invalid listen address '[::1]8080' (expected HOST:PORT, e.g. "
                      "127.0.0.1:8080)"},
        {"[::1", "invalid listen address '[::1' (expected HOST:PORT, e.g. 127.0.0.1:8080)"},
        {"::1:80", "invalid listen address '::1:80' (write IPv6 addresses as [ADDR]:PORT)"},
        {"host:-80", "invalid listen address 'host:-80' (expected HOST:PORT, e.g. "
                     "127.0.0.1:8080)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(config_set_listen(cfg, bad[i].in, err, sizeof err) != 0);
        CHECK_STR(err, bad[i].msg);
    }
    /* failures leave the listener alone */
    CHECK_STR(cfg->listeners[0].host, "localhost");
    CHECK(cfg->listeners[0].port == 65535);
    config_free(cfg);

    /* Overriding a file's first listener keeps its path and TLS and the
     * other listeners. */
    scratch s;
    scratch_open(&s);
    cfg = scratch_load(&s,
                       "listen:\n"
                       "  - port: 8443\n"
                       "    path: /ws\n"
                       "    tls: {cert: tls/cert.pem, key: tls/key.pem}\n"
                       "  - port: 8080\n"
                       "script: app.lua\n",
                       err, sizeof err);
    CHECK(cfg != NULL);
    if (cfg) {
        CHECK(config_set_listen(cfg, "0.0.0.0:9443", err, sizeof err) == 0);
        CHECK(cfg->nlisteners == 2);
        CHECK_STR(cfg->listeners[0].host, "0.0.0.0");
        CHECK(cfg->listeners[0].port == 9443);
        CHECK_STR(cfg->listeners[0].paths[0], "/ws");
        CHECK(cfg->listeners[0].tls_cert != NULL && cfg->listeners[0].tls_key != NULL);
        CHECK(cfg->listeners[1].port == 8080);
        CHECK(config_validate(cfg, err, sizeof err) == 0);
        /* ... and clashing with the second one is caught */
        CHECK(config_set_listen(cfg, "127.0.0.1:8080", err, sizeof err) == 0);
        CHECK(config_validate(cfg, err, sizeof err) != 0);
        CHECK_STR(err, "listen[1]: same address 127.0.0.1:8080 as listen[0]");
    }
    config_free(cfg);
    scratch_close(&s);
}

/* A file nested past CONFIG_MAX_DEPTH (128) is refused where the 129th
 * level opens, before libyaml builds it (50,000 levels took seconds);
 * 128 levels outside app: still load up to the keys' own checks. */
static void test_err_nesting(void)
{
    static char yaml[200000];
    int n = snprintf(yaml, sizeof yaml, "listen:\n  - port: 8080\nscript: app.lua\nx: ");
    for (int i = 0; i < 50000; i++)
        yaml[n++] = '[';
    yaml[n] = '\0';
    expect_error(yaml, "4:131: nested too deeply (more than 128 levels)");

    n = snprintf(yaml, sizeof yaml, "listen:\n  - port: 8080\nscript: app.lua\napp:\n");
    for (int i = 0; i < 200; i++)
        n += snprintf(yaml + n, sizeof yaml - (size_t)n, "%*s- \n", 2 + 2 * i, "");
    expect_error(yaml, "132:257: nested too deeply (more than 128 levels)");
}

TEST_MAIN("config", T(test_defaults), T(test_err_nesting), T(test_duration_units),
          T(test_size_units), T(test_minimal_config), T(test_full_config),
          T(test_empty_sections_quotes_aliases), T(test_relative_paths), T(test_shipped_config),
          T(test_admin_section), T(test_broker_section), T(test_app_tree),
          T(test_app_scalar_and_null), T(test_app_errors), T(test_err_unknown_keys),
          T(test_control_keys), T(test_err_durations), T(test_err_sizes), T(test_err_integers),
          T(test_err_ports), T(test_err_missing_required), T(test_err_listen_shape),
          T(test_err_files), T(test_err_tls_pair), T(test_handshake_lists),
          T(test_err_text_ping_pair), T(test_err_enums), T(test_err_types),
          T(test_err_duplicate_keys), T(test_err_syntax), T(test_err_documents),
          T(test_err_config_file), T(test_validate), T(test_set_listen))
