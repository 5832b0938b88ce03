// SPDX-License-Identifier: GPL-2.0-or-later

/// What an answer record tells the firewall: a name the answer redirects to,
/// an address a client will connect to, or nothing it looks at.
public enum AnswerData: Sendable {
    /// A CNAME's target, or a DNAME's (the zone the owner's subtree moves to).
    case redirection(DomainName)
    /// An A or AAAA record's address.
    case address(IPAddress)
    /// Any other record, skipped by its RDLENGTH.
    case other
}

/// One record of a response's answer section.
public struct AnswerRecord: Sendable {
    public var owner: DomainName
    public var type: QueryType
    public var recordClass: QueryClass
    public var ttl: UInt32
    public var data: AnswerData
    /// The record's RDATA, as offsets into the message.
    public var dataRange: Range<Int>
}

/// Reads the answer section of a response, as strictly as the question is
/// read and more: no heap, every loop bounded by the message length (each
/// record is at least 11 bytes), and compression pointers only backwards,
/// which bounds a name's jumps without a counter.
///
/// Every record is read whatever its class: some stubs (musl) use an A
/// record of any class, so every such record is the firewall's business.
public enum AnswerSection {
    /// Calls `body` with each answer record of `message` (a response whose
    /// questions end at `answersStart`), in order, until it returns false. Returns nil when every
    /// record read was well formed, or why one was not: a name past the end
    /// or pointing forwards, RDATA past the end, an A or AAAA of the wrong
    /// length, a CNAME or DNAME whose target does not fill its RDATA exactly.
    public static func forEach(in message: Span<UInt8>, from answersStart: Int,
                               _ body: (borrowing AnswerRecord) -> Bool) -> NotDNSReason? {
        guard message.count >= 12 else { return .truncatedDNS }
        let count = Int(message.u16(6))
        var offset = answersStart
        for _ in 0..<count {
            var owner = DomainName()
            switch QueryDecoder.readName(message, at: offset, into: &owner, backwardOnly: true) {
            case .failure(let reason): return reason
            case .success(let ownerEnd, _):
                guard ownerEnd + 10 <= message.count else { return .truncatedDNS }
                let type = QueryType(rawValue: message.u16(ownerEnd))
                let dataStart = ownerEnd + 10
                let dataEnd = dataStart + Int(message.u16(ownerEnd + 8))
                guard dataEnd <= message.count else { return .truncatedDNS }
                var data = AnswerData.other
                switch type {
                case .a:
                    guard dataEnd - dataStart == 4 else { return .badRecord }
                    data = .address(.v4(message.u32(dataStart)))
                case .aaaa:
                    guard dataEnd - dataStart == 16 else { return .badRecord }
                    data = .address(.v6(high: message.u64(dataStart), low: message.u64(dataStart + 8)))
                case .cname, .dname:
                    var target = DomainName()
                    // The name lies within the RDATA (its pointers may reach further back).
                    switch QueryDecoder.readName(message.extracting(0..<dataEnd), at: dataStart, into: &target,
                                                 backwardOnly: true) {
                    case .failure(let reason): return reason
                    case .success(let targetEnd, _):
                        guard targetEnd == dataEnd else { return .badRecord }
                    }
                    data = .redirection(target)
                default:
                    break
                }
                let record = AnswerRecord(owner: owner, type: type,
                                          recordClass: QueryClass(rawValue: message.u16(ownerEnd + 2)),
                                          ttl: message.u32(ownerEnd + 4), data: data, dataRange: dataStart..<dataEnd)
                offset = dataEnd
                guard body(record) else { return nil }
            }
        }
        return nil
    }
}

extension DNSQuery {
    /// A response seen as the query it answers: addresses and ports swapped,
    /// so that a forged answer built for it goes where the response was going,
    /// from where it came, with its ID, flags and question. The client took
    /// this response, so a forged answer as long fits it too.
    public var queryItAnswers: DNSQuery {
        var query = self
        query.source = destination
        query.sourcePort = destinationPort
        query.destination = source
        query.destinationPort = sourcePort
        if var edns = query.edns {
            edns.udpPayloadSize = UInt16(clamping: max(Int(edns.udpPayloadSize), dnsLength, 512))
            query.edns = edns
        }
        return query
    }
}
