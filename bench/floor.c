// SPDX-License-Identifier: GPL-2.0-or-later
// The floor for bench/: the cheapest useful NFQUEUE program. Accepts every
// packet of one queue, with what dnsgate's fast path uses too: libmnl,
// recvmmsg batches, one NFQNL_MSG_VERDICT_BATCH per batch, a 512-byte copy
// range. Runs until SIGTERM.   usage: floor QUEUE
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#define BATCH 64
#define DATAGRAM (512 + 512)

static volatile sig_atomic_t running = 1;
static void stop(int signal) { (void)signal; running = 0; }

static int last_id(const struct nlmsghdr *nlh, void *data) {
    struct nlattr *attr[NFQA_MAX + 1] = {0};
    if (nfq_nlmsg_parse(nlh, attr) < 0 || attr[NFQA_PACKET_HDR] == NULL) return MNL_CB_OK;
    struct nfqnl_msg_packet_hdr *hdr = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
    *(uint32_t *)data = ntohl(hdr->packet_id);
    return MNL_CB_OK;
}

static void config(struct mnl_socket *nl, struct nlmsghdr *nlh) {
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) { perror("config"); exit(1); }
}

int main(int argc, char **argv) {
    uint16_t queue = argc > 1 ? (uint16_t)atoi(argv[1]) : 0;
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
    if (nl == NULL || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) { perror("netlink"); return 1; }
    uint32_t portid = mnl_socket_get_portid(nl);
    char buffer[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = nfq_nlmsg_put(buffer, NFQNL_MSG_CONFIG, queue);
    nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
    config(nl, nlh);
    nlh = nfq_nlmsg_put(buffer, NFQNL_MSG_CONFIG, queue);
    nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, 512);
    config(nl, nlh);
    nlh = nfq_nlmsg_put(buffer, NFQNL_MSG_CONFIG, queue);
    mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO));
    mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO));
    config(nl, nlh);
    int one = 1, size = 8 << 20;
    setsockopt(mnl_socket_get_fd(nl), SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof(one));
    setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
    struct timeval timeout = {0, 250000};
    setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));

    static char datagrams[BATCH][DATAGRAM];
    struct mmsghdr messages[BATCH];
    struct iovec vectors[BATCH];
    for (int i = 0; i < BATCH; i++) {
        vectors[i] = (struct iovec){datagrams[i], DATAGRAM};
        memset(&messages[i], 0, sizeof(messages[i]));
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
    }
    unsigned long long packets = 0;
    while (running) {
        int n = recvmmsg(mnl_socket_get_fd(nl), messages, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0) continue;
        uint32_t id = 0;
        for (int i = 0; i < n; i++) mnl_cb_run(datagrams[i], messages[i].msg_len, 0, portid, last_id, &id);
        nlh = nfq_nlmsg_put(buffer, NFQNL_MSG_VERDICT_BATCH, queue);
        nfq_nlmsg_verdict_put(nlh, (int)id, NF_ACCEPT);
        mnl_socket_sendto(nl, nlh, nlh->nlmsg_len);
        packets += (unsigned long long)n;
    }
    fprintf(stderr, "floor: %llu packets\n", packets);
    mnl_socket_close(nl);
    return 0;
}
