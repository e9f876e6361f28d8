/* amqprate.c — RabbitMQ's own rate, alone: the ceiling of cluster traffic.
 *
 *   amqprate -u amqp://guest:guest@127.0.0.1:5672/ [-n 200000] [-s 64]
 *
 * One connection publishes N messages of SIZE bytes, as fast as it can and
 * without confirms, to a direct exchange, routed to an exclusive queue
 * that a second connection (its own thread) consumes without acks: the
 * path a cluster message takes between two members (cluster.c).  Prints
 * one JSON line: messages/s from the first publish to the last delivery,
 * and how many were delivered (all of them, or the run says so).  Bounded:
 * the consumer gives up 30 s after the last publish. */
#define _GNU_SOURCE
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "amqprate: %s\n", what);
    exit(1);
}

static amqp_connection_state_t open_conn(const char *url)
{
    struct amqp_connection_info info;
    char *u = strdup(url);
    if (!u || amqp_parse_url(u, &info) != AMQP_STATUS_OK)
        die("bad url");
    amqp_connection_state_t c = amqp_new_connection();
    amqp_socket_t *s = amqp_tcp_socket_new(c);
    if (!s || amqp_socket_open(s, info.host, info.port) != AMQP_STATUS_OK)
        die("cannot connect");
    amqp_rpc_reply_t r = amqp_login(c, *info.vhost ? info.vhost : "/", 0, 131072, 0,
                                    AMQP_SASL_METHOD_PLAIN, info.user, info.password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL)
        die("login failed");
    amqp_channel_open(c, 1);
    if (amqp_get_rpc_reply(c).reply_type != AMQP_RESPONSE_NORMAL)
        die("channel.open failed");
    free(u);
    return c;
}

struct run {
    amqp_connection_state_t cons;
    long n, got;
    double t_last;
};

static void *consume(void *arg)
{
    struct run *r = arg;
    struct timeval tv = {1, 0};
    double idle_since = now_s();
    while (r->got < r->n && now_s() - idle_since < 30) {
        amqp_envelope_t env;
        amqp_maybe_release_buffers(r->cons);
        amqp_rpc_reply_t res = amqp_consume_message(r->cons, &env, &tv, 0);
        if (res.reply_type != AMQP_RESPONSE_NORMAL)
            continue;
        r->got++;
        r->t_last = now_s();
        idle_since = r->t_last;
        amqp_destroy_envelope(&env);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    const char *url = NULL;
    long n = 200000;
    size_t size = 64;
    int opt;
    while ((opt = getopt(argc, argv, "u:n:s:")) != -1) {
        if (opt == 'u')
            url = optarg;
        else if (opt == 'n')
            n = atol(optarg);
        else if (opt == 's')
            size = (size_t)atol(optarg);
        else
            die("usage: amqprate -u URL [-n COUNT] [-s SIZE]");
    }
    if (!url || n < 1 || size < 1 || size > (1 << 20))
        die("usage: amqprate -u URL [-n COUNT] [-s SIZE]");

    char ex[64];
    snprintf(ex, sizeof(ex), "amqprate.%d", (int)getpid());
    struct run r = {.cons = open_conn(url), .n = n};
    amqp_connection_state_t pub = open_conn(url);
    amqp_exchange_declare(pub, 1, amqp_cstring_bytes(ex), amqp_cstring_bytes("direct"), 0, 0, 1,
                          0, amqp_empty_table);
    if (amqp_get_rpc_reply(pub).reply_type != AMQP_RESPONSE_NORMAL)
        die("exchange.declare failed");
    amqp_queue_declare_ok_t *q =
        amqp_queue_declare(r.cons, 1, amqp_empty_bytes, 0, 0, 1, 1, amqp_empty_table);
    if (!q)
        die("queue.declare failed");
    amqp_bytes_t qname = amqp_bytes_malloc_dup(q->queue);
    amqp_queue_bind(r.cons, 1, qname, amqp_cstring_bytes(ex), amqp_cstring_bytes("k"),
                    amqp_empty_table);
    amqp_basic_consume(r.cons, 1, qname, amqp_empty_bytes, 0, 1, 1, amqp_empty_table);
    if (amqp_get_rpc_reply(r.cons).reply_type != AMQP_RESPONSE_NORMAL)
        die("consume failed");

    pthread_t th;
    pthread_create(&th, NULL, consume, &r);
    char *body = malloc(size);
    memset(body, 'x', size);
    amqp_bytes_t b = {size, body};
    double t0 = now_s();
    for (long i = 0; i < n; i++)
        if (amqp_basic_publish(pub, 1, amqp_cstring_bytes(ex), amqp_cstring_bytes("k"), 0, 0,
                               NULL, b) != AMQP_STATUS_OK)
            die("publish failed");
    double t_pub = now_s();
    pthread_join(th, NULL);
    double t = r.t_last > t0 ? r.t_last - t0 : 1e-9;
    printf("{\"messages\":%ld,\"delivered\":%ld,\"size\":%zu,\"publish_s\":%.3f,\"total_s\":%.3f,"
           "\"msgs_per_s\":%.0f}\n",
           n, r.got, size, t_pub - t0, t, (double)r.got / t);
    amqp_connection_close(pub, AMQP_REPLY_SUCCESS);
    amqp_connection_close(r.cons, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(pub);
    amqp_destroy_connection(r.cons);
    amqp_bytes_free(qname);
    free(body);
    return r.got == n ? 0 : 1;
}
