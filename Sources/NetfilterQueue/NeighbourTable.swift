// SPDX-License-Identifier: GPL-2.0-or-later
internal import CDnsgateShims
#if canImport(Glibc)
import Glibc
#endif

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
