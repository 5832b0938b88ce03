// SPDX-License-Identifier: GPL-2.0-or-later
// Closed-loop latency probe: sends the queries of a dnsperf-style file one at a
// time (COUNT of them), waits for each answer (or 200 ms), and prints
// "p50_us p99_us answered sent".   usage: latency SERVER QUERYFILE COUNT
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: latency SERVER QUERYFILE COUNT\n"); return 2; }
    int count = atoi(argv[3]);
    char (*names)[256] = calloc(100000, 256);
    int types[100000], loaded = 0;
    FILE *file = fopen(argv[2], "r");
    char line[512];
    while (file && loaded < 100000 && fgets(line, sizeof(line), file)) {
        char type[16] = "A";
        if (sscanf(line, "%255s %15s", names[loaded], type) >= 1) {
            types[loaded++] = strcmp(type, "AAAA") == 0 ? 28 : 1;
        }
    }
    if (loaded == 0) { fprintf(stderr, "no queries\n"); return 1; }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in server = {.sin_family = AF_INET, .sin_port = htons(53)};
    inet_pton(AF_INET, argv[1], &server.sin_addr);
    connect(fd, (struct sockaddr *)&server, sizeof(server));
    struct timeval timeout = {0, 200000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    double *samples = malloc(sizeof(double) * (size_t)count);
    int answered = 0;
    unsigned char query[512], reply[1500];
    for (int i = 0; i < count; i++) {
        const char *name = names[i % loaded];
        size_t n = 12;
        memset(query, 0, 12);
        query[0] = (unsigned char)(i >> 8); query[1] = (unsigned char)i; query[2] = 1; query[5] = 1;
        for (const char *label = name; *label;) {
            const char *dot = strchr(label, '.');
            size_t length = dot ? (size_t)(dot - label) : strlen(label);
            query[n++] = (unsigned char)length;
            memcpy(query + n, label, length);
            n += length;
            label += length + (dot ? 1 : 0);
        }
        query[n++] = 0; query[n++] = 0; query[n++] = (unsigned char)types[i % loaded]; query[n++] = 0; query[n++] = 1;
        struct timespec start, end;
        clock_gettime(CLOCK_MONOTONIC, &start);
        send(fd, query, n, 0);
        for (;;) {  // skip stale answers to earlier, timed-out queries
            ssize_t got = recv(fd, reply, sizeof(reply), 0);
            if (got < 0) break;
            if (got >= 2 && reply[0] == query[0] && reply[1] == query[1]) {
                clock_gettime(CLOCK_MONOTONIC, &end);
                samples[answered++] = (end.tv_sec - start.tv_sec) * 1e6 + (end.tv_nsec - start.tv_nsec) / 1e3;
                break;
            }
        }
    }
    qsort(samples, (size_t)answered, sizeof(double), compare);
    double p50 = answered ? samples[answered / 2] : 0, p99 = answered ? samples[(answered * 99) / 100] : 0;
    printf("%.1f %.1f %d %d\n", p50, p99, answered, count);
    return 0;
}
