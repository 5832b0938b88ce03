// SPDX-License-Identifier: GPL-2.0-or-later
public import NIOCore
internal import CDnsgateShims
#if canImport(Glibc)
import Glibc
#endif

/// Where a connection that netfilter REDIRECTed to a local listener was first
/// headed. NIO reads this option only through its unsafe accessor (the value
/// is a socket address, not an integer), so it lives in this module.
public enum OriginalDestination {
    /// `SO_ORIGINAL_DST` (IPv4) and `IP6T_SO_ORIGINAL_DST` (IPv6), from
    /// linux/netfilter_ipv4.h and linux/netfilter_ipv6/ip6_tables.h.
    static let ipv4Option: SocketOptionName = 80
    static let ipv6Option: SocketOptionName = 80

    /// The original destination of an accepted connection, or nil when the
    /// connection was not redirected (no NAT record) or the option failed.
    public static func of(_ channel: Channel) -> EventLoopFuture<SocketAddress?> {
        guard let provider = channel as? SocketOptionProvider, let local = channel.localAddress else {
            return channel.eventLoop.makeSucceededFuture(nil)
        }
        switch local {
        case .v4:
            let future: EventLoopFuture<sockaddr_in> = provider.unsafeGetSocketOption(
                level: SocketOptionLevel(IPPROTO_IP), name: ipv4Option)
            return future.map { Optional(SocketAddress($0, host: "")) }.recover { _ in nil }
        case .v6:
            let future: EventLoopFuture<sockaddr_in6> = provider.unsafeGetSocketOption(
                level: SocketOptionLevel(IPPROTO_IPV6), name: ipv6Option)
            return future.map { Optional(SocketAddress($0, host: "")) }.recover { _ in nil }
        case .unixDomainSocket:
            return channel.eventLoop.makeSucceededFuture(nil)
        }
    }
}

/// The kernel's neighbour table (ARP for IPv4, NDP for IPv6).
public enum NeighbourTable {
    /// The 48-bit link-layer address of a host on a directly attached network,
    /// or nil when the table does not know it (a routed host, an expired entry).
    public static func hardwareAddress(of address: [UInt8]) -> UInt64? {
        guard address.count == 4 || address.count == 16 else { return nil }
        var mac = [UInt8](repeating: 0, count: 6)
        let result = address.withUnsafeBufferPointer { bytes in
            mac.withUnsafeMutableBufferPointer { out in
                dg_neighbour_mac(address.count == 4 ? AF_INET : AF_INET6, bytes.baseAddress, out.baseAddress)
            }
        }
        guard result == 0 else { return nil }
        return mac.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }
}
