// SPDX-License-Identifier: GPL-2.0-or-later

/// What an answer record tells the firewall: a name the answer redirects to,
/// an address a client will connect to, or nothing it looks at.
public enum AnswerData: Sendable {
    /// A CNAME's target, or a DNAME's (the zone the owner's subtree moves to).
    case redirection(DomainName)
    /// An A or AAAA record's address.
    case address(IPAddress)
    /// An SVCB or HTTPS record: its TargetName (empty for ".", the owner
    /// itself) and its parameters, as offsets into the message, whose address
    /// hints (`AnswerSection.forEachHint`) a client may connect to.
    case service(target: DomainName, parameters: Range<Int>)
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
/// record is at least 11 bytes), and compression pointers only backwards, as
/// every real server writes them (the jump cap and the 255-octet bound of a
/// name still end a loop made of backward pointers).
///
/// Every record is read whatever its class: some stubs (musl) use an A
/// record of any class, so every such record is the firewall's business.
public enum AnswerSection {
    /// Calls `body` with each answer record of `message` (a response whose
    /// questions end at `answersStart`), in order, until it returns false.
    /// Returns nil when every record read was well formed, or why the first
    /// one was not: a name past the end or pointing forwards, RDATA past the
    /// end (these end the walk: where the next record starts is unknown), an
    /// A or AAAA of the wrong length, a CNAME or DNAME whose target does not
    /// fill its RDATA exactly, an SVCB or HTTPS record whose TargetName or
    /// parameters cannot be read. A record of the latter kinds, whose
    /// RDLENGTH still says where the next one starts, does not end the walk:
    /// the records after it are read too (resolvers pass RDATA they do not
    /// check, such as SVCB parameters, and a lenient client reads on), and
    /// what could be read of it is given (a CNAME's target, an SVCB record's
    /// readable parameters: whole triples, a hint list perhaps not whole). A
    /// record none of whose RDATA can be read is given as `.other`, so that
    /// its owner is still decided.
    public static func forEach(in message: Span<UInt8>, from answersStart: Int,
                               _ body: (borrowing AnswerRecord) -> Bool) -> NotDNSReason? {
        guard message.count >= 12 else { return .truncatedDNS }
        let count = Int(message.u16(6))
        var offset = answersStart
        var firstProblem: NotDNSReason? = nil
        for _ in 0..<count {
            var owner = DomainName()
            let ownerEnd: Int
            switch QueryDecoder.readName(message, at: offset, into: &owner, backwardOnly: true) {
            case .failure(let reason): return firstProblem ?? reason
            case .success(let end, _): ownerEnd = end
            }
            guard ownerEnd + 10 <= message.count else { return firstProblem ?? .truncatedDNS }
            let type = QueryType(rawValue: message.u16(ownerEnd))
            let dataStart = ownerEnd + 10
            let dataEnd = dataStart + Int(message.u16(ownerEnd + 8))
            guard dataEnd <= message.count else { return firstProblem ?? .truncatedDNS }
            offset = dataEnd
            let (data, problem) = readData(message, type: type, dataStart..<dataEnd)
            if firstProblem == nil { firstProblem = problem }
            let record = AnswerRecord(owner: owner, type: type, recordClass: QueryClass(rawValue: message.u16(ownerEnd + 2)),
                                      ttl: message.u32(ownerEnd + 4), data: data, dataRange: dataStart..<dataEnd)
            guard body(record) else { return firstProblem }
        }
        return firstProblem
    }

    /// What a record of `type` carries in `range`, and why it is malformed if it is.
    private static func readData(_ message: Span<UInt8>, type: QueryType,
                                 _ range: Range<Int>) -> (AnswerData, NotDNSReason?) {
        let length = range.count, start = range.lowerBound
        switch type {
        case .a:
            guard length == 4 else { return (.other, .badRecord) }
            return (.address(.v4(message.u32(start))), nil)
        case .aaaa:
            guard length == 16 else { return (.other, .badRecord) }
            return (.address(.v6(high: message.u64(start), low: message.u64(start + 8))), nil)
        // musl reads a record's type by its low byte alone: to it, type 257
        // (CAA) with 4 bytes is an A record, and 284 with 16 an AAAA. It does
        // so whatever the question says (it matches an answer on its ID), so
        // such a record is an address here even in an answer to a CAA question.
        case _ where type.rawValue & 0xff == 1 && length == 4:
            return (.address(.v4(message.u32(start))), nil)
        case _ where type.rawValue & 0xff == 28 && length == 16:
            return (.address(.v6(high: message.u64(start), low: message.u64(start + 8))), nil)
        case .svcb, .https:
            // SvcPriority, TargetName (uncompressed, RFC 9460), then parameters.
            var target = DomainName()
            guard length >= 3, case .success(let targetEnd, let compressed) = QueryDecoder.readName(
                message.extracting(0..<range.upperBound), at: start + 2, into: &target, backwardOnly: true) else {
                return (.other, .badRecord)
            }
            let (parametersEnd, wellFormed) = Self.readableParameters(message, targetEnd..<range.upperBound)
            return (.service(target: target, parameters: targetEnd..<parametersEnd),
                    compressed || !wellFormed ? .badRecord : nil)
        case .cname, .dname:
            var target = DomainName()
            // The name lies within the RDATA (its pointers may reach further back).
            switch QueryDecoder.readName(message.extracting(0..<range.upperBound), at: start, into: &target,
                                         backwardOnly: true) {
            case .failure(let reason): return (.other, reason)
            case .success(let targetEnd, _):
                return (.redirection(target), targetEnd == range.upperBound ? nil : .badRecord)
            }
        default:
            return (.other, nil)
        }
    }
}

extension AnswerSection {
    /// SvcParamKeys whose values are address hints (RFC 9460).
    static let ipv4Hint: UInt16 = 4, ipv6Hint: UInt16 = 6

    /// How far the SVCB parameters at `range` are key-length-value triples
    /// within it (the end of the last one that fits), and whether they fill
    /// it with hint lists of whole addresses. Each triple is at least 4
    /// bytes: the walk is bounded by the range.
    static func readableParameters(_ message: Span<UInt8>, _ range: Range<Int>) -> (end: Int, wellFormed: Bool) {
        var offset = range.lowerBound
        var wellFormed = true
        while offset + 4 <= range.upperBound {
            let key = message.u16(offset), length = Int(message.u16(offset + 2))
            guard offset + 4 + length <= range.upperBound else { return (offset, false) }
            if key == ipv4Hint && length % 4 != 0 || key == ipv6Hint && length % 16 != 0 { wellFormed = false }
            offset += 4 + length
        }
        return (offset, wellFormed && offset == range.upperBound)
    }

    /// Calls `body` with each address hint of an SVCB or HTTPS record's
    /// readable `parameters` (`AnswerData.service`: whole triples, of which a
    /// hint list's whole addresses are read), until it returns false.
    public static func forEachHint(in message: Span<UInt8>, parameters: Range<Int>, _ body: (IPAddress) -> Bool) {
        var offset = parameters.lowerBound
        while offset + 4 <= parameters.upperBound {  // each triple is at least 4 bytes
            let key = message.u16(offset), end = offset + 4 + Int(message.u16(offset + 2))
            var hint = offset + 4
            if key == ipv4Hint {
                while hint + 4 <= end {
                    guard body(.v4(message.u32(hint))) else { return }
                    hint += 4
                }
            } else if key == ipv6Hint {
                while hint + 16 <= end {
                    guard body(.v6(high: message.u64(hint), low: message.u64(hint + 8))) else { return }
                    hint += 16
                }
            }
            offset = end
        }
    }
}

extension DNSQuery {
    /// A message from a server's port 53 to a client's port (the shipped
    /// rules queue only replies to flows clients opened), or a response from
    /// port 53 to port 53 (a forwarder asking from port 53): decided on its
    /// answer whatever its QR bit says, since some stubs (musl) match an answer
    /// on its ID alone. A response from any other port is no answer anyone
    /// waits for: it is decided on its question, in case some server reads it.
    public var isAnswerToClient: Bool { sourcePort == 53 && (destinationPort != 53 || isResponse) }
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
