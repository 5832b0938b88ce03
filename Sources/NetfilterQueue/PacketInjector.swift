// SPDX-License-Identifier: GPL-2.0-or-later
internal import CDnsgateShims
#if canImport(Glibc)
import Glibc
#endif

/// Sends whole IP packets (forged answers) through raw sockets, with a firewall
/// mark so that the shipped rules never queue them again. One per worker: the
/// output buffer is reused for every packet.
public final class PacketInjector {
    /// Room for an answer to the largest query (64 KiB) plus its growth and headers.
    public static let bufferSize = 65536 + 2048
    private let ipv4Socket: Int32
    private let ipv6Socket: Int32
    private let buffer: UnsafeMutableBufferPointer<UInt8>

    public init(mark: UInt32) throws(SystemError) {
        ipv4Socket = try check("opening the IPv4 raw socket", dg_raw_open(AF_INET, mark))
        do {
            ipv6Socket = try check("opening the IPv6 raw socket", dg_raw_open(AF_INET6, mark))
        } catch {
            close(ipv4Socket)
            throw error
        }
        buffer = .allocate(capacity: Self.bufferSize)
        buffer.initialize(repeating: 0)
    }

    deinit {
        close(ipv4Socket)
        close(ipv6Socket)
        buffer.deallocate()
    }

    /// Lets `build` write a packet into the reused buffer, then sends it to the
    /// destination in its own IP header. `build` returns the length, or nil to
    /// send nothing (then this returns false).
    public func send(_ build: (inout MutableSpan<UInt8>) -> Int?) throws(SystemError) -> Bool {
        var output = buffer.mutableSpan
        guard let length = build(&output), length > 0, length <= Self.bufferSize else { return false }
        let socket = buffer[0] >> 4 == 6 ? ipv6Socket : ipv4Socket
        _ = try check("sending a forged answer", dg_raw_send(socket, buffer.baseAddress, length))
        return true
    }
}
