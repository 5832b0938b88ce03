// SPDX-License-Identifier: GPL-2.0-or-later
// The C side of dnsgate: the netlink queue conversation (libmnl +
// libnetfilter_queue), the raw injection socket and the stats socket's listener.
// Everything here returns -errno on failure so Swift can throw a typed error.
#ifndef DNSGATE_SHIMS_H
#define DNSGATE_SHIMS_H

#include <stddef.h>
#include <stdint.h>

/// One queued packet, pointing into the queue's receive buffer; valid until
/// the next `dg_queue_receive` on the same queue.
typedef struct dg_packet {
    const uint8_t *payload;   // network header onwards; NULL when the kernel sent none
    uint32_t payload_len;     // bytes captured
    uint32_t packet_len;      // bytes on the wire (>= payload_len)
    uint32_t id;              // kernel packet id, for the verdict
    uint32_t mark;            // skb mark
    uint16_t hw_protocol;     // ETH_P_IP / ETH_P_IPV6, host order
    uint16_t hw_addr_len;     // 6 for an Ethernet source, 0 when the kernel sent none
    uint8_t hw_addr[8];       // the link-layer source address (the LAN host's MAC)
} dg_packet;

typedef struct dg_queue dg_queue;

enum {
    DG_VERDICT_DROP = 0,
    DG_VERDICT_ACCEPT = 1,
};

/// Binds queue `queue_num`; `copy_range` bytes of each packet are copied,
/// `max_len` bounds the kernel-side backlog, `fail_open` lets the kernel accept
/// when that backlog is full. GSO packets are taken whole (NFQA_CFG_F_GSO). `receive_timeout_ms` bounds each receive so the
/// caller can notice shutdown. Every setting waits for the kernel's answer: a
/// queue another process holds is an error. Returns NULL and sets *error to
/// -errno; sets *optional_error to -errno of the first optional setting (backlog,
/// flags) the kernel refused, or 0.
dg_queue *dg_queue_open(uint16_t queue_num, uint32_t copy_range, uint32_t max_len,
                        int fail_open, int receive_timeout_ms, int *error, int *optional_error);
void dg_queue_close(dg_queue *queue);

/// Most datagrams one `dg_queue_receive` takes (one recvmmsg).
#define DG_RECEIVE_BATCH 64

/// Waits for the first netlink datagram (up to the receive timeout), then takes
/// whatever else is already queued, up to DG_RECEIVE_BATCH datagrams, in one
/// recvmmsg. Stores up to `max_packets` packets; returns the count (0 on
/// timeout) or -errno. Packets beyond `max_packets` are accepted at once and
/// counted in `*overflow`.
int dg_queue_receive(dg_queue *queue, dg_packet *packets, int max_packets, uint64_t *overflow);

/// Sends the verdicts of one received batch (`verdicts[i]` for `packets[i]`,
/// in receive order) in as few netlink messages as possible: a run of ACCEPTs
/// becomes one NFQNL_MSG_VERDICT_BATCH, a DROP is its own message, and all of
/// them leave in one sendto. Returns 0 or -errno.
int dg_queue_verdicts(dg_queue *queue, const dg_packet *packets, const uint8_t *verdicts, int count);

/// Sends a verdict for one packet. Returns 0 or -errno.
int dg_queue_verdict(dg_queue *queue, uint32_t packet_id, int verdict);

/// Makes every allocation of `threshold` bytes or more its own mapping, given
/// back to the system when freed (fixing glibc's threshold, which otherwise
/// rises after the first large free and keeps a replaced policy's memory).
void dg_return_large_blocks(size_t threshold);
void dg_trim_heap(void);

/// At most `count` malloc arenas for the whole process.
void dg_limit_heaps(int count);

/// Lowers the calling thread's priority (nice 10) so that on a shared core a
/// queue worker always runs first. Returns 0 or -errno.
int dg_lower_current_thread_priority(void);

/// CPU numbers the shims handle (the config allows 0-4095).
#define DG_MAXIMUM_CPUS 4096

/// Pins the calling thread to one CPU. Returns 0 or -errno.
int dg_pin_current_thread(int cpu);

/// Writes the CPUs the calling thread may run on (sched_getaffinity), in
/// ascending order, to `cpus`. Returns how many, or -errno.
int dg_allowed_cpus(int *cpus, int capacity);

/// Names the calling thread (/proc/PID/task/TID/comm), cut to 15 bytes.
/// Returns 0 or -errno.
int dg_name_current_thread(const char *name);

/// A raw socket for sending whole IPv4 (family AF_INET) or IPv6 packets with the
/// given firewall mark. Returns the fd or -errno.
int dg_raw_open(int family, uint32_t mark);

/// Sends a whole IP packet to the destination written in its own header.
/// Returns 0 or -errno.
int dg_raw_send(int fd, const uint8_t *packet, size_t length);

/// A listening Unix stream socket at `path` with the given mode. A stale socket
/// file is replaced; anything else there fails: -EEXIST for a file that is not
/// a socket, -EADDRINUSE for a socket something still listens on. Returns the
/// fd or -errno.
int dg_unix_listen(const char *path, unsigned mode, int backlog);

/// Removes `path` only if it is still the socket with inode `inode` (ours).
int dg_unix_unlink_if_same(const char *path, uint64_t inode);

/// The inode of `path` (not followed), or -errno.
int64_t dg_path_inode(const char *path);

/// Gives `path` to the group named `group` (owner unchanged). Returns 0,
/// -ENOENT for an unknown group, or -errno.
int dg_chown_group(const char *path, const char *group);

/// From root: keeps only CAP_NET_ADMIN and CAP_NET_RAW (bounding, permitted
/// and effective sets), drops supplementary groups and becomes `user` (and its
/// primary group). Returns 0, -ENOENT for an unknown user, or -errno.
int dg_drop_privileges(const char *user);

/// Connects to a Unix stream socket, waiting at most `timeout_ms` for the
/// listener to take the connection; the socket keeps that timeout for every
/// read and write. Returns the fd or -errno (-ETIMEDOUT when it did not).
int dg_unix_connect(const char *path, int timeout_ms);

/// Accepts one connection (close-on-exec). Returns the fd, 0-or-more, or -errno
/// (-EAGAIN when the listener's timeout passed).
int dg_unix_accept(int listener);

/// The user id of the process at the other end of a Unix socket, or -errno.
int64_t dg_peer_uid(int fd);

/// Sets SO_RCVTIMEO / SO_SNDTIMEO on any socket. Returns 0 or -errno.
int dg_socket_timeouts(int fd, int milliseconds);

/// Looks `address` (4 or 16 bytes, by `family` AF_INET / AF_INET6) up in the
/// kernel's neighbour table (ARP / NDP) and writes its 6-byte link-layer
/// address to `mac`. Returns 0, -ENOENT when the table has no usable entry, or -errno.
int dg_neighbour_mac(int family, const uint8_t *address, uint8_t *mac);

/// Connects a TCP socket to `address` (4 or 16 bytes, by `family`) and
/// `port`, marked with `mark` (0: none) so that dnsgate's own DNS bypasses its
/// rules, waiting at most `timeout_ms`; the socket keeps that timeout for
/// every read and write. Returns the fd or -errno (-ETIMEDOUT).
int dg_tcp_connect(int family, const uint8_t *address, uint16_t port, uint32_t mark, int timeout_ms);

/// Binds a UDP socket to `address` and `port` (close-on-exec, marked with
/// `mark`), its reads timing out after `timeout_ms`. Returns the fd or -errno.
int dg_udp_bind(int family, const uint8_t *address, uint16_t port, uint32_t mark, int timeout_ms);

/// Receives one datagram of at most `capacity` bytes; writes its source to
/// `family`, `address` (16 bytes of room) and `port`. Returns its length, or
/// -errno (-EAGAIN when the timeout passed).
int dg_udp_receive(int fd, uint8_t *buffer, size_t capacity, int *family, uint8_t *address, uint16_t *port);

/// Listens on TCP `address` and `port` (close-on-exec, marked with `mark`);
/// accepts time out after `timeout_ms`. Returns the fd or -errno.
int dg_tcp_listen(int family, const uint8_t *address, uint16_t port, uint32_t mark, int timeout_ms);

/// Accepts one TCP connection, writing its peer to `family`, `address` (16
/// bytes of room) and `port`; the connection's reads and writes time out after
/// `timeout_ms`. Returns the fd, or -errno (-EAGAIN when the accept timed out).
int dg_tcp_accept(int listener, int *family, uint8_t *address, uint16_t *port, int timeout_ms);

/// Sends one datagram to `address` and `port`. Returns 0 or -errno.
int dg_udp_send(int fd, const uint8_t *buffer, size_t length, int family, const uint8_t *address, uint16_t port);

#endif
