// SPDX-License-Identifier: GPL-2.0-or-later
#define _GNU_SOURCE
#include "CDnsgateShims.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <poll.h>
#include <fcntl.h>
#include <unistd.h>

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sched.h>
#include <pthread.h>

#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

// Room for the netlink and nfqueue headers and attributes around a payload.
#define DG_ATTRIBUTE_ROOM 512
// One verdict message: nlmsghdr + nfgenmsg + verdict attribute, padded.
#define DG_VERDICT_MESSAGE_SIZE 64

struct dg_queue {
    struct mnl_socket *socket;
    uint32_t port_id;
    uint16_t queue_num;
    size_t datagram_size;     // copy range + attribute room
    char *buffers;            // DG_RECEIVE_BATCH datagrams of datagram_size
    struct mmsghdr messages[DG_RECEIVE_BATCH];
    struct iovec vectors[DG_RECEIVE_BATCH];
    char *verdicts;           // room for one verdict message per packet
};

static int dg_send_config(dg_queue *q, struct nlmsghdr *nlh) {
    if (mnl_socket_sendto(q->socket, nlh, nlh->nlmsg_len) < 0) return -errno;
    return 0;
}

// Sends a config message and waits for the kernel's answer to it: a bind that
// another process holds (EBUSY) must be an error, not a silent no-op. Packets
// can already arrive once bound; any read while waiting goes back to its hook
// (NF_REPEAT), which queues it again for the normal receive loop.
static int dg_send_config_acked(dg_queue *q, struct nlmsghdr *nlh, uint32_t seq) {
    nlh->nlmsg_flags |= NLM_F_ACK;
    nlh->nlmsg_seq = seq;
    if (mnl_socket_sendto(q->socket, nlh, nlh->nlmsg_len) < 0) return -errno;
    char *buffer = q->buffers;  // not yet in use: room for one whole packet message
    // Bounded by reads and by the socket's 1 s timeout on each; a flood can
    // put many packets ahead of the answer, each sent back to its hook.
    for (int reads = 0; reads < 4096; reads++) {
        ssize_t length = mnl_socket_recvfrom(q->socket, buffer, q->datagram_size);
        if (length < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
        int remaining = (int)length;
        for (struct nlmsghdr *reply = (struct nlmsghdr *)buffer; mnl_nlmsg_ok(reply, remaining);
             reply = mnl_nlmsg_next(reply, &remaining)) {
            if (reply->nlmsg_type == NLMSG_ERROR && reply->nlmsg_seq == seq) {
                const struct nlmsgerr *answer = mnl_nlmsg_get_payload(reply);
                return answer->error;  // 0: done; else a negative errno
            }
            struct nlattr *attr[NFQA_MAX + 1] = {0};
            if ((reply->nlmsg_type & 0xff) == NFQNL_MSG_PACKET && nfq_nlmsg_parse(reply, attr) >= 0 &&
                attr[NFQA_PACKET_HDR] != NULL) {
                struct nfqnl_msg_packet_hdr *hdr = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
                char verdict[DG_VERDICT_MESSAGE_SIZE * 2];
                struct nlmsghdr *message = nfq_nlmsg_put(verdict, NFQNL_MSG_VERDICT, q->queue_num);
                nfq_nlmsg_verdict_put(message, (int)ntohl(hdr->packet_id), NF_REPEAT);
                (void)mnl_socket_sendto(q->socket, message, message->nlmsg_len);
            }
        }
    }
    return -ETIMEDOUT;
}

dg_queue *dg_queue_open(uint16_t queue_num, uint32_t copy_range, uint32_t max_len,
                        int fail_open, int receive_timeout_ms, int *error, int *optional_error) {
    char config[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh;
    int rc = 0;
    dg_queue *q = calloc(1, sizeof(*q));
    if (q == NULL) { *error = -ENOMEM; return NULL; }
    q->queue_num = queue_num;
    if (copy_range == 0 || copy_range > 0xffff) copy_range = 0xffff;
    q->datagram_size = copy_range + DG_ATTRIBUTE_ROOM;
    q->buffers = malloc(q->datagram_size * DG_RECEIVE_BATCH);
    q->verdicts = malloc(DG_VERDICT_MESSAGE_SIZE * (DG_RECEIVE_BATCH + 1));
    q->socket = mnl_socket_open(NETLINK_NETFILTER);
    if (q->buffers == NULL || q->verdicts == NULL) { rc = -ENOMEM; goto fail; }
    if (q->socket == NULL) { rc = -errno; goto fail; }
    for (int i = 0; i < DG_RECEIVE_BATCH; i++) {
        q->vectors[i].iov_base = q->buffers + (size_t)i * q->datagram_size;
        q->vectors[i].iov_len = q->datagram_size;
        memset(&q->messages[i], 0, sizeof(q->messages[i]));
        q->messages[i].msg_hdr.msg_iov = &q->vectors[i];
        q->messages[i].msg_hdr.msg_iovlen = 1;
    }
    if (mnl_socket_bind(q->socket, 0, MNL_SOCKET_AUTOPID) < 0) { rc = -errno; goto fail; }
    q->port_id = mnl_socket_get_portid(q->socket);
    // Before binding: packets may arrive from the bind on, and a full socket
    // buffer must turn neither the config's answers nor later receives into errors.
    int one = 1;
    (void)setsockopt(mnl_socket_get_fd(q->socket), SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof(one));
    int receive_buffer = 8 * 1024 * 1024;
    if (setsockopt(mnl_socket_get_fd(q->socket), SOL_SOCKET, SO_RCVBUFFORCE, &receive_buffer,
                   sizeof(receive_buffer)) < 0) {
        (void)setsockopt(mnl_socket_get_fd(q->socket), SOL_SOCKET, SO_RCVBUF, &receive_buffer,
                         sizeof(receive_buffer));
    }
    // The kernel answers each config message at once; a second is plenty.
    if ((rc = dg_socket_timeouts(mnl_socket_get_fd(q->socket), 1000)) < 0) goto fail;
    *optional_error = 0;

    nlh = nfq_nlmsg_put(config, NFQNL_MSG_CONFIG, queue_num);
    nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
    if ((rc = dg_send_config_acked(q, nlh, 1)) < 0) goto fail;

    nlh = nfq_nlmsg_put(config, NFQNL_MSG_CONFIG, queue_num);
    nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, (int)copy_range);
    if ((rc = dg_send_config_acked(q, nlh, 2)) < 0) goto fail;

    // Optional settings: an older kernel without them still works, and the
    // caller warns about the first that failed.
    nlh = nfq_nlmsg_put(config, NFQNL_MSG_CONFIG, queue_num);
    nfq_nlmsg_cfg_put_qmaxlen(nlh, max_len);
    if ((rc = dg_send_config_acked(q, nlh, 3)) < 0 && *optional_error == 0) *optional_error = rc;

    nlh = nfq_nlmsg_put(config, NFQNL_MSG_CONFIG, queue_num);
    uint32_t flags = (fail_open ? NFQA_CFG_F_FAIL_OPEN : 0) | NFQA_CFG_F_GSO;
    mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(flags));
    mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO));
    if ((rc = dg_send_config_acked(q, nlh, 4)) < 0 && *optional_error == 0) *optional_error = rc;
    rc = 0;

    if ((rc = dg_socket_timeouts(mnl_socket_get_fd(q->socket), receive_timeout_ms)) < 0) goto fail;
    return q;
fail:
    *error = rc ? rc : -EIO;
    dg_queue_close(q);
    return NULL;
}

void dg_queue_close(dg_queue *q) {
    if (q == NULL) return;
    if (q->socket) mnl_socket_close(q->socket);
    free(q->buffers);
    free(q->verdicts);
    free(q);
}

struct dg_collect {
    dg_queue *queue;
    dg_packet *packets;
    int max_packets;
    int count;
    uint64_t *overflow;
};

static int dg_collect_packet(const struct nlmsghdr *nlh, void *data) {
    struct dg_collect *c = data;
    struct nlattr *attr[NFQA_MAX + 1] = {0};
    if (nfq_nlmsg_parse(nlh, attr) < 0 || attr[NFQA_PACKET_HDR] == NULL) return MNL_CB_OK;
    struct nfqnl_msg_packet_hdr *hdr = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
    uint32_t id = ntohl(hdr->packet_id);
    if (c->count >= c->max_packets) {
        (void)dg_queue_verdict(c->queue, id, DG_VERDICT_ACCEPT);
        (*c->overflow)++;
        return MNL_CB_OK;
    }
    dg_packet *p = &c->packets[c->count++];
    p->id = id;
    p->hw_protocol = ntohs(hdr->hw_protocol);
    p->mark = attr[NFQA_MARK] ? ntohl(mnl_attr_get_u32(attr[NFQA_MARK])) : 0;
    p->hw_addr_len = 0;
    if (attr[NFQA_HWADDR] && mnl_attr_get_payload_len(attr[NFQA_HWADDR]) >= sizeof(struct nfqnl_msg_packet_hw)) {
        const struct nfqnl_msg_packet_hw *hw = mnl_attr_get_payload(attr[NFQA_HWADDR]);
        uint16_t length = ntohs(hw->hw_addrlen);
        if (length <= sizeof(p->hw_addr)) {
            memcpy(p->hw_addr, hw->hw_addr, length);
            p->hw_addr_len = length;
        }
    }
    if (attr[NFQA_PAYLOAD]) {
        p->payload = mnl_attr_get_payload(attr[NFQA_PAYLOAD]);
        p->payload_len = mnl_attr_get_payload_len(attr[NFQA_PAYLOAD]);
    } else {
        p->payload = NULL;
        p->payload_len = 0;
    }
    p->packet_len = attr[NFQA_CAP_LEN] ? ntohl(mnl_attr_get_u32(attr[NFQA_CAP_LEN])) : p->payload_len;
    return MNL_CB_OK;
}

int dg_queue_receive(dg_queue *q, dg_packet *packets, int max_packets, uint64_t *overflow) {
    // The first datagram waits (SO_RCVTIMEO); the rest are taken only if already there.
    int received = recvmmsg(mnl_socket_get_fd(q->socket), q->messages, DG_RECEIVE_BATCH, MSG_WAITFORONE, NULL);
    if (received < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
        return -errno;
    }
    struct dg_collect c = {q, packets, max_packets, 0, overflow};
    for (int i = 0; i < received; i++) {
        size_t length = q->messages[i].msg_len;
        if (q->messages[i].msg_hdr.msg_flags & MSG_TRUNC) continue;  // cannot happen with datagram_size
        (void)mnl_cb_run(q->vectors[i].iov_base, length, 0, q->port_id, dg_collect_packet, &c);
    }
    return c.count;
}

/// Appends one verdict message at `*offset` of the queue's verdict buffer.
static void dg_put_verdict(dg_queue *q, size_t *offset, int type, uint32_t id, int verdict) {
    struct nlmsghdr *nlh = nfq_nlmsg_put(q->verdicts + *offset, type, q->queue_num);
    nfq_nlmsg_verdict_put(nlh, (int)id, verdict == DG_VERDICT_ACCEPT ? NF_ACCEPT : NF_DROP);
    *offset += NLMSG_ALIGN(nlh->nlmsg_len);
}

int dg_queue_verdicts(dg_queue *q, const dg_packet *packets, const uint8_t *verdicts, int count) {
    if (count <= 0) return 0;
    if (count > DG_RECEIVE_BATCH) count = DG_RECEIVE_BATCH;  // the buffer holds count + 1 messages
    size_t offset = 0;
    int pending_accept = -1;  // index of the last packet of a run of ACCEPTs not yet sent
    for (int i = 0; i < count; i++) {
        if (verdicts[i] == DG_VERDICT_ACCEPT) {
            pending_accept = i;
            continue;
        }
        // A DROP ends the run of ACCEPTs before it; both leave in order.
        if (pending_accept >= 0) {
            dg_put_verdict(q, &offset, NFQNL_MSG_VERDICT_BATCH, packets[pending_accept].id, DG_VERDICT_ACCEPT);
            pending_accept = -1;
        }
        dg_put_verdict(q, &offset, NFQNL_MSG_VERDICT, packets[i].id, DG_VERDICT_DROP);
    }
    if (pending_accept >= 0) {
        dg_put_verdict(q, &offset, NFQNL_MSG_VERDICT_BATCH, packets[pending_accept].id, DG_VERDICT_ACCEPT);
    }
    for (int attempt = 0; attempt < 3; attempt++) {
        if (mnl_socket_sendto(q->socket, q->verdicts, offset) >= 0) return 0;
        if (errno != EINTR) return -errno;
    }
    return -EINTR;
}

_Static_assert(DG_VERDICT_MESSAGE_SIZE >= NLMSG_ALIGN(sizeof(struct nlmsghdr)) + sizeof(struct nfgenmsg)
                   + NLA_ALIGN(NLA_HDRLEN + sizeof(struct nfqnl_msg_verdict_hdr)),
               "a verdict message fits its slot");

int dg_pin_current_thread(int cpu) {
    if (cpu < 0 || cpu >= DG_MAXIMUM_CPUS) return -EINVAL;
    cpu_set_t *set = CPU_ALLOC(DG_MAXIMUM_CPUS);
    if (set == NULL) return -ENOMEM;
    size_t size = CPU_ALLOC_SIZE(DG_MAXIMUM_CPUS);
    CPU_ZERO_S(size, set);
    CPU_SET_S((size_t)cpu, size, set);
    int rc = pthread_setaffinity_np(pthread_self(), size, set);
    CPU_FREE(set);
    return rc == 0 ? 0 : -rc;
}

int dg_allowed_cpus(int *cpus, int capacity) {
    cpu_set_t *set = CPU_ALLOC(DG_MAXIMUM_CPUS);
    if (set == NULL) return -ENOMEM;
    size_t size = CPU_ALLOC_SIZE(DG_MAXIMUM_CPUS);
    CPU_ZERO_S(size, set);
    // 0 names the calling thread.
    if (sched_getaffinity(0, size, set) < 0) {
        int e = errno;
        CPU_FREE(set);
        return -e;
    }
    int count = 0;
    for (int cpu = 0; cpu < DG_MAXIMUM_CPUS && count < capacity; cpu++) {
        if (CPU_ISSET_S((size_t)cpu, size, set)) cpus[count++] = cpu;
    }
    CPU_FREE(set);
    return count;
}

int dg_name_current_thread(const char *name) {
    // The kernel keeps 15 bytes and a NUL; a longer name would be refused whole.
    char shortened[16];
    strncpy(shortened, name, sizeof(shortened) - 1);
    shortened[sizeof(shortened) - 1] = 0;
    int rc = pthread_setname_np(pthread_self(), shortened);
    return rc == 0 ? 0 : -rc;
}

int dg_queue_verdict(dg_queue *q, uint32_t packet_id, int verdict) {
    char buffer[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = nfq_nlmsg_put(buffer, NFQNL_MSG_VERDICT, q->queue_num);
    nfq_nlmsg_verdict_put(nlh, (int)packet_id, verdict == DG_VERDICT_ACCEPT ? NF_ACCEPT : NF_DROP);
    for (int attempt = 0; attempt < 3; attempt++) {
        if (mnl_socket_sendto(q->socket, nlh, nlh->nlmsg_len) >= 0) return 0;
        if (errno != EINTR) return -errno;
    }
    return -EINTR;
}

int dg_raw_open(int family, uint32_t mark) {
    int fd = socket(family, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    if (fd < 0) return -errno;
    if (mark != 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int dg_raw_send(int fd, const uint8_t *packet, size_t length) {
    if (length < 1) return -EINVAL;
    struct sockaddr_storage destination;
    socklen_t destination_length;
    memset(&destination, 0, sizeof(destination));
    if ((packet[0] >> 4) == 4 && length >= 20) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&destination;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, packet + 16, 4);
        destination_length = sizeof(*sin);
    } else if ((packet[0] >> 4) == 6 && length >= 40) {
        // For IPPROTO_RAW the kernel wants the port field zero.
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&destination;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, packet + 24, 16);
        destination_length = sizeof(*sin6);
    } else {
        return -EINVAL;
    }
    for (int attempt = 0; attempt < 3; attempt++) {
        if (sendto(fd, packet, length, 0, (struct sockaddr *)&destination, destination_length) >= 0) return 0;
        if (errno != EINTR) return -errno;
    }
    return -EINTR;
}

static int dg_unix_address(const char *path, struct sockaddr_un *address) {
    memset(address, 0, sizeof(*address));
    address->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(address->sun_path)) return -ENAMETOOLONG;
    strcpy(address->sun_path, path);
    return 0;
}


int dg_unix_listen(const char *path, unsigned mode, int backlog) {
    struct sockaddr_un address;
    int rc = dg_unix_address(path, &address);
    if (rc < 0) return rc;
    // Only a socket nobody listens on is replaced: never a regular file (a
    // mistyped path), never the socket of a running daemon.
    struct stat existing;
    if (lstat(path, &existing) == 0) {
        if (!S_ISSOCK(existing.st_mode)) return -EEXIST;
        int probe = dg_unix_connect(path, 1000);
        if (probe >= 0) {
            close(probe);
            return -EADDRINUSE;
        }
        // Only a refused connection means nobody listens: a busy or slow
        // daemon (a timeout, a full backlog) keeps its socket.
        if (probe != -ECONNREFUSED && probe != -ENOENT) return -EADDRINUSE;
        if (unlink(path) < 0 && errno != ENOENT) return -errno;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (bind(fd, (struct sockaddr *)&address, sizeof(address)) < 0 || chmod(path, mode) < 0 ||
        listen(fd, backlog) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int dg_unix_unlink_if_same(const char *path, uint64_t inode) {
    struct stat current;
    if (lstat(path, &current) < 0) return -errno;
    if (!S_ISSOCK(current.st_mode) || (uint64_t)current.st_ino != inode) return -ESTALE;
    return unlink(path) < 0 ? -errno : 0;
}

int64_t dg_path_inode(const char *path) {
    struct stat current;
    return lstat(path, &current) < 0 ? -errno : (int64_t)current.st_ino;
}

int dg_unix_connect(const char *path, int timeout_ms) {
    struct sockaddr_un address;
    int rc = dg_unix_address(path, &address);
    if (rc < 0) return rc;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    // A Unix stream connect waits for room in the listener's backlog for as long
    // as the send timeout: a daemon that stopped accepting cannot hold it longer.
    if ((rc = dg_socket_timeouts(fd, timeout_ms)) < 0) {
        close(fd);
        return rc;
    }
    if (connect(fd, (struct sockaddr *)&address, sizeof(address)) < 0) {
        int e = errno;
        close(fd);
        return e == EAGAIN ? -ETIMEDOUT : -e;
    }
    return fd;
}

int dg_socket_timeouts(int fd, int milliseconds) {
    struct timeval tv = {.tv_sec = milliseconds / 1000, .tv_usec = (milliseconds % 1000) * 1000};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) return -errno;
    return 0;
}

int dg_unix_accept(int listener) {
    int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int64_t dg_peer_uid(int fd) {
    struct ucred credentials;
    socklen_t length = sizeof(credentials);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) < 0) return -errno;
    return credentials.uid;
}

void dg_return_large_blocks(size_t threshold) {
    (void)mallopt(M_MMAP_THRESHOLD, (int)threshold);
}

void dg_limit_heaps(int count) {
    (void)mallopt(M_ARENA_MAX, count);
}

void dg_trim_heap(void) {
    (void)malloc_trim(0);
}

int dg_lower_current_thread_priority(void) {
    // On Linux, PRIO_PROCESS with 0 names the calling thread.
    return setpriority(PRIO_PROCESS, 0, 10) == 0 ? 0 : -errno;
}

int dg_chown_group(const char *path, const char *group) {
    struct group entry, *found = NULL;
    char buffer[4096];
    if (getgrnam_r(group, &entry, buffer, sizeof(buffer), &found) != 0 || found == NULL) return -ENOENT;
    return chown(path, (uid_t)-1, found->gr_gid) == 0 ? 0 : -errno;
}

int dg_drop_privileges(const char *user) {
    struct passwd entry, *found = NULL;
    char buffer[4096];
    if (getpwnam_r(user, &entry, buffer, sizeof(buffer), &found) != 0 || found == NULL) return -ENOENT;
    const unsigned long kept = (1UL << CAP_NET_ADMIN) | (1UL << CAP_NET_RAW);
    // Out of the bounding set first, while CAP_SETPCAP is still there.
    for (int cap = 0; cap <= 63; cap++) {
        if (kept & (1UL << cap)) continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) return -errno;
    }
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) return -errno;
    if (setgroups(0, NULL) < 0 || setgid(found->pw_gid) < 0 || setuid(found->pw_uid) < 0) return -errno;
    if (setuid(0) == 0) return -EPERM;  // must not be able to get root back
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {{0}};
    data[0].effective = data[0].permitted = (uint32_t)kept;
    if (syscall(SYS_capset, &header, data) < 0) return -errno;
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) return -errno;
    return 0;
}

struct dg_neighbour_search {
    int family;
    const uint8_t *address;
    uint8_t *mac;
    int found;
};

static int dg_neighbour_entry(const struct nlmsghdr *nlh, void *data) {
    struct dg_neighbour_search *search = data;
    const struct ndmsg *nd = mnl_nlmsg_get_payload(nlh);
    if (nd->ndm_family != search->family || (nd->ndm_state & (NUD_INCOMPLETE | NUD_FAILED | NUD_NOARP))) {
        return MNL_CB_OK;
    }
    const struct nlattr *attr;
    const uint8_t *destination = NULL, *link = NULL;
    size_t length = search->family == AF_INET ? 4 : 16;
    mnl_attr_for_each(attr, nlh, sizeof(*nd)) {
        if (mnl_attr_get_type(attr) == NDA_DST && mnl_attr_get_payload_len(attr) == length) {
            destination = mnl_attr_get_payload(attr);
        } else if (mnl_attr_get_type(attr) == NDA_LLADDR && mnl_attr_get_payload_len(attr) == 6) {
            link = mnl_attr_get_payload(attr);
        }
    }
    if (destination && link && memcmp(destination, search->address, length) == 0) {
        memcpy(search->mac, link, 6);
        search->found = 1;
    }
    return MNL_CB_OK;
}

int dg_neighbour_mac(int family, const uint8_t *address, uint8_t *mac) {
    char buffer[MNL_SOCKET_BUFFER_SIZE];
    struct mnl_socket *socket = mnl_socket_open(NETLINK_ROUTE);
    if (socket == NULL) return -errno;
    int rc = 0;
    if (mnl_socket_bind(socket, 0, MNL_SOCKET_AUTOPID) < 0) { rc = -errno; goto done; }
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buffer);
    nlh->nlmsg_type = RTM_GETNEIGH;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    uint32_t sequence = 1;
    nlh->nlmsg_seq = sequence;
    struct ndmsg *nd = mnl_nlmsg_put_extra_header(nlh, sizeof(struct ndmsg));
    nd->ndm_family = (uint8_t)family;
    if (mnl_socket_sendto(socket, nlh, nlh->nlmsg_len) < 0) { rc = -errno; goto done; }
    uint32_t port = mnl_socket_get_portid(socket);
    struct dg_neighbour_search search = {family, address, mac, 0};
    // A dump ends with NLMSG_DONE (MNL_CB_STOP); the table is finite, and each
    // receive either makes progress or fails.
    for (;;) {
        ssize_t received = mnl_socket_recvfrom(socket, buffer, sizeof(buffer));
        if (received <= 0) { rc = received < 0 ? -errno : -EIO; goto done; }
        int result = mnl_cb_run(buffer, (size_t)received, sequence, port, dg_neighbour_entry, &search);
        if (result == MNL_CB_ERROR) { rc = -errno; goto done; }
        if (result == MNL_CB_STOP) break;
    }
    rc = search.found ? 0 : -ENOENT;
done:
    mnl_socket_close(socket);
    return rc;
}

static socklen_t dg_inet_address(int family, const uint8_t *address, uint16_t port, struct sockaddr_storage *storage) {
    memset(storage, 0, sizeof(*storage));
    if (family == AF_INET) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)storage;
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        memcpy(&v4->sin_addr, address, 4);
        return sizeof(*v4);
    }
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)storage;
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    memcpy(&v6->sin6_addr, address, 16);
    return sizeof(*v6);
}

/// The family, address (4 or 16 bytes written) and port of `storage`.
static void dg_inet_peer(const struct sockaddr_storage *storage, int *family, uint8_t *address, uint16_t *port) {
    *family = storage->ss_family;
    if (storage->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)storage;
        memcpy(address, &v4->sin_addr, 4);
        *port = ntohs(v4->sin_port);
    } else {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)storage;
        memcpy(address, &v6->sin6_addr, 16);
        *port = ntohs(v6->sin6_port);
    }
}

int dg_tcp_connect(int family, const uint8_t *address, uint16_t port, uint32_t mark, int timeout_ms) {
    struct sockaddr_storage storage;
    socklen_t length = dg_inet_address(family, address, port, &storage);
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -errno;
    int rc = 0;
    if (mark != 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0) rc = -errno;
    if (rc == 0 && connect(fd, (struct sockaddr *)&storage, length) < 0) {
        if (errno != EINPROGRESS) {
            rc = -errno;
        } else {
            struct pollfd waiting = {.fd = fd, .events = POLLOUT};
            int ready = poll(&waiting, 1, timeout_ms);
            int error = 0;
            socklen_t size = sizeof(error);
            if (ready == 0) rc = -ETIMEDOUT;
            else if (ready < 0) rc = -errno;
            else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) < 0) rc = -errno;
            else if (error != 0) rc = -error;
        }
    }
    if (rc == 0 && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) rc = -errno;
    if (rc == 0) rc = dg_socket_timeouts(fd, timeout_ms);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

int dg_udp_bind(int family, const uint8_t *address, uint16_t port, uint32_t mark, int timeout_ms) {
    struct sockaddr_storage storage;
    socklen_t length = dg_inet_address(family, address, port, &storage);
    int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int rc = 0;
    int one = 1;
    if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) rc = -errno;
    if (rc == 0 && mark != 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0) rc = -errno;
    if (rc == 0 && bind(fd, (struct sockaddr *)&storage, length) < 0) rc = -errno;
    if (rc == 0) rc = dg_socket_timeouts(fd, timeout_ms);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

int dg_udp_receive(int fd, uint8_t *buffer, size_t capacity, int *family, uint8_t *address, uint16_t *port) {
    struct sockaddr_storage storage;
    socklen_t length = sizeof(storage);
    ssize_t count = recvfrom(fd, buffer, capacity, 0, (struct sockaddr *)&storage, &length);
    if (count < 0) return -errno;
    dg_inet_peer(&storage, family, address, port);
    return (int)count;
}

int dg_udp_send(int fd, const uint8_t *buffer, size_t length, int family, const uint8_t *address, uint16_t port) {
    struct sockaddr_storage storage;
    socklen_t size = dg_inet_address(family, address, port, &storage);
    return sendto(fd, buffer, length, MSG_NOSIGNAL, (struct sockaddr *)&storage, size) < 0 ? -errno : 0;
}

int dg_tcp_listen(int family, const uint8_t *address, uint16_t port, uint32_t mark, int timeout_ms) {
    struct sockaddr_storage storage;
    socklen_t length = dg_inet_address(family, address, port, &storage);
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int rc = 0;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) rc = -errno;
    if (rc == 0 && family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) rc = -errno;
    if (rc == 0 && mark != 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0) rc = -errno;
    if (rc == 0 && bind(fd, (struct sockaddr *)&storage, length) < 0) rc = -errno;
    if (rc == 0 && listen(fd, 16) < 0) rc = -errno;
    if (rc == 0) rc = dg_socket_timeouts(fd, timeout_ms);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

int dg_tcp_accept(int listener, int *family, uint8_t *address, uint16_t *port, int timeout_ms) {
    struct sockaddr_storage storage;
    socklen_t length = sizeof(storage);
    int fd = accept4(listener, (struct sockaddr *)&storage, &length, SOCK_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = dg_socket_timeouts(fd, timeout_ms);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    dg_inet_peer(&storage, family, address, port);
    return fd;
}
