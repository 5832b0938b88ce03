// SPDX-License-Identifier: GPL-2.0-or-later
internal import CDnsgateShims
#if canImport(Glibc)
import Glibc
#endif

/// A connected Unix stream socket speaking the stats protocol: one command
/// line in, a reply out, then close.
public final class UnixConnection {
    private let descriptor: Int32
    /// CLOCK_MONOTONIC nanoseconds by which the whole exchange must be over, if any.
    private var deadline: UInt64?

    init(descriptor: Int32, totalMilliseconds: Int32? = nil) {
        self.descriptor = descriptor
        deadline = totalMilliseconds.map { monotonicNanoseconds() + UInt64($0) * 1_000_000 }
    }
    deinit { close(descriptor) }

    /// Before each read or write: what is left of the deadline becomes the
    /// socket's timeout, so a peer that trickles bytes cannot hold it longer.
    private func armTimeout(_ doing: String) throws(SystemError) {
        guard let deadline else { return }
        let now = monotonicNanoseconds()
        guard now < deadline else { throw SystemError(doing, negativeErrno: -ETIMEDOUT) }
        _ = dg_socket_timeouts(descriptor, Int32(clamping: max((deadline - now) / 1_000_000, 1)))
    }

    /// Connects to the socket at `path`; connecting and the whole exchange that
    /// follows must be over within `timeoutMilliseconds`, so a daemon that
    /// accepts and never answers, or trickles its reply, cannot hold the caller.
    public convenience init(connectingTo path: String, timeoutMilliseconds: Int32 = 5000) throws(SystemError) {
        let descriptor = try check("connecting to \(path)", dg_unix_connect(path, timeoutMilliseconds))
        self.init(descriptor: descriptor, totalMilliseconds: timeoutMilliseconds)
    }

    /// Gives the exchange `milliseconds` more from now: the server calls it
    /// once the command's work is done, so that a long reload does not use up
    /// the time the client has to take the reply.
    public func renewDeadline(milliseconds: Int32) {
        guard deadline != nil else { return }
        deadline = monotonicNanoseconds() + UInt64(milliseconds) * 1_000_000
    }

    /// Reads up to the first newline (or `limit` bytes, or end of stream).
    public func readLine(limit: Int = 1024) throws(SystemError) -> String {
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while bytes.count < limit {
            try armTimeout("reading a command")
            let count = try systemCall("reading a command", read(descriptor, &byte, 1))
            if count == 0 || byte == UInt8(ascii: "\n") { break }
            bytes.append(byte)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Reads everything until the peer closes (at most `limit` bytes).
    public func readAll(limit: Int = 16 << 20) throws(SystemError) -> String {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while result.count < limit {
            try armTimeout("reading the reply")
            let count: Int
            do throws(SystemError) {
                count = try systemCall("reading the reply", chunk.withUnsafeMutableBytes {
                    read(descriptor, $0.baseAddress, $0.count)
                })
            } catch where error.errno == EAGAIN || error.errno == EWOULDBLOCK {
                // SO_RCVTIMEO ran out: the deadline armed above passed.
                throw SystemError("reading the reply", negativeErrno: -ETIMEDOUT)
            }
            if count == 0 { break }
            result.append(contentsOf: chunk[0..<count])
        }
        return String(decoding: result, as: UTF8.self)
    }

    public func write(_ text: String) throws(SystemError) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            try armTimeout("writing the reply")
            let count = try systemCall("writing the reply", bytes.withUnsafeBytes {
                Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            })
            bytes = bytes.dropFirst(count)
        }
    }

    /// The connecting process's user id (SO_PEERCRED).
    public var peerUserID: UInt32? {
        let uid = dg_peer_uid(descriptor)
        return uid < 0 ? nil : UInt32(truncatingIfNeeded: uid)
    }
}

/// A listening Unix stream socket.
public final class UnixListener: Sendable {
    public let path: String
    private let descriptor: Int32
    private let inode: UInt64

    /// Binds `path` (replacing a stale socket file) with `mode`, e.g. 0o660,
    /// owned by `group` when given.
    public init(path: String, mode: UInt32, group: String? = nil) throws(SystemError) {
        self.path = path
        let listening = dg_unix_listen(path, mode, 16)
        switch -listening {
        case EEXIST: throw SystemError("listening on \(path): it exists and is not a socket; not replacing it",
                                       negativeErrno: listening)
        case EADDRINUSE: throw SystemError("listening on \(path): another dnsgate answers there",
                                           negativeErrno: listening)
        default: descriptor = try check("listening on \(path)", listening)
        }
        inode = UInt64(max(dg_path_inode(path), 0))
        if let group {
            let result = dg_chown_group(path, group)
            // deinit closes the descriptor and removes the socket.
            if result < 0 { throw SystemError("giving \(path) to group '\(group)'", negativeErrno: result) }
        }
        // Accept wakes up periodically so the owner can notice shutdown.
        _ = dg_socket_timeouts(descriptor, 250)
    }

    deinit {
        close(descriptor)
        // Not a socket another instance has put there since.
        _ = dg_unix_unlink_if_same(path, inode)
    }

    /// Waits for a connection; nil on timeout. The connection's whole exchange
    /// (command in, reply out) must be over within `totalMilliseconds`.
    public func accept(totalMilliseconds: Int32 = 5000) throws(SystemError) -> UnixConnection? {
        let connection = dg_unix_accept(descriptor)
        if connection < 0 {
            if connection == -EAGAIN || connection == -EWOULDBLOCK || connection == -EINTR { return nil }
            throw SystemError("accepting on \(path)", negativeErrno: connection)
        }
        return UnixConnection(descriptor: connection, totalMilliseconds: totalMilliseconds)
    }
}
