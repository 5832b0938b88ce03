// SPDX-License-Identifier: GPL-2.0-or-later
internal import CDnsgateShims
#if canImport(Glibc)
import Glibc
#endif

/// A TCP connection to a DNS server (a zone's primary), with a timeout on
/// every read and write so that a stalled peer cannot hold the caller.
public final class StreamConnection {
    private let descriptor: Int32
    public let peer: String

    /// Connects to `address` (4 or 16 bytes) and `port`, marked with `mark`.
    public init(connectingTo address: [UInt8], port: UInt16, mark: UInt32, timeoutMilliseconds: Int32,
                peer: String) throws(SystemError) {
        self.peer = peer
        descriptor = try check("connecting to \(peer)", dg_tcp_connect(family(of: address), address, port, mark, timeoutMilliseconds))
    }

    init(descriptor: Int32, peer: String) {
        self.descriptor = descriptor
        self.peer = peer
    }

    deinit { close(descriptor) }

    public func send(_ bytes: [UInt8]) throws(SystemError) {
        var rest = bytes[...]
        while !rest.isEmpty {  // each turn sends at least one byte or throws
            let count = try systemCall("sending to \(peer)", rest.withUnsafeBytes {
                Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            })
            rest = rest.dropFirst(count)
        }
    }

    /// Exactly `count` bytes; nil when the peer closed before the first.
    /// Past `deadline` (CLOCK_MONOTONIC nanoseconds, see `monotonicNanoseconds`)
    /// it gives up, so that a peer trickling a byte at a time cannot hold it.
    public func read(exactly count: Int, deadline: UInt64) throws(SystemError) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {  // each turn reads at least one byte, or ends
            guard monotonicNanoseconds() < deadline else {
                throw SystemError("reading from \(peer): too slow", negativeErrno: -ETIMEDOUT)
            }
            let received: Int
            do throws(SystemError) {
                received = try systemCall("reading from \(peer)", bytes.withUnsafeMutableBytes {
                    recv(descriptor, $0.baseAddress! + filled, count - filled, 0)
                })
            } catch where error.errno == EAGAIN || error.errno == EWOULDBLOCK {
                throw SystemError("reading from \(peer)", negativeErrno: -ETIMEDOUT)
            }
            if received == 0 {
                if filled == 0 { return nil }
                throw SystemError("reading from \(peer): connection closed in the middle of a message", negativeErrno: -ECONNRESET)
            }
            filled += received
        }
        return bytes
    }

    /// The deadline `seconds` from now.
    public static func deadline(in seconds: Double) -> UInt64 {
        monotonicNanoseconds() + UInt64(seconds * 1e9)
    }

    /// Whether `deadline` has passed.
    public static func hasPassed(_ deadline: UInt64) -> Bool { monotonicNanoseconds() >= deadline }
}

/// A bound UDP socket: NOTIFY messages in, their answers out.
public final class DatagramSocket: Sendable {
    private let descriptor: Int32
    public let local: String

    /// Binds `address` (4 or 16 bytes) and `port`; `receive` waits at most `timeoutMilliseconds`.
    public init(binding address: [UInt8], port: UInt16, mark: UInt32, timeoutMilliseconds: Int32,
                local: String) throws(SystemError) {
        self.local = local
        descriptor = try check("listening on \(local)", dg_udp_bind(family(of: address), address, port, mark, timeoutMilliseconds))
    }

    deinit { close(descriptor) }

    /// One datagram and its source, or nil when the timeout passed first.
    public func receive(capacity: Int = 65535) throws(SystemError) -> (bytes: [UInt8], address: [UInt8], port: UInt16)? {
        var bytes = [UInt8](repeating: 0, count: capacity)
        var address = [UInt8](repeating: 0, count: 16)
        var family: Int32 = 0
        var port: UInt16 = 0
        let count = dg_udp_receive(descriptor, &bytes, capacity, &family, &address, &port)
        if count == -EAGAIN || count == -EWOULDBLOCK || count == -EINTR { return nil }
        let length = Int(try check("receiving on \(local)", count))
        return (Array(bytes[..<length]), trimmed(address, family: family), port)
    }

    public func send(_ bytes: [UInt8], to address: [UInt8], port: UInt16) throws(SystemError) {
        _ = try check("answering from \(local)", dg_udp_send(descriptor, bytes, bytes.count, family(of: address), address, port))
    }
}

/// A listening TCP socket (NOTIFY over TCP, as Knot DNS sends it).
public final class StreamListener: Sendable {
    private let descriptor: Int32
    public let local: String

    /// Listens on `address` (4 or 16 bytes) and `port`; `accept` waits at most `timeoutMilliseconds`.
    public init(binding address: [UInt8], port: UInt16, mark: UInt32, timeoutMilliseconds: Int32,
                local: String) throws(SystemError) {
        self.local = local
        descriptor = try check("listening on \(local)", dg_tcp_listen(family(of: address), address, port, mark, timeoutMilliseconds))
    }

    deinit { close(descriptor) }

    /// The next connection and its peer's address, or nil when the timeout
    /// passed; the connection's reads and writes time out after `ioTimeoutMilliseconds`.
    public func accept(ioTimeoutMilliseconds: Int32) throws(SystemError) -> (StreamConnection, [UInt8])? {
        var address = [UInt8](repeating: 0, count: 16)
        var family: Int32 = 0
        var port: UInt16 = 0
        let accepted = dg_tcp_accept(descriptor, &family, &address, &port, ioTimeoutMilliseconds)
        if accepted == -EAGAIN || accepted == -EWOULDBLOCK || accepted == -EINTR || accepted == -ECONNABORTED { return nil }
        let connection = try check("accepting on \(local)", accepted)
        return (StreamConnection(descriptor: connection, peer: "a peer of \(local)"), trimmed(address, family: family))
    }
}

/// The family of an address of 4 (IPv4) or 16 (IPv6) bytes.
private func family(of address: [UInt8]) -> Int32 { address.count == 4 ? AF_INET : AF_INET6 }

/// The address a socket call wrote into 16 bytes of room, at its family's length.
private func trimmed(_ address: [UInt8], family: Int32) -> [UInt8] { family == AF_INET ? Array(address[..<4]) : address }

/// CLOCK_MONOTONIC now, in nanoseconds: what the sockets' deadlines are
/// counted in, and the daemon's clock for timeouts and backoffs.
public func monotonicNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}
