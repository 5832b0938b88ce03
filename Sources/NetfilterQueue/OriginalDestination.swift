// SPDX-License-Identifier: GPL-2.0-or-later
public import NIOCore
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
