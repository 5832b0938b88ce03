// SPDX-License-Identifier: GPL-2.0-or-later

/// An IPv4 or IPv6 address held in two integers, so that it is a plain value
/// with no heap storage.
public enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    case v4(UInt32)
    case v6(high: UInt64, low: UInt64)

    /// Parses dotted-quad IPv4 or RFC 4291 text IPv6 (with `::`, and an IPv4 tail).
    public init?(_ text: some StringProtocol) {
        if text.contains(":") {
            guard let (high, low) = Self.parseIPv6(String(text)) else { return nil }
            self = .v6(high: high, low: low)
        } else {
            guard let value = Self.parseIPv4(text) else { return nil }
            self = .v4(value)
        }
    }

    /// The address of 4 (IPv4) or 16 (IPv6) bytes in network order, as
    /// sockets and A/AAAA RDATA hold it.
    public init?(bytes: some Collection<UInt8>) {
        switch bytes.count {
        case 4: self = .v4(bytes.reduce(0) { $0 << 8 | UInt32($1) })
        case 16:
            self = .v6(high: bytes.prefix(8).reduce(0) { $0 << 8 | UInt64($1) },
                       low: bytes.dropFirst(8).reduce(0) { $0 << 8 | UInt64($1) })
        default: return nil
        }
    }

    public var isIPv4: Bool { if case .v4 = self { true } else { false } }

    /// The address in network byte order, 4 or 16 bytes.
    public var bytes: [UInt8] {
        switch self {
        case .v4(let value):
            return (0..<4).map { UInt8(truncatingIfNeeded: value >> (24 - 8 * $0)) }
        case .v6(let high, let low):
            return (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * $0)) }
                + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * $0)) }
        }
    }

    public var description: String {
        switch self {
        case .v4(let value):
            return (0..<4).map { String((value >> (24 - 8 * UInt32($0))) & 0xff) }.joined(separator: ".")
        case .v6(let high, let low):
            return Self.formatIPv6(high: high, low: low)
        }
    }

    static func parseIPv4(_ text: some StringProtocol) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy(\.isASCII),
                  let octet = UInt8(part) else { return nil }
            value = value << 8 | UInt32(octet)
        }
        return value
    }

    static func parseIPv6(_ text: String) -> (UInt64, UInt64)? {
        var groups: [UInt16] = []
        var halves = [text]
        if let gap = text.firstRange(of: "::") {
            halves = [String(text[..<gap.lowerBound]), String(text[gap.upperBound...])]
            guard !halves[1].contains("::") else { return nil }
        }
        func parseGroups(_ part: String, allowIPv4Tail: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            var result: [UInt16] = []
            let fields = part.split(separator: ":", omittingEmptySubsequences: false)
            for (index, field) in fields.enumerated() {
                if allowIPv4Tail, index == fields.count - 1, field.contains(".") {
                    guard let v4 = parseIPv4(field) else { return nil }
                    result.append(UInt16(v4 >> 16))
                    result.append(UInt16(v4 & 0xffff))
                } else {
                    guard !field.isEmpty, field.count <= 4, let value = UInt16(field, radix: 16) else { return nil }
                    result.append(value)
                }
            }
            return result
        }
        if halves.count == 2 {
            guard let head = parseGroups(halves[0], allowIPv4Tail: false),
                  let tail = parseGroups(halves[1], allowIPv4Tail: true),
                  head.count + tail.count <= 7 else { return nil }
            groups = head + Array(repeating: 0, count: 8 - head.count - tail.count) + tail
        } else {
            guard let all = parseGroups(halves[0], allowIPv4Tail: true), all.count == 8 else { return nil }
            groups = all
        }
        let high = groups[0..<4].reduce(UInt64(0)) { $0 << 16 | UInt64($1) }
        let low = groups[4..<8].reduce(UInt64(0)) { $0 << 16 | UInt64($1) }
        return (high, low)
    }

    static func formatIPv6(high: UInt64, low: UInt64) -> String {
        let groups = (0..<4).map { UInt16(truncatingIfNeeded: high >> (48 - 16 * UInt64($0))) }
            + (0..<4).map { UInt16(truncatingIfNeeded: low >> (48 - 16 * UInt64($0))) }
        // RFC 5952: the longest run (of two or more) of zero groups becomes "::".
        var bestStart = -1, bestLength = 0, runStart = -1
        for index in 0...8 {
            if index < 8, groups[index] == 0 {
                if runStart < 0 { runStart = index }
            } else if runStart >= 0 {
                if index - runStart > bestLength, index - runStart >= 2 {
                    bestStart = runStart
                    bestLength = index - runStart
                }
                runStart = -1
            }
        }
        func hex(_ range: Range<Int>) -> String {
            groups[range].map { String($0, radix: 16) }.joined(separator: ":")
        }
        if bestStart < 0 { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
    }
}

/// An address prefix, as in a rule group's `clients`.
public struct IPNetwork: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let prefixLength: Int

    /// Parses `192.0.2.0/24`, `2001:db8::/32` or a bare address (a host prefix).
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(parts[0]) else { return nil }
        let maximum = address.isIPv4 ? 32 : 128
        var length = maximum
        if parts.count == 2 {
            guard let parsed = Int(parts[1]), (0...maximum).contains(parsed) else { return nil }
            length = parsed
        }
        self.address = address.masked(to: length)
        self.prefixLength = length
    }

    /// A prefix from its parts: host bits beyond `prefixLength` are cleared,
    /// and a length outside the family's 0–32 (IPv4) or 0–128 (IPv6) is taken
    /// as the nearest of the two, so that no input traps.
    public init(address: IPAddress, prefixLength: Int) {
        let length = min(max(prefixLength, 0), address.isIPv4 ? 32 : 128)
        self.address = address.masked(to: length)
        self.prefixLength = length
    }

    /// Whether `candidate` is in this prefix. IPv4 clients and IPv4-mapped
    /// IPv6 addresses (`::ffff:192.0.2.10`) are one host: a `::ffff:` prefix
    /// matches IPv4 clients, and an IPv4 prefix matches mapped addresses.
    public func contains(_ candidate: IPAddress) -> Bool {
        switch (address, candidate) {
        case (.v4, .v4), (.v6, .v6):
            if candidate.masked(to: prefixLength) == address { return true }
            guard case .v6 = candidate, let unmapped = candidate.unmappedIPv4 else { return false }
            return contains(unmapped)
        case (.v6, .v4(let value)):
            return IPAddress.v6(high: 0, low: 0xffff_0000_0000 | UInt64(value)).masked(to: prefixLength) == address
        case (.v4, .v6):
            return candidate.unmappedIPv4.map(contains) ?? false
        }
    }

    /// The address family the prefix stands for: an IPv4-mapped IPv6 prefix
    /// (inside `::ffff:0:0/96`) stands for IPv4 hosts.
    public var family: IPVersion {
        if case .v6(let high, let low) = address, prefixLength >= 96, high == 0, low >> 32 == 0xffff { return .v4 }
        return address.isIPv4 ? .v4 : .v6
    }

    public var description: String { "\(address)/\(prefixLength)" }
}

extension IPAddress {
    /// The IPv4 address inside an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`).
    public var unmappedIPv4: IPAddress? {
        guard case .v6(let high, let low) = self, high == 0, low >> 32 == 0xffff else { return nil }
        return .v4(UInt32(truncatingIfNeeded: low))
    }

    func masked(to prefixLength: Int) -> IPAddress {
        switch self {
        case .v4(let value):
            let mask: UInt32 = prefixLength == 0 ? 0 : ~UInt32(0) << (32 - prefixLength)
            return .v4(value & mask)
        case .v6(let high, let low):
            let highMask: UInt64 = prefixLength >= 64 ? ~0 : (prefixLength == 0 ? 0 : ~UInt64(0) << (64 - prefixLength))
            let lowBits = prefixLength - 64
            let lowMask: UInt64 = lowBits <= 0 ? 0 : (lowBits >= 64 ? ~0 : ~UInt64(0) << (64 - lowBits))
            return .v6(high: high & highMask, low: low & lowMask)
        }
    }
}

/// A 48-bit Ethernet address, as NFQUEUE reports the LAN source's.
public struct MACAddress: Hashable, Sendable, CustomStringConvertible {
    public let value: UInt64

    public init(value: UInt64) { self.value = value & 0xffff_ffff_ffff }

    /// Parses `aa:bb:cc:dd:ee:ff` (or with `-`), any case.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(omittingEmptySubsequences: false) { $0 == ":" || $0 == "-" }
        guard parts.count == 6 else { return nil }
        var value: UInt64 = 0
        for part in parts {
            guard part.count == 2, let octet = UInt8(part, radix: 16) else { return nil }
            value = value << 8 | UInt64(octet)
        }
        self.value = value
    }

    public var description: String {
        (0..<6).map { index in
            let octet = UInt8(truncatingIfNeeded: value >> (40 - 8 * UInt64(index)))
            return (octet < 16 ? "0" : "") + String(octet, radix: 16)
        }.joined(separator: ":")
    }
}

/// Who a rule group applies to: an address prefix (either family) or one
/// host's MAC address, which covers its IPv4 and IPv6 traffic alike.
public enum ClientSelector: Hashable, Sendable, CustomStringConvertible {
    case network(IPNetwork)
    case mac(MACAddress)

    public init?(_ text: some StringProtocol) {
        if let mac = MACAddress(text) {
            self = .mac(mac)
        } else if let network = IPNetwork(text) {
            self = .network(network)
        } else {
            return nil
        }
    }

    public var isMAC: Bool { if case .mac = self { true } else { false } }

    @inline(__always)
    public func matches(_ client: IPAddress, mac: MACAddress?) -> Bool {
        switch self {
        case .network(let network): network.contains(client)
        case .mac(let wanted): wanted == mac
        }
    }

    /// The one address family a list of selectors names, when it names
    /// prefixes of one family and no MAC address; nil otherwise.
    public static func onlyFamily(_ selectors: [ClientSelector]) -> IPVersion? {
        var families: Set<IPVersion> = []
        for selector in selectors {
            guard case .network(let network) = selector else { return nil }
            families.insert(network.family)
        }
        return families.count == 1 ? families.first : nil
    }

    public var description: String {
        switch self {
        case .network(let network): network.description
        case .mac(let mac): mac.description
        }
    }
}

/// The kinds of address that name no host on the Internet, which an answer
/// for a public name should never carry (DNS rebinding: a page of an
/// attacker's name made to reach the browser's own network).
public enum LocalAddressClass: String, Sendable, CaseIterable {
    /// 0.0.0.0/8, ::
    case unspecified
    /// 127.0.0.0/8, ::1
    case loopback
    /// RFC 1918: 10/8, 172.16/12, 192.168/16; the deprecated IPv6 site-local fec0::/10
    case privateNetwork = "private"
    /// 169.254/16, fe80::/10
    case linkLocal = "link-local"
    /// RFC 6598 shared address space (carrier-grade NAT): 100.64/10
    case sharedNAT = "cgnat"
    /// RFC 4193: fc00::/7
    case uniqueLocal = "unique-local"
}

extension IPAddress {
    /// Which local-use class the address is in, nil for any other address.
    /// An IPv4-mapped IPv6 address is its IPv4 address (a dual-stack socket
    /// connects to that), and so is one of the well-known NAT64 prefix
    /// 64:ff9b::/96 (the translator reaches that).
    public var localUseClass: LocalAddressClass? {
        var address = unmappedIPv4 ?? self
        if case .v6(let high, let low) = address, high == 0x0064_ff9b_0000_0000, low >> 32 == 0 {
            address = .v4(UInt32(truncatingIfNeeded: low))  // 64:ff9b::/96, NAT64Prefix.wellKnown, in two compares
        }
        switch address {
        case .v4(let value):
            switch value >> 24 {
            case 0: return .unspecified
            case 10: return .privateNetwork
            case 127: return .loopback
            case 100 where value & 0xffc0_0000 == 0x6440_0000: return .sharedNAT
            case 169 where value >> 16 == 0xa9fe: return .linkLocal
            case 172 where value & 0xfff0_0000 == 0xac10_0000: return .privateNetwork
            case 192 where value >> 16 == 0xc0a8: return .privateNetwork
            default: return nil
            }
        case .v6(let high, let low):
            if high == 0, low == 0 { return .unspecified }
            if high == 0, low == 1 { return .loopback }
            switch high >> 54 {  // the first 10 bits
            case 0x3fa: return .linkLocal      // fe80::/10
            case 0x3fb: return .privateNetwork // fec0::/10
            default: return high >> 57 == 0x7e ? .uniqueLocal : nil  // fc00::/7
            }
        }
    }
}

/// A NAT64 prefix (RFC 6052): an IPv6 address inside it stands for the IPv4
/// address a translator reaches, embedded at a place the prefix length sets
/// (bits 64–71 are left out). A DNS64 resolver makes such AAAA records from
/// A records, so an answer's IPv6 address may be an IPv4 address in disguise.
public struct NAT64Prefix: Hashable, Sendable, CustomStringConvertible {
    public let network: IPNetwork
    /// The prefix lengths RFC 6052 defines.
    public static let lengths = [32, 40, 48, 56, 64, 96]
    /// 64:ff9b::/96, which DNS64 resolvers use unless told otherwise.
    public static let wellKnown = NAT64Prefix(IPNetwork(address: .v6(high: 0x0064_ff9b_0000_0000, low: 0), prefixLength: 96))!

    /// Nil unless `network` is an IPv6 prefix of one of `lengths`.
    public init?(_ network: IPNetwork) {
        guard !network.address.isIPv4, Self.lengths.contains(network.prefixLength) else { return nil }
        self.network = network
    }

    /// The IPv4 address `address` stands for, nil when it is not in the prefix.
    @inline(__always)
    public func embeddedIPv4(_ address: IPAddress) -> IPAddress? {
        guard case .v6(let high, let low) = address, address.masked(to: network.prefixLength) == network.address else {
            return nil
        }
        let length = network.prefixLength
        if length == 96 { return .v4(UInt32(truncatingIfNeeded: low)) }
        // The first 64 - length bits end the high half; the rest follow the u octet.
        let fromHigh = 64 - length, fromLow = 32 - fromHigh
        let head = fromHigh == 0 ? 0 : high & (UInt64(1) << fromHigh - 1)
        let tail = fromLow == 0 ? 0 : low >> (56 - fromLow) & (UInt64(1) << fromLow - 1)
        return .v4(UInt32(truncatingIfNeeded: head << fromLow | tail))
    }

    public var description: String { network.description }
}
