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
    case questionCount = "question_count"
    case badName = "bad_name"
    case compressionLoop = "compression_loop"
    /// An answer record whose RDATA is not what its type says (an A that is
    /// not 4 bytes, a CNAME whose name does not fill it).
    case badRecord = "bad_record"
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
    /// QDCOUNT. Every question was read and found well formed; the first is
    /// `name`/`type`/`queryClass`, the rest are read again with `nextQuestion`.
    /// 0 only for a response (a FORMERR, say; or answers some stub reads
    /// without a question), whose `name` is then empty.
    public var questionCount: Int
    public var type: QueryType
    public var queryClass: QueryClass
    public var edns: EDNSInfo?
    /// Offset just past every question: where the answer section starts.
    public var answersStart = 0

    /// QR=1: a response.
    public var isResponse: Bool { flags & 0x8000 != 0 }
    /// A response's RCODE (the header's 4 bits; EDNS's extension is not read).
    public var responseCode: ResponseCode { ResponseCode(rawValue: UInt8(flags & 0x000f)) }
}

extension DNSQuery {
    /// A query still to be decoded (`QueryDecoder.decodeMessage`) from the DNS
    /// message at `message` of a packet `packetLength` bytes long; for DNS over
    /// TCP the message is the whole "packet".
    public init(source: IPAddress, sourcePort: UInt16, destination: IPAddress, destinationPort: UInt16,
                message: Range<Int>, packetLength: Int) {
        self.init(ipVersion: source.isIPv4 ? .v4 : .v6, source: source, destination: destination,
                  sourcePort: sourcePort, destinationPort: destinationPort, packetLength: packetLength,
                  dnsOffset: message.lowerBound, dnsLength: message.count, id: 0, flags: 0, name: DomainName(),
                  questionEnd: 0, questionCompressed: false, questionCount: 0, type: .a, queryClass: .internet,
                  edns: nil)
    }
}

extension DNSQuery {
    /// Calls `body` with the query as it stands for each of its questions, in
    /// order, until it returns false (never for a response without one). A
    /// later question is marked compressed, so that a forged answer writes
    /// its name out. The decoder read them all once: each is well formed.
    public func forEachQuestion(in message: Span<UInt8>, _ body: (DNSQuery) -> Bool) {
        guard questionCount > 0, body(self) else { return }
        var offset = questionEnd
        for _ in 1..<questionCount {  // at most QueryDecoder.maximumQuestions
            guard case .success(let next) = QueryDecoder.readQuestion(message, at: offset) else { return }
            var question = self
            question.name = next.name
            question.type = next.type
            question.queryClass = next.queryClass
            question.questionCompressed = true
            question.questionEnd = next.end
            guard body(question) else { return }
            offset = next.end
        }
    }
}

public enum DecodeResult: Sendable {
    case query(DNSQuery)
    case notDNS(NotDNSReason)
    /// A UDP datagram that is an answer to a client (`isAnswerToClient`, as
    /// far as its header was read) whose DNS message cannot be read.
    case unreadableAnswer(NotDNSReason)
}

/// Decodes an IP packet (as NFQUEUE hands it over: network header first) into a
/// DNS query. Never allocates, never traps on any input; every loop is bounded
/// by the packet length or a fixed cap.
///
/// It reads what a lenient server reads: the question is decided whenever it
/// can be read, whatever the opcode, the other sections or the OPT record say
/// (real resolvers answer such messages), and every question of a message
/// with several is read.
public enum QueryDecoder {
    /// As many jumps as the most lenient servers follow (Unbound 256,
    /// dnsmasq 255): a longer chain is a loop to them too.
    static let maximumCompressionPointers = 256
    /// Real resolvers refuse more than one question; a few are decided, more
    /// are not a query anyone answers and would only multiply the work.
    public static let maximumQuestions = 8

    /// - Parameters:
    ///   - packet: the captured bytes, from the network header on.
    ///   - wireLength: the packet's length on the wire when the capture was cut
    ///     short. Such a query is still decided on its question when that was
    ///     captured; records past the capture are not read.
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
        guard packet[9] == 17 else { return .notDNS(.notUDP) }
        return decodeUDP(packet, at: headerLength, end: totalLength, version: .v4,
                         source: .v4(packet.u32(12)), destination: .v4(packet.u32(16)))
    }

    /// Walks the whole extension-header chain, as the receiving host's stack
    /// does: each header is at least 8 bytes, so the walk is bounded by the
    /// payload length.
    static func decodeIPv6(_ packet: Span<UInt8>, wire: Int) -> DecodeResult {
        guard packet.count >= 40 else { return .notDNS(.truncatedIP) }
        let payloadLength = Int(packet.u16(4))
        // A zero payload length means a jumbogram, which DNS never needs.
        guard payloadLength > 0, 40 + payloadLength <= wire else { return .notDNS(.truncatedIP) }
        let end = 40 + payloadLength
        let readable = min(end, packet.count)
        var nextHeader = packet[6]
        var offset = 40
        for _ in 0...(payloadLength / 8) {
            switch nextHeader {
            case 17:
                return decodeUDP(packet, at: offset, end: end, version: .v6,
                                 source: .v6(high: packet.u64(8), low: packet.u64(16)),
                                 destination: .v6(high: packet.u64(24), low: packet.u64(32)))
            case 0, 43, 60:  // hop-by-hop, routing, destination options
                guard offset + 8 <= readable else { return .notDNS(.truncatedIP) }
                nextHeader = packet[offset]
                offset += (Int(packet[offset + 1]) + 1) * 8
            case 44:  // fragment: only an atomic fragment (offset 0, no M flag) is whole
                guard offset + 8 <= readable else { return .notDNS(.truncatedIP) }
                guard packet.u16(offset + 2) & 0xfff9 == 0 else { return .notDNS(.fragment) }
                nextHeader = packet[offset]
                offset += 8
            case 51:  // authentication header
                guard offset + 8 <= readable else { return .notDNS(.truncatedIP) }
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
        let message = packet.extracting(dnsOffset..<min(udpEnd, packet.count))
        var query = DNSQuery(source: source, sourcePort: packet.u16(offset), destination: destination,
                             destinationPort: packet.u16(offset + 2), message: dnsOffset..<(dnsOffset + message.count),
                             packetLength: end)
        if let reason = decodeMessage(message, into: &query) {
            return query.isAnswerToClient ? .unreadableAnswer(reason) : .notDNS(reason)
        }
        return .query(query)
    }

    /// Decodes a DNS message (no IP/UDP around it) into `query`; nil on success.
    /// Success needs a message whose every question can be read; the first
    /// OPT record found in a well-formed prefix of the other sections is kept
    /// for the answer, and anything malformed there is ignored, since lenient
    /// servers answer such messages too. A response (QR=1, `isResponse`) is
    /// read the same way, so that its question and answers can be decided;
    /// it may have no question at all.
    public static func decodeMessage(_ message: Span<UInt8>, into query: inout DNSQuery) -> NotDNSReason? {
        guard message.count >= 12 else { return .truncatedDNS }
        let flags = message.u16(2)
        let response = flags & 0x8000 != 0
        let questionCount = Int(message.u16(4))
        guard questionCount >= 1 || response else { return .questionCount }
        guard questionCount <= maximumQuestions else { return .questionCount }
        query.id = message.u16(0)
        query.flags = flags
        query.questionCount = questionCount
        query.questionEnd = 12
        var offset = 12
        for index in 0..<questionCount {  // each question is at least 5 bytes: bounded by the length
            switch readQuestion(message, at: offset) {
            case .success(let question):
                if index == 0 {
                    query.name = question.name
                    query.type = question.type
                    query.queryClass = question.queryClass
                    query.questionCompressed = question.compressed
                    query.questionEnd = question.end
                }
                offset = question.end
            case .failure(let reason):
                // A response whose question cannot be read counts as undecodable
                // too: some servers answer QR=1 messages over TCP.
                return reason
            }
        }
        query.answersStart = offset
        query.edns = findOPT(message, after: offset)
        return nil
    }

    /// One question of a message.
    public struct Question: Sendable {
        public var name: DomainName
        public var type: QueryType
        public var queryClass: QueryClass
        public var compressed: Bool
        /// Offset just past the question (its class field).
        public var end: Int
    }

    public enum QuestionRead: Sendable {
        case success(Question)
        case failure(NotDNSReason)
    }

    /// Reads the question that starts at `offset` of `message`.
    public static func readQuestion(_ message: Span<UInt8>, at offset: Int) -> QuestionRead {
        var name = DomainName()
        switch readName(message, at: offset, into: &name) {
        case .success(let end, let compressed):
            guard end + 4 <= message.count else { return .failure(.truncatedDNS) }
            return .success(Question(name: name, type: QueryType(rawValue: message.u16(end)),
                                     queryClass: QueryClass(rawValue: message.u16(end + 2)),
                                     compressed: compressed, end: end + 4))
        case .failure(let reason):
            return .failure(reason)
        }
    }

    /// The first OPT record among the answer, authority and additional records
    /// that follow the questions, read only as far as they are well formed.
    /// Each record is at least 11 bytes, so the walk is bounded by the length.
    static func findOPT(_ message: Span<UInt8>, after questionsEnd: Int) -> EDNSInfo? {
        let recordCount = Int(message.u16(6)) + Int(message.u16(8)) + Int(message.u16(10))
        var offset = questionsEnd
        for _ in 0..<recordCount {
            var owner = DomainName()
            guard case .success(let ownerEnd, _) = readName(message, at: offset, into: &owner),
                  ownerEnd + 10 <= message.count else { return nil }
            let dataStart = ownerEnd + 10
            let dataEnd = dataStart + Int(message.u16(ownerEnd + 8))
            guard dataEnd <= message.count else { return nil }
            if message.u16(ownerEnd) == QueryType.opt.rawValue {
                return readOPT(message, ownerEnd: ownerEnd, dataStart: dataStart, dataEnd: dataEnd)
            }
            offset = dataEnd
        }
        return nil
    }

    /// The OPT record's fields; options are read as far as they are well formed.
    static func readOPT(_ message: Span<UInt8>, ownerEnd: Int, dataStart: Int, dataEnd: Int) -> EDNSInfo {
        var info = EDNSInfo(
            udpPayloadSize: message.u16(ownerEnd + 2), version: message[ownerEnd + 5],
            dnssecOK: message[ownerEnd + 6] & 0x80 != 0, clientCookieOffset: nil, cookieLength: 0)
        var offset = dataStart
        while offset + 4 <= dataEnd {  // each option advances by at least 4 bytes
            let code = message.u16(offset)
            let length = Int(message.u16(offset + 2))
            guard offset + 4 + length <= dataEnd else { break }
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

    /// Reads a possibly compressed name. A pointer may point anywhere but at
    /// itself (lenient servers follow forward pointers too); a fixed cap on
    /// jumps bounds loops, and the 255-octet bound of the name bounds labels.
    /// With `backwardOnly` (names in answers, which every real server
    /// compresses against what it wrote before) a pointer must point strictly
    /// before itself, or the name counts as a compression loop.
    static func readName(_ message: Span<UInt8>, at start: Int, into name: inout DomainName,
                         backwardOnly: Bool = false) -> NameRead {
        var offset = start
        var end: Int? = nil
        var pointers = 0
        while true {  // bounded: labels by the name length, jumps by the cap
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
                guard backwardOnly ? target < offset : target != offset, pointers <= maximumCompressionPointers else {
                    return .failure(.compressionLoop)
                }
                if end == nil { end = offset + 2 }
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
