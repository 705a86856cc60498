/* Open-loop HTTP/1.1 load generator: request k is due at start + k/rate, whatever happened to
 * the earlier ones, and its latency counts from that due time (so a stalled server is charged
 * for every request it delayed, which a closed loop like wrk hides: coordinated omission).
 *
 * One thread, epoll, a timerfd for the schedule, many keep-alive connections with at most one
 * request in flight each; a due request waits for a free connection and its wait counts.
 * Responses need Content-Length (what uvicorn sends for these endpoints).
 *
 *   openloop HOST PORT RATE SECONDS CONNECTIONS REQUEST_FILE [WARMUP_SECONDS]
 *
 * REQUEST_FILE holds raw requests, each as "<length>\n<bytes>", used round-robin.
 * Prints one JSON object: rate, throughput, counts, latency percentiles in milliseconds.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define BUF 65536
#define MAX_REQUESTS 4096

typedef struct {
    int fd;
    int busy;          /* a request is in flight */
    long req;          /* index of the request in flight */
    size_t sent;       /* bytes of it written so far */
    const char *data;  /* the raw request */
    size_t len;
    char in[BUF];
    size_t have;       /* head bytes buffered in `in` (the body is counted, not kept) */
    long got;          /* response bytes received so far */
    long need;         /* total response bytes expected once headers are parsed, else -1 */
    int status;
} conn_t;

static struct sockaddr_in addr;
static int ep;
static char *reqs[MAX_REQUESTS];
static size_t lens[MAX_REQUESTS];
static int nreqs;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int open_conn(conn_t *c, int index) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        close(c->fd);
        return -1;
    }
    c->busy = 0, c->have = 0, c->got = 0, c->need = -1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.u32 = (uint32_t)index};
    return epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void reopen(conn_t *c, int index) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (open_conn(c, index) < 0) {
        perror("reconnect");
        exit(2);
    }
}

static int flush(conn_t *c) { /* 0 done or would block, -1 error */
    while (c->busy && c->sent < c->len) {
        ssize_t n = write(c->fd, c->data + c->sent, c->len - c->sent);
        if (n < 0) return (errno == EAGAIN || errno == ENOTCONN) ? 0 : -1;
        c->sent += (size_t)n;
    }
    return 0;
}

/* Parse the status line and Content-Length once the headers are complete. */
static void parse_head(conn_t *c) {
    char *end = memmem(c->in, c->have, "\r\n\r\n", 4);
    if (!end) return;
    size_t head = (size_t)(end - c->in) + 4;
    c->status = atoi(c->in + 9);
    long length = 0;
    for (char *p = c->in; p < end; p++) {
        if ((*p == 'c' || *p == 'C') && strncasecmp(p, "content-length:", 15) == 0) {
            length = atol(p + 15);
            break;
        }
    }
    c->need = (long)head + length;
}

static int cmp(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double pct(int64_t *v, long n, double p) {
    if (n == 0) return 0;
    long i = (long)(p * (double)n);
    if (i >= n) i = n - 1;
    return (double)v[i] / 1e6;
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: %s HOST PORT RATE SECONDS CONNECTIONS REQUEST_FILE [WARMUP]\n",
                argv[0]);
        return 1;
    }
    double rate = atof(argv[3]), seconds = atof(argv[4]);
    int nconn = atoi(argv[5]);
    double warmup = argc > 7 ? atof(argv[7]) : 1.0;
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &addr.sin_addr);

    FILE *f = fopen(argv[6], "rb");
    if (!f) { perror("request file"); return 1; }
    size_t len;
    while (nreqs < MAX_REQUESTS && fscanf(f, "%zu\n", &len) == 1) {
        reqs[nreqs] = malloc(len);
        if (fread(reqs[nreqs], 1, len, f) != len) { fprintf(stderr, "short request\n"); return 1; }
        lens[nreqs++] = len;
    }
    fclose(f);
    if (!nreqs) { fprintf(stderr, "no requests\n"); return 1; }

    long total = (long)((warmup + seconds) * rate);
    if (total < 2) { fprintf(stderr, "rate x seconds gives no requests\n"); return 1; }
    int64_t *due = malloc(sizeof(int64_t) * (size_t)total);
    int64_t *lat = malloc(sizeof(int64_t) * (size_t)total);
    int *code = calloc((size_t)total, sizeof(int));
    for (long k = 0; k < total; k++) lat[k] = -1;

    ep = epoll_create1(0);
    conn_t *conns = calloc((size_t)nconn, sizeof(conn_t));
    for (int i = 0; i < nconn; i++)
        if (open_conn(&conns[i], i) < 0) { perror("connect"); return 2; }
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct epoll_event tev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);

    int64_t start = now_ns() + 100000000LL; /* let the connections open */
    double step = 1e9 / rate;
    for (long k = 0; k < total; k++) due[k] = start + (int64_t)((double)k * step);
    int64_t stop = due[total - 1] + 5000000000LL; /* 5 s for stragglers, then give up */

    long next = 0, done = 0, reconnects = 0;
    /* free connections, first in first out: each is used every nconn/rate seconds, so none
     * sits idle long enough for the server's keep-alive timeout to close it */
    int *idle = malloc(sizeof(int) * (size_t)nconn), head = 0, nidle = 0;
#define PUSH(i) (idle[(head + nidle++) % nconn] = (i))
    for (int i = 0; i < nconn; i++) PUSH(i);
    struct epoll_event events[256];

    while (done < total && now_ns() < stop) {
        int64_t t = now_ns();
        while (next < total && due[next] <= t && nidle > 0) { /* dispatch what is due */
            conn_t *c = &conns[idle[head]];
            head = (head + 1) % nconn, nidle--;
            c->busy = 1, c->req = next, c->sent = 0, c->have = 0, c->got = 0, c->need = -1;
            c->data = reqs[next % nreqs], c->len = lens[next % nreqs];
            next++;
            if (flush(c) < 0) { /* the request stays unanswered: counted as an error */
                done++, reconnects++;
                reopen(c, (int)(c - conns));
                PUSH((int)(c - conns));
            }
        }
        if (next < total && nidle > 0) { /* sleep until the next due time */
            int64_t wait = due[next] - now_ns();
            if (wait < 1000) wait = 1000;
            struct itimerspec its = {.it_value = {wait / 1000000000LL, wait % 1000000000LL}};
            timerfd_settime(tfd, 0, &its, NULL);
        }
        int n = epoll_wait(ep, events, 256, 50);
        for (int e = 0; e < n; e++) {
            uint32_t id = events[e].data.u32;
            if (id == UINT32_MAX) { uint64_t x; ssize_t r = read(tfd, &x, sizeof x); (void)r; continue; }
            conn_t *c = &conns[id];
            if (events[e].events & EPOLLOUT) flush(c);
            if (!(events[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) continue;
            for (;;) {
                ssize_t r = read(c->fd, c->in + c->have, BUF - c->have);
                if (r < 0 && errno == EAGAIN) break;
                if (r <= 0 || !c->busy) { /* closed or unexpected data: reconnect */
                    int was_busy = c->busy;
                    reconnects++;
                    reopen(c, (int)id);
                    if (was_busy) { /* its request stays unanswered: counted as an error */
                        done++;
                        PUSH((int)id);
                    } /* an idle connection is in the free list already */
                    break;
                }
                c->have += (size_t)r, c->got += r;
                if (c->need < 0) parse_head(c);
                if (c->need < 0 && c->have == BUF) { /* no end of headers in 64 KiB */
                    reconnects++;
                    done++;
                    reopen(c, (int)id);
                    PUSH((int)id);
                    break;
                }
                if (c->need >= 0) c->have = 0; /* the body only needs counting */
                if (c->need >= 0 && c->got >= c->need) {
                    lat[c->req] = now_ns() - due[c->req];
                    code[c->req] = c->status;
                    done++;
                    c->busy = 0, c->have = 0, c->got = 0, c->need = -1;
                    PUSH((int)id);
                    break;
                }
            }
        }
    }

    /* statistics over requests due after the warm-up */
    long first = (long)(warmup * rate), measured = 0, bad = 0, lost = 0;
    int64_t *ok = malloc(sizeof(int64_t) * (size_t)total);
    int64_t last_done = 0;
    for (long k = first; k < total; k++) {
        if (lat[k] < 0) { lost++; continue; }
        if (code[k] < 200 || code[k] >= 300) bad++;
        ok[measured++] = lat[k];
        if (due[k] + lat[k] > last_done) last_done = due[k] + lat[k];
    }
    qsort(ok, (size_t)measured, sizeof(int64_t), cmp);
    double span = (double)(last_done - due[first]) / 1e9;
    double sum = 0;
    for (long i = 0; i < measured; i++) sum += (double)ok[i];
    printf("{\"rate\": %.0f, \"seconds\": %.1f, \"connections\": %d, \"sent\": %ld, "
           "\"completed\": %ld, \"throughput\": %.1f, \"non_2xx\": %ld, \"errors\": %ld, "
           "\"reconnects\": %ld, \"mean_ms\": %.3f, \"p50_ms\": %.3f, \"p90_ms\": %.3f, "
           "\"p99_ms\": %.3f, \"p999_ms\": %.3f, \"max_ms\": %.3f}\n",
           rate, seconds, nconn, total - first, measured, span > 0 ? (double)measured / span : 0,
           bad, lost, reconnects, measured ? sum / (double)measured / 1e6 : 0,
           pct(ok, measured, 0.50), pct(ok, measured, 0.90), pct(ok, measured, 0.99),
           pct(ok, measured, 0.999), measured ? (double)ok[measured - 1] / 1e6 : 0);
    return 0;
}
