// SPDX-License-Identifier: GPL-2.0-or-later
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A non-blocking client stream socket, to a Unix socket path or a TCP
/// address: no call on it ever waits (a connect in progress, a full send
/// buffer or nothing to read are answers, not waits). For a writer that must
/// never hold up its thread, such as dnstap's.
public final class StreamSocket {
    private var descriptor: Int32

    /// Where a connection goes.
    public enum Peer: Sendable, Equatable {
        case unix(path: String)
        /// `address`: 4 bytes (IPv4) or 16 (IPv6), network order.
        case tcp(address: [UInt8], port: UInt16)
    }

    /// What a connect started.
    public enum Progress: Sendable { case connected, inProgress }

    private init(descriptor: Int32) { self.descriptor = descriptor }

    deinit { close() }

    /// Starts a connection to `peer`; a TCP connection is usually still in
    /// progress on return (see `finishConnect`).
    public static func connect(to peer: Peer) throws(SystemError) -> (StreamSocket, Progress) {
        let family: Int32
        switch peer {
        case .unix: family = AF_UNIX
        case .tcp(let address, _): family = address.count == 4 ? AF_INET : AF_INET6
        }
        let descriptor = try Int32(systemCall("socket", Int(Glibc.socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0))))
        let socket = StreamSocket(descriptor: descriptor)
        var storage = sockaddr_storage()
        let length: Int
        switch peer {
        case .unix(let path):
            let pathBytes = Array(path.utf8)
            let capacity = MemoryLayout.size(ofValue: sockaddr_un().sun_path)
            guard pathBytes.count < capacity else {
                throw SystemError("connecting to \(path): the path is too long", negativeErrno: -ENAMETOOLONG)
            }
            withUnsafeMutableBytes(of: &storage) { raw in
                raw.storeBytes(of: sa_family_t(AF_UNIX), as: sa_family_t.self)
                let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)!
                for (index, byte) in pathBytes.enumerated() { raw[pathOffset + index] = byte }
            }
            length = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + pathBytes.count + 1
        case .tcp(let address, let port):
            withUnsafeMutableBytes(of: &storage) { raw in
                if address.count == 4 {
                    var ipv4 = sockaddr_in()
                    ipv4.sin_family = sa_family_t(AF_INET)
                    ipv4.sin_port = port.bigEndian
                    withUnsafeMutableBytes(of: &ipv4.sin_addr) { $0.copyBytes(from: address) }
                    raw.storeBytes(of: ipv4, as: sockaddr_in.self)
                } else {
                    var ipv6 = sockaddr_in6()
                    ipv6.sin6_family = sa_family_t(AF_INET6)
                    ipv6.sin6_port = port.bigEndian
                    withUnsafeMutableBytes(of: &ipv6.sin6_addr) { $0.copyBytes(from: address.prefix(16)) }
                    raw.storeBytes(of: ipv6, as: sockaddr_in6.self)
                }
            }
            length = address.count == 4 ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size
        }
        let result = withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(descriptor, $0, socklen_t(length)) }
        }
        if result == 0 { return (socket, .connected) }
        // A signal leaves the connect going on, as EINPROGRESS does.
        if errno == EINPROGRESS || errno == EINTR { return (socket, .inProgress) }
        throw SystemError("connecting to \(peer)", negativeErrno: -errno)
    }

    /// Whether a connect in progress has finished: true once connected,
    /// false while still in progress; throws when it failed.
    public func finishConnect() throws(SystemError) -> Bool {
        var poller = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
        guard try systemCall("poll", Int(poll(&poller, 1, 0))) > 0 else { return false }
        var failure: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        _ = try systemCall("getsockopt", Int(getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &failure, &length)))
        if failure != 0 { throw SystemError("connecting", negativeErrno: -failure) }
        return true
    }

    /// Sends what the socket takes now of `bytes[offset...]`; returns how
    /// many bytes it took (0 when its buffer is full).
    public func send(_ bytes: [UInt8], from offset: Int = 0) throws(SystemError) -> Int {
        guard offset < bytes.count else { return 0 }
        let descriptor = self.descriptor
        let result = bytes.withUnsafeBytes { raw in
            Glibc.send(descriptor, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
        }
        if result >= 0 { return result }
        if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return 0 }
        throw SystemError("sending", negativeErrno: -errno)
    }

    /// Reads what has arrived, up to `limit` bytes: empty when nothing has;
    /// nil when the peer closed the connection.
    public func receive(limit: Int = 4096) throws(SystemError) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: limit)
        let descriptor = self.descriptor
        let result = buffer.withUnsafeMutableBytes { Glibc.recv(descriptor, $0.baseAddress!, $0.count, Int32(MSG_DONTWAIT)) }
        if result > 0 { return Array(buffer.prefix(result)) }
        if result == 0 { return nil }
        if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return [] }
        throw SystemError("receiving", negativeErrno: -errno)
    }

    /// Waits at most `milliseconds` for bytes to read or room to write:
    /// only for a bounded goodbye at shutdown, never on the way of work.
    public func wait(readable: Bool, writable: Bool, milliseconds: Int32) {
        var events: Int16 = 0
        if readable { events |= Int16(POLLIN) }
        if writable { events |= Int16(POLLOUT) }
        var poller = pollfd(fd: descriptor, events: events, revents: 0)
        _ = poll(&poller, 1, milliseconds)
    }

    public func close() {
        if descriptor >= 0 { Glibc.close(descriptor) }
        descriptor = -1
    }
}
