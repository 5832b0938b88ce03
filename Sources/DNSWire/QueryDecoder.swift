// SPDX-License-Identifier: GPL-2.0-or-later

/// Why a packet is not a DNS query dnsgate can decide on. Each is counted as
/// `not_dns`; the reason is kept for logs and tests.
public enum NotDNSReason: String, Sendable, CaseIterable {
    case truncatedIP = "truncated_ip"
    case unsupportedIP = "unsupported_ip"
    case fragment
    case notUDP = "not_udp"
    case truncatedUDP = "truncated_udp"
    case truncatedDNS = "truncated_dns"
    case notQuery = "not_query"
    case unsupportedOpcode = "unsupported_opcode"
    case questionCount = "question_count"
    case badName = "bad_name"
    case compressionLoop = "compression_loop"
    case badRecord = "bad_record"
    case duplicateOPT = "duplicate_opt"
}

/// What an EDNS OPT record of a query said.
public struct EDNSInfo: Sendable, Equatable {
    public var udpPayloadSize: UInt16
    public var version: UInt8
    public var dnssecOK: Bool
    /// Offset within the DNS message of the client cookie (8 bytes), if any.
    public var clientCookieOffset: Int?
    /// Length of the whole COOKIE option data (8, or 16 to 40 with a server cookie).
    public var cookieLength: Int
}

public enum IPVersion: Sendable { case v4, v6 }

/// A decoded single-question DNS query over UDP, with everything a decision and
/// a forged answer need. Offsets refer to the packet it was decoded from.
public struct DNSQuery: Sendable {
    public var ipVersion: IPVersion
    public var source: IPAddress
    public var destination: IPAddress
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    /// Total length of the IP packet (header included).
    public var packetLength: Int
    /// Offset of the DNS message in the packet, and its length.
    public var dnsOffset: Int
    public var dnsLength: Int
    public var id: UInt16
    /// Header flags word as received (QR, opcode, AA, TC, RD, RA, Z, AD, CD, RCODE).
    public var flags: UInt16
    /// Question name, case as received.
    public var name: DomainName
    /// The question occupies DNS-message bytes 12..<questionEnd.
    public var questionEnd: Int
    /// True when the question name used a compression pointer (so it cannot be copied verbatim).
    public var questionCompressed: Bool
    public var type: QueryType
    public var queryClass: QueryClass
    public var edns: EDNSInfo?
}

public enum DecodeResult: Sendable {
    case query(DNSQuery)
    /// A TCP segment: DNS over TCP is a byte stream, decided by `TCPStreams`.
    case tcp(TCPSegment)
    case notDNS(NotDNSReason)
}

/// A TCP segment's addressing, sequence numbers and where its payload is.
public struct TCPSegment: Sendable {
    public var ipVersion: IPVersion
    public var source: IPAddress
    public var destination: IPAddress
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var sequence: UInt32
    public var acknowledgment: UInt32
    public var flags: UInt8
    /// Offset of the payload in the captured packet and its length on the wire.
    public var payloadOffset: Int
    public var payloadLength: Int

    public static let fin: UInt8 = 0x01
    public static let syn: UInt8 = 0x02
    public static let rst: UInt8 = 0x04
    public static let ack: UInt8 = 0x10
}

/// Decodes an IP packet (as NFQUEUE hands it over: network header first) into a
/// DNS query. Never allocates, never traps on any input; every loop is bounded
/// by the packet length or a fixed cap.
public enum QueryDecoder {
    static let maximumExtensionHeaders = 8
    static let maximumCompressionPointers = 16

    /// - Parameters:
    ///   - packet: the captured bytes, from the network header on.
    ///   - wireLength: the packet's length on the wire when the capture was cut
    ///     short (NFQUEUE's copy range). Such a query is still decided on its
    ///     question when that was captured; records past the capture are not read.
    public static func decode(packet: Span<UInt8>, wireLength: Int? = nil) -> DecodeResult {
        guard packet.count >= 1 else { return .notDNS(.truncatedIP) }
        let wire = max(wireLength ?? packet.count, packet.count)
        switch packet[0] >> 4 {
        case 4: return decodeIPv4(packet, wire: wire)
        case 6: return decodeIPv6(packet, wire: wire)
        default: return .notDNS(.unsupportedIP)
        }
    }

    static func decodeIPv4(_ packet: Span<UInt8>, wire: Int) -> DecodeResult {
        guard packet.count >= 20 else { return .notDNS(.truncatedIP) }
        let headerLength = Int(packet[0] & 0x0f) * 4
        let totalLength = Int(packet.u16(2))
        guard headerLength >= 20, totalLength >= headerLength, totalLength <= wire else {
            return .notDNS(.truncatedIP)
        }
        let fragment = packet.u16(6)
        // More-fragments set or a non-zero offset: not a whole datagram.
        guard fragment & 0x3fff == 0 else { return .notDNS(.fragment) }
        let source = IPAddress.v4(packet.u32(12))
        let destination = IPAddress.v4(packet.u32(16))
        switch packet[9] {
        case 17:
            return decodeUDP(packet, at: headerLength, end: totalLength, version: .v4,
                             source: source, destination: destination)
        case 6:
            return decodeTCP(packet, at: headerLength, end: totalLength, version: .v4,
                             source: source, destination: destination)
        default:
            return .notDNS(.notUDP)
        }
    }

    static func decodeIPv6(_ packet: Span<UInt8>, wire: Int) -> DecodeResult {
        guard packet.count >= 40 else { return .notDNS(.truncatedIP) }
        let payloadLength = Int(packet.u16(4))
        // A zero payload length means a jumbogram, which DNS never needs.
        guard payloadLength > 0, 40 + payloadLength <= wire else { return .notDNS(.truncatedIP) }
        let end = 40 + payloadLength
        var nextHeader = packet[6]
        var offset = 40
        for _ in 0..<maximumExtensionHeaders {
            switch nextHeader {
            case 17, 6:
                let source = IPAddress.v6(high: packet.u64(8), low: packet.u64(16))
                let destination = IPAddress.v6(high: packet.u64(24), low: packet.u64(32))
                if nextHeader == 6 {
                    return decodeTCP(packet, at: offset, end: end, version: .v6, source: source, destination: destination)
                }
                return decodeUDP(packet, at: offset, end: end, version: .v6, source: source, destination: destination)
            case 0, 43, 60:  // hop-by-hop, routing, destination options
                guard offset + 8 <= min(end, packet.count) else { return .notDNS(.truncatedIP) }
                nextHeader = packet[offset]
                offset += (Int(packet[offset + 1]) + 1) * 8
            case 44:  // fragment: only an atomic fragment (offset 0, no M flag) is whole
                guard offset + 8 <= min(end, packet.count) else { return .notDNS(.truncatedIP) }
                guard packet.u16(offset + 2) & 0xfff9 == 0 else { return .notDNS(.fragment) }
                nextHeader = packet[offset]
                offset += 8
            case 51:  // authentication header
                guard offset + 8 <= min(end, packet.count) else { return .notDNS(.truncatedIP) }
                nextHeader = packet[offset]
                offset += (Int(packet[offset + 1]) + 2) * 4
            default:
                return .notDNS(.notUDP)
            }
            guard offset <= end else { return .notDNS(.truncatedIP) }
        }
        return .notDNS(.notUDP)
    }

    static func decodeUDP(_ packet: Span<UInt8>, at offset: Int, end: Int, version: IPVersion,
                          source: IPAddress, destination: IPAddress) -> DecodeResult {
        guard offset + 8 <= min(end, packet.count) else { return .notDNS(.truncatedUDP) }
        let udpLength = Int(packet.u16(offset + 4))
        guard udpLength >= 8, offset + udpLength <= end else { return .notDNS(.truncatedUDP) }
        let dnsOffset = offset + 8
        let udpEnd = offset + udpLength
        let complete = udpEnd <= packet.count
        let message = packet.extracting(dnsOffset..<min(udpEnd, packet.count))
        var query = DNSQuery(
            ipVersion: version, source: source, destination: destination,
            sourcePort: packet.u16(offset), destinationPort: packet.u16(offset + 2),
            packetLength: end, dnsOffset: dnsOffset, dnsLength: message.count,
            id: 0, flags: 0, name: DomainName(), questionEnd: 0, questionCompressed: false,
            type: .a, queryClass: .internet, edns: nil)
        if let reason = decodeMessage(message, complete: complete, into: &query) { return .notDNS(reason) }
        return .query(query)
    }

    static func decodeTCP(_ packet: Span<UInt8>, at offset: Int, end: Int, version: IPVersion,
                          source: IPAddress, destination: IPAddress) -> DecodeResult {
        guard offset + 20 <= min(end, packet.count) else { return .notDNS(.truncatedIP) }
        let headerLength = Int(packet[offset + 12] >> 4) * 4
        guard headerLength >= 20, offset + headerLength <= end, offset + headerLength <= packet.count else {
            return .notDNS(.truncatedIP)
        }
        return .tcp(TCPSegment(
            ipVersion: version, source: source, destination: destination,
            sourcePort: packet.u16(offset), destinationPort: packet.u16(offset + 2),
            sequence: packet.u32(offset + 4), acknowledgment: packet.u32(offset + 8), flags: packet[offset + 13],
            payloadOffset: offset + headerLength, payloadLength: end - offset - headerLength))
    }

    /// Decodes a DNS message (no IP/UDP around it) into `query`; nil on success.
    /// When the message is not `complete` (the capture was cut short), the
    /// header and question must be there; what follows is read as far as it goes.
    public static func decodeMessage(_ message: Span<UInt8>, complete: Bool = true,
                                     into query: inout DNSQuery) -> NotDNSReason? {
        guard message.count >= 12 else { return .truncatedDNS }
        let flags = message.u16(2)
        guard flags & 0x8000 == 0 else { return .notQuery }
        guard flags & 0x7800 == 0 else { return .unsupportedOpcode }
        guard message.u16(4) == 1 else { return .questionCount }
        query.id = message.u16(0)
        query.flags = flags
        var name = DomainName()
        let nameEnd: Int
        switch readName(message, at: 12, into: &name) {
        case .success(let end, let compressed):
            nameEnd = end
            query.questionCompressed = compressed
        case .failure(let reason):
            return reason
        }
        guard nameEnd + 4 <= message.count else { return .truncatedDNS }
        query.name = name
        query.type = QueryType(rawValue: message.u16(nameEnd))
        query.queryClass = QueryClass(rawValue: message.u16(nameEnd + 2))
        query.questionEnd = nameEnd + 4

        // Walk the other sections so that a malformed message is recognised and
        // an OPT record is found. Each record is at least 11 bytes, so the walk
        // is bounded by the message length as well as by the counts.
        let recordCount = Int(message.u16(6)) + Int(message.u16(8)) + Int(message.u16(10))
        let additionalStart = Int(message.u16(6)) + Int(message.u16(8))
        var offset = query.questionEnd
        for index in 0..<recordCount {
            var owner = DomainName()
            let ownerEnd: Int
            switch readName(message, at: offset, into: &owner) {
            case .success(let end, _): ownerEnd = end
            case .failure(.truncatedDNS): return complete ? .truncatedDNS : nil
            case .failure: return .badRecord
            }
            guard ownerEnd + 10 <= message.count else { return complete ? .truncatedDNS : nil }
            let type = message.u16(ownerEnd)
            let dataLength = Int(message.u16(ownerEnd + 8))
            let dataStart = ownerEnd + 10
            guard dataStart + dataLength <= message.count else { return complete ? .truncatedDNS : nil }
            if type == QueryType.opt.rawValue {
                guard index >= additionalStart, owner.labelCount == 0 else { return .badRecord }
                guard query.edns == nil else { return .duplicateOPT }
                guard let edns = readOPT(message, ownerEnd: ownerEnd, dataStart: dataStart,
                                         dataEnd: dataStart + dataLength) else { return .badRecord }
                query.edns = edns
            }
            offset = dataStart + dataLength
        }
        return nil
    }

    static func readOPT(_ message: Span<UInt8>, ownerEnd: Int, dataStart: Int, dataEnd: Int) -> EDNSInfo? {
        var info = EDNSInfo(
            udpPayloadSize: message.u16(ownerEnd + 2), version: message[ownerEnd + 5],
            dnssecOK: message[ownerEnd + 6] & 0x80 != 0, clientCookieOffset: nil, cookieLength: 0)
        var offset = dataStart
        while offset < dataEnd {  // each option advances by at least 4 bytes
            guard offset + 4 <= dataEnd else { return nil }
            let code = message.u16(offset)
            let length = Int(message.u16(offset + 2))
            guard offset + 4 + length <= dataEnd else { return nil }
            // RFC 7873: a client cookie alone (8) or with a server cookie (16-40).
            if code == EDNSOptionCode.cookie, length == 8 || (16...40).contains(length) {
                info.clientCookieOffset = offset + 4
                info.cookieLength = length
            }
            offset += 4 + length
        }
        return info
    }

    enum NameRead {
        case success(end: Int, compressed: Bool)
        case failure(NotDNSReason)
    }

    /// Reads a possibly compressed name. Every pointer must point strictly
    /// before the place the previous jump went to, so jumps cannot loop; a
    /// fixed cap bounds them further.
    static func readName(_ message: Span<UInt8>, at start: Int, into name: inout DomainName) -> NameRead {
        var offset = start
        var limit = start
        var end: Int? = nil
        var pointers = 0
        while true {  // bounded: labels by the name length, jumps by `limit` and the cap
            guard offset < message.count else { return .failure(.truncatedDNS) }
            let length = message[offset]
            switch length & 0xc0 {
            case 0x00:
                if length == 0 { return .success(end: end ?? offset + 1, compressed: end != nil) }
                let labelEnd = offset + 1 + Int(length)
                guard labelEnd <= message.count else { return .failure(.truncatedDNS) }
                guard name.appendLabel(message.extracting((offset + 1)..<labelEnd)) else {
                    return .failure(.badName)
                }
                offset = labelEnd
            case 0xc0:
                guard offset + 1 < message.count else { return .failure(.truncatedDNS) }
                let target = Int(message.u16(offset) & 0x3fff)
                pointers += 1
                guard target < limit, pointers <= maximumCompressionPointers else {
                    return .failure(.compressionLoop)
                }
                if end == nil { end = offset + 2 }
                limit = target
                offset = target
            default:
                return .failure(.badName)  // 0x40 / 0x80 label types are obsolete or reserved
            }
        }
    }
}

extension Span where Element == UInt8 {
    @inline(__always)
    func u16(_ offset: Int) -> UInt16 { UInt16(self[offset]) << 8 | UInt16(self[offset + 1]) }
    @inline(__always)
    func u32(_ offset: Int) -> UInt32 { UInt32(u16(offset)) << 16 | UInt32(u16(offset + 2)) }
    @inline(__always)
    func u64(_ offset: Int) -> UInt64 { UInt64(u32(offset)) << 32 | UInt64(u32(offset + 4)) }
}
