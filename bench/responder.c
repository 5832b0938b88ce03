// SPDX-License-Identifier: GPL-2.0-or-later
// The benchmark's upstream: answers every DNS query on ADDRESS:53 with one A
// record (203.0.113.7), in recvmmsg/sendmmsg batches, so that the resolver is
// never the bottleneck.   usage: responder ADDRESS
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64
static volatile sig_atomic_t running = 1;
static void stop(int signal) { (void)signal; running = 0; }

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: responder ADDRESS\n"); return 2; }
    signal(SIGTERM, stop);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(53)};
    inet_pton(AF_INET, argv[1], &address.sin_addr);
    int size = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
    if (bind(fd, (struct sockaddr *)&address, sizeof(address)) < 0) { perror("bind"); return 1; }
    struct timeval timeout = {0, 250000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    static unsigned char buffers[BATCH][1500];
    struct mmsghdr messages[BATCH];
    struct iovec vectors[BATCH];
    struct sockaddr_in peers[BATCH];
    printf("ready\n");
    fflush(stdout);
    while (running) {
        for (int i = 0; i < BATCH; i++) {
            vectors[i] = (struct iovec){buffers[i], 1400};
            memset(&messages[i], 0, sizeof(messages[i]));
            messages[i].msg_hdr = (struct msghdr){.msg_name = &peers[i], .msg_namelen = sizeof(peers[i]),
                                                  .msg_iov = &vectors[i], .msg_iovlen = 1};
        }
        int n = recvmmsg(fd, messages, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0) continue;
        int out = 0;
        for (int i = 0; i < n; i++) {
            unsigned char *m = buffers[i];
            size_t length = messages[i].msg_len;
            if (length < 17 || (m[2] & 0x80)) continue;
            size_t q = 12;  // skip the question name
            while (q < length && m[q] != 0 && m[q] < 64) q += m[q] + 1;
            if (q + 5 > length) continue;
            size_t end = q + 5;  // name end + type + class
            m[2] = 0x80 | (m[2] & 0x79); m[3] = 0x80;  // QR, RD kept, RA
            m[6] = 0; m[7] = 1; m[8] = 0; m[9] = 0; m[10] = 0; m[11] = 0;
            unsigned char answer[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 7};
            memcpy(m + end, answer, sizeof(answer));
            vectors[i].iov_len = end + sizeof(answer);
            messages[out] = messages[i];
            messages[out].msg_hdr.msg_iov = &vectors[i];
            out++;
        }
        if (out > 0) sendmmsg(fd, messages, (unsigned)out, 0);
    }
    close(fd);
    return 0;
}
