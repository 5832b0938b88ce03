// SPDX-License-Identifier: GPL-2.0-or-later

/// The record an OVERRIDE block answers with, encoded once when the policy is compiled.
public struct OverrideRecord: Sendable, Hashable {
    public var type: QueryType
    public var ttl: UInt32
    /// RDATA in wire form (4 bytes for A, 16 for AAAA, an uncompressed name for CNAME).
    public var data: [UInt8]

    public init(type: QueryType, ttl: UInt32, data: [UInt8]) {
        self.type = type
        self.ttl = ttl
        self.data = data
    }

    /// Whether this record answers a query of `queryType`; otherwise the answer is NODATA.
    public func answers(_ queryType: QueryType) -> Bool {
        type == .cname || queryType == type || queryType == .any
    }
}

/// Which forged answer to send.
public enum ForgedAnswerKind: Sendable, Hashable {
    case nxdomain
    case nodata
    case refused
    case override(OverrideRecord)
}

/// Everything besides the query that shapes a forged answer. The byte arrays
/// are made when the policy is compiled; building an answer only reads them.
public struct ForgedAnswerSettings: Sendable {
    /// TTL of the SOA and its MINIMUM field (the negative-caching time).
    public var negativeTTL: UInt32
    /// Attach an RFC 8914 Extended DNS Error when the query had EDNS.
    public var extendedError: Bool
    public var serialNumber: UInt32

    public init(negativeTTL: UInt32, extendedError: Bool, serialNumber: UInt32 = 1) {
        self.negativeTTL = negativeTTL
        self.extendedError = extendedError
        self.serialNumber = serialNumber
    }
}

/// Builds a whole IP/UDP/DNS answer packet to a decoded query.
public enum ForgedAnswerBuilder {
    /// An answer is never larger than the query plus this many bytes.
    public static let maximumGrowth = 512
    /// Longest EXTRA-TEXT written, so that the growth bound always holds.
    public static let maximumExtraTextLength = 96
    static let ednsPayloadSize: UInt16 = 1232
    /// SOA MNAME `dnsgate.invalid.` (RFC 6761 reserves `.invalid`).
    static let soaPrimary: [UInt8] = [7] + Array("dnsgate".utf8) + [7] + Array("invalid".utf8) + [0]
    static let soaMailboxLabel: [UInt8] = [10] + Array("hostmaster".utf8)

    /// Writes the answer into `output` and returns its length, or nil when
    /// `output` is too small or the answer would exceed the growth bound.
    ///
    /// - Parameters:
    ///   - packet: the packet `query` was decoded from (its question is copied verbatim).
    ///   - extraText: EDE EXTRA-TEXT (UTF-8); cut at `maximumExtraTextLength`.
    public static func build(
        answering query: DNSQuery, packet: Span<UInt8>, kind: ForgedAnswerKind,
        settings: ForgedAnswerSettings, extraText: Span<UInt8>, chase: ChasedTarget? = nil,
        into output: inout MutableSpan<UInt8>
    ) -> Int? {
        let ipHeaderLength = query.ipVersion == .v4 ? 20 : 40
        let dnsStart = ipHeaderLength + 8
        // DNS message first; the IP and UDP headers need its length.
        let message = packet.extracting(query.dnsOffset..<(query.dnsOffset + query.dnsLength))
        guard let totalLength = buildMessage(answering: query, message: message, kind: kind, settings: settings,
                                             extraText: extraText, chase: chase, into: &output, at: dnsStart),
              totalLength <= query.packetLength + maximumGrowth + (chase == nil ? 0 : TargetQuery.maximumChainLength)
        else { return nil }
        var writer = PacketWriter()

        // UDP header, from the query's destination to its source.
        let udpLength = totalLength - ipHeaderLength
        writer.offset = ipHeaderLength
        writer.u16(query.destinationPort, &output)
        writer.u16(query.sourcePort, &output)
        writer.u16(UInt16(udpLength), &output)
        writer.u16(0, &output)

        writer.offset = 0
        guard var pseudoHeader = IPHeader.write(from: query.destination, to: query.source, protocol: 17,
                                                payloadLength: udpLength, &writer, &output) else { return nil }
        pseudoHeader.add(output, ipHeaderLength..<totalLength)
        let udpChecksum = pseudoHeader.value
        writer.patch16(udpChecksum == 0 ? 0xffff : udpChecksum, at: ipHeaderLength + 6, &output)
        return totalLength
    }

    /// Room `buildMessage` needs for the answer to a DNS message of `length`
    /// bytes: a compressed question written out in full, and every record
    /// and option an answer may add, a chased CNAME target's included.
    public static func outputCapacity(forQueryOf length: Int) -> Int {
        max(length, 512) + 2 * maximumGrowth + TargetQuery.maximumChainLength
    }

    /// Writes only the DNS message of the answer (as DNS over TCP carries it)
    /// into `output` from offset `start`; returns the offset just past it, or
    /// nil when `output` is too small.
    ///
    /// Over UDP (`udp`) the answer never exceeds what the client accepts: 512
    /// bytes without EDNS, its advertised size (at least 512) with it. To fit,
    /// the EDE text goes first, then the EDE, then the cookie; only then is the
    /// answer cut to its question with TC set, so the client asks over TCP.
    ///
    /// An OVERRIDE CNAME answer to A or AAAA carries `chase`, the target's
    /// records as the client's resolver gave them (none when nil); to other
    /// types it ends in NODATA after the CNAME, since no stub chases a target.
    ///
    /// - Parameter message: the query's DNS message; `query`'s offsets into it
    ///   count from its first byte.
    public static func buildMessage(
        answering query: DNSQuery, message: Span<UInt8>, kind: ForgedAnswerKind,
        settings: ForgedAnswerSettings, extraText: Span<UInt8>, chase: ChasedTarget? = nil, udp: Bool = true,
        into output: inout MutableSpan<UInt8>, at start: Int
    ) -> Int? {
        // No question, nothing to answer (a response without one, blocked on its answers).
        guard query.questionCount >= 1 else { return nil }
        guard output.count >= start + outputCapacity(forQueryOf: query.dnsLength) else { return nil }
        var writer = PacketWriter()
        writer.offset = start
        var answerRecord: OverrideRecord?
        var chain: [ChainRecord] = []
        var rcode: ResponseCode
        var withSOA = false
        switch kind {
        case .nxdomain: rcode = .nameError; withSOA = true; answerRecord = nil
        case .nodata: rcode = .noError; withSOA = true; answerRecord = nil
        case .refused: rcode = .refused; answerRecord = nil
        case .override(let record):
            rcode = .noError
            answerRecord = record.answers(query.type) ? record : nil
            withSOA = answerRecord == nil
            if record.type == .cname, query.type != .cname, query.type != .any {
                if TargetQuery.chases(query.type), let chase {
                    rcode = chase.responseCode
                    chain = rcode == .serverFailure ? [] : chase.records
                    if rcode == .serverFailure { answerRecord = nil }
                }
                // The chain ends in no data of the asked type: say so, as a resolver would.
                withSOA = rcode != .serverFailure && chain.last?.type != query.type
            }
        }
        let edns = query.edns

        // The size of every part, so that the answer is made to fit before a byte is written.
        let questionLength = query.questionCompressed ? query.name.wireLength + 4 : query.questionEnd - 12
        let recordLength = (answerRecord?.answerLength ?? 0) + chain.reduce(0) { $0 + $1.answerLength }
        // The SOA's owner, never a zone further up than the name's parent, whose
        // real SOA a forwarder may hold and then serve in place of ours. For
        // NODATA the name itself. For NXDOMAIN the name's parent: an SOA at a
        // name said not to exist makes dnsmasq cache the block as NODATA;
        // but the name itself when the query sets DO (a validating resolver
        // asks), since a validator keeps a validated parent SOA over our
        // unsigned one and serves the block with the real SOA and its TTL.
        let validatorAsks = query.edns?.dnssecOK ?? false
        let soaOwnerLabel = rcode == .nameError && !validatorAsks ? 1 : 0
        let soaOwnerIsRoot = query.name.labelCount <= soaOwnerLabel
        let soaLength = (soaOwnerIsRoot ? 1 : 2) + 10 + soaPrimary.count + soaMailboxLabel.count + 2 + 20
        // Never a server cookie of our own making (clients remember which servers do
        // cookies): a client and server cookie are echoed unchanged, a client cookie
        // alone gets none.
        var cookieLength = 0
        if let edns, edns.clientCookieOffset != nil, edns.cookieLength >= 16 { cookieLength = edns.cookieLength }
        var withEDE = edns != nil && settings.extendedError
        var textLength = withEDE ? min(extraText.count, maximumExtraTextLength) : 0
        func optLength() -> Int {
            guard edns != nil else { return 0 }
            return 11 + (cookieLength > 0 ? 4 + cookieLength : 0) + (withEDE ? 6 + textLength : 0)
        }
        let limit = udp ? edns.map { max(512, Int($0.udpPayloadSize)) } ?? 512 : Int(UInt16.max)
        let body = 12 + questionLength + recordLength + (withSOA ? soaLength : 0)
        if body + optLength() > limit { textLength = 0 }
        if body + optLength() > limit { withEDE = false }
        if body + optLength() > limit { cookieLength = 0 }
        let truncated = body + optLength() > limit
        if truncated {
            answerRecord = nil
            chain = []
            withSOA = false
        }

        // QR, the query's opcode, RD and CD; RA set; AA and AD clear; TC when cut.
        let flags: UInt16 = 0x8000 | (query.flags & 0x7800) | (truncated ? 0x0200 : 0) | (query.flags & 0x0100) | 0x0080
            | (query.flags & 0x0010) | UInt16(rcode.rawValue)
        writer.u16(query.id, &output)
        writer.u16(flags, &output)
        writer.u16(1, &output)
        writer.u16(UInt16((answerRecord == nil ? 0 : 1) + chain.count), &output)
        writer.u16(withSOA ? 1 : 0, &output)
        writer.u16(edns == nil ? 0 : 1, &output)

        // Question: byte for byte, case preserved.
        if query.questionCompressed {
            writeName(query.name, &writer, &output)
            for index in (query.questionEnd - 4)..<query.questionEnd { writer.u8(message[index], &output) }
        } else {
            for index in 12..<query.questionEnd { writer.u8(message[index], &output) }
        }
        let questionNameOffset: UInt16 = 12

        if let record = answerRecord {
            writer.u16(0xc000 | questionNameOffset, &output)
            writer.u16(record.type.rawValue, &output)
            writer.u16(QueryClass.internet.rawValue, &output)
            writer.u32(record.ttl, &output)
            writer.u16(UInt16(record.data.count), &output)
            // Each chained record is owned by the name the CNAME before it points to.
            var ownerOffset = UInt16(writer.offset - start)
            for byte in record.data { writer.u8(byte, &output) }
            for link in chain {
                writer.u16(0xc000 | ownerOffset, &output)
                writer.u16(link.type.rawValue, &output)
                writer.u16(QueryClass.internet.rawValue, &output)
                writer.u32(link.ttl, &output)
                writer.u16(UInt16(link.data.count), &output)
                if link.type == .cname { ownerOffset = UInt16(writer.offset - start) }
                for byte in link.data { writer.u8(byte, &output) }
            }
        }
        if withSOA {
            if soaOwnerIsRoot {
                writer.u8(0, &output)
            } else {
                writer.u16(0xc000 | (questionNameOffset + UInt16(query.name.labelStart(soaOwnerLabel))), &output)
            }
            writer.u16(QueryType.soa.rawValue, &output)
            writer.u16(QueryClass.internet.rawValue, &output)
            writer.u32(settings.negativeTTL, &output)
            let lengthOffset = writer.offset
            writer.u16(0, &output)
            let primaryOffset = writer.offset - start
            for byte in soaPrimary { writer.u8(byte, &output) }
            for byte in soaMailboxLabel { writer.u8(byte, &output) }
            writer.u16(0xc000 | UInt16(primaryOffset), &output)  // hostmaster.dnsgate.invalid.
            writer.u32(settings.serialNumber, &output)
            writer.u32(3600, &output)  // refresh
            writer.u32(600, &output)  // retry
            writer.u32(86400, &output)  // expire
            writer.u32(settings.negativeTTL, &output)  // minimum
            writer.patch16(UInt16(writer.offset - lengthOffset - 2), at: lengthOffset, &output)
        }
        if let edns {
            writer.u8(0, &output)
            writer.u16(QueryType.opt.rawValue, &output)
            writer.u16(ednsPayloadSize, &output)
            writer.u8(0, &output)  // extended RCODE
            writer.u8(0, &output)  // version
            writer.u16(edns.dnssecOK ? 0x8000 : 0, &output)
            let lengthOffset = writer.offset
            writer.u16(0, &output)
            if cookieLength > 0, let cookieOffset = edns.clientCookieOffset {
                writer.u16(EDNSOptionCode.cookie, &output)
                writer.u16(UInt16(cookieLength), &output)
                for index in 0..<cookieLength { writer.u8(message[cookieOffset + index], &output) }
            }
            if withEDE {
                let code: ExtendedErrorCode = if case .override = kind { .forgedAnswer } else { .blocked }
                writer.u16(EDNSOptionCode.extendedError, &output)
                writer.u16(UInt16(2 + textLength), &output)
                writer.u16(code.rawValue, &output)
                for index in 0..<textLength { writer.u8(extraText[index], &output) }
            }
            writer.patch16(UInt16(writer.offset - lengthOffset - 2), at: lengthOffset, &output)
        }
        return writer.offset
    }

    static func writeName(_ name: DomainName, _ writer: inout PacketWriter, _ output: inout MutableSpan<UInt8>) {
        for offset in 0..<name.length { writer.u8(name.wireByte(offset), &output) }
        writer.u8(0, &output)
    }
}

/// The IPv4 or IPv6 header of a packet dnsgate sends (DF set, hop limit 64).
enum IPHeader {
    static let hopLimit: UInt8 = 64

    /// Writes the header at the writer's offset (0) and returns the transport
    /// checksum's pseudo-header sum, protocol and length included; nil when the
    /// two addresses are of different families.
    static func write(from source: IPAddress, to destination: IPAddress, protocol number: UInt8, payloadLength: Int,
                      _ writer: inout PacketWriter, _ output: inout MutableSpan<UInt8>) -> InternetChecksum? {
        var pseudo = InternetChecksum()
        switch (source, destination) {
        case (.v4(let from), .v4(let to)):
            writer.u8(0x45, &output)
            writer.u8(0, &output)
            writer.u16(UInt16(20 + payloadLength), &output)
            writer.u16(0, &output)  // identification: DF set, never fragmented
            writer.u16(0x4000, &output)
            writer.u8(hopLimit, &output)
            writer.u8(number, &output)
            writer.u16(0, &output)
            writer.u32(from, &output)
            writer.u32(to, &output)
            var header = InternetChecksum()
            header.add(output, 0..<20)
            writer.patch16(header.value, at: 10, &output)
            pseudo.add32(from)
            pseudo.add32(to)
        case (.v6(let fromHigh, let fromLow), .v6(let toHigh, let toLow)):
            writer.u32(0x6000_0000, &output)
            writer.u16(UInt16(payloadLength), &output)
            writer.u8(number, &output)
            writer.u8(hopLimit, &output)
            writer.u64(fromHigh, &output)
            writer.u64(fromLow, &output)
            writer.u64(toHigh, &output)
            writer.u64(toLow, &output)
            pseudo.add64(fromHigh)
            pseudo.add64(fromLow)
            pseudo.add64(toHigh)
            pseudo.add64(toLow)
        default:
            return nil
        }
        pseudo.add16(UInt16(number))
        pseudo.add16(UInt16(payloadLength))
        return pseudo
    }
}

/// Sequential big-endian writes; the caller has checked the capacity.
struct PacketWriter {
    var offset = 0
    @inline(__always)
    mutating func u8(_ value: UInt8, _ output: inout MutableSpan<UInt8>) {
        output[offset] = value
        offset += 1
    }
    @inline(__always)
    mutating func u16(_ value: UInt16, _ output: inout MutableSpan<UInt8>) {
        u8(UInt8(truncatingIfNeeded: value >> 8), &output)
        u8(UInt8(truncatingIfNeeded: value), &output)
    }
    @inline(__always)
    mutating func u32(_ value: UInt32, _ output: inout MutableSpan<UInt8>) {
        u16(UInt16(truncatingIfNeeded: value >> 16), &output)
        u16(UInt16(truncatingIfNeeded: value), &output)
    }
    @inline(__always)
    mutating func u64(_ value: UInt64, _ output: inout MutableSpan<UInt8>) {
        u32(UInt32(truncatingIfNeeded: value >> 32), &output)
        u32(UInt32(truncatingIfNeeded: value), &output)
    }
    func patch16(_ value: UInt16, at position: Int, _ output: inout MutableSpan<UInt8>) {
        output[position] = UInt8(truncatingIfNeeded: value >> 8)
        output[position + 1] = UInt8(truncatingIfNeeded: value)
    }
}

/// RFC 1071 ones'-complement sum.
public struct InternetChecksum {
    var sum: UInt64 = 0
    public init() {}
    mutating func add16(_ value: UInt16) { sum &+= UInt64(value) }
    mutating func add32(_ value: UInt32) { sum &+= UInt64(value >> 16) &+ UInt64(value & 0xffff) }
    mutating func add64(_ value: UInt64) {
        add32(UInt32(truncatingIfNeeded: value >> 32))
        add32(UInt32(truncatingIfNeeded: value))
    }
    mutating func add(_ bytes: borrowing MutableSpan<UInt8>, _ range: Range<Int>) {
        var index = range.lowerBound
        while index + 1 < range.upperBound {
            sum &+= UInt64(bytes[index]) << 8 | UInt64(bytes[index + 1])
            index += 2
        }
        if index < range.upperBound { sum &+= UInt64(bytes[index]) << 8 }
    }
    /// Adds bytes of a read-only span (used to verify checksums).
    public mutating func add(_ bytes: Span<UInt8>, _ range: Range<Int>) {
        var index = range.lowerBound
        while index + 1 < range.upperBound {
            sum &+= UInt64(bytes[index]) << 8 | UInt64(bytes[index + 1])
            index += 2
        }
        if index < range.upperBound { sum &+= UInt64(bytes[index]) << 8 }
    }
    public var value: UInt16 {
        var folded = sum
        while folded > 0xffff { folded = (folded & 0xffff) &+ (folded >> 16) }
        return ~UInt16(folded)
    }
}
