// SPDX-License-Identifier: GPL-2.0-or-later

/// What the client's resolver said about an OVERRIDE CNAME's target, for the
/// forged answer to carry after the CNAME, as Route 53 and RPZ resolvers do:
/// no stub resolver asks for the target of a CNAME on its own.
public struct ChasedTarget: Sendable, Equatable {
    /// `.noError` or `.nameError` as the resolver answered for the target;
    /// `.serverFailure` when it could not be asked or did not answer.
    public var responseCode: ResponseCode
    /// The target's records in chain order: CNAMEs, then the addresses of the
    /// last name. Each owner is the name before it (the first's, the target).
    public var records: [ChainRecord]
    /// How long this may be reused (the shortest TTL in it, or the negative TTL).
    public var ttl: UInt32

    public init(responseCode: ResponseCode, records: [ChainRecord], ttl: UInt32) {
        self.responseCode = responseCode
        self.records = records
        self.ttl = ttl
    }

    public static let failed = ChasedTarget(responseCode: .serverFailure, records: [], ttl: 0)

    /// The same records, `seconds` older: TTLs count down as a cache's do.
    public func aged(by seconds: UInt32) -> ChasedTarget {
        var older = self
        older.ttl = ttl > seconds ? ttl - seconds : 0
        for index in older.records.indices {
            let recordTTL = older.records[index].ttl
            older.records[index].ttl = recordTTL > seconds ? recordTTL - seconds : 0
        }
        return older
    }
}

/// One record of a chased chain (type, TTL, RDATA in wire form, a CNAME's
/// uncompressed), the same value an OVERRIDE answers with; its owner is
/// implied by its place in the chain.
public typealias ChainRecord = OverrideRecord

extension OverrideRecord {
    /// Bytes the record takes in an answer, its owner written as a pointer.
    var answerLength: Int { 2 + 10 + data.count }
}

/// The query dnsgate sends for a CNAME target, and the reading of its answer.
public enum TargetQuery {
    /// Most bytes of chased records a forged answer carries (besides the
    /// growth bound every forged answer keeps); records past it are left out.
    public static let maximumChainLength = 384
    /// CNAMEs followed inside the answer before the chain counts as a loop.
    static let maximumChainHops = 8
    /// Longest a chased answer is reused, whatever its TTL says.
    public static let maximumTTL: UInt32 = 3600
    /// Reuse of an answer with no addresses and no SOA to say for how long.
    static let defaultNegativeTTL: UInt32 = 30

    /// Whether a forged CNAME answer to `type` carries the target's records.
    public static func chases(_ type: QueryType) -> Bool { type == .a || type == .aaaa }

    /// A recursive query (RD) for `type` of `target` (uncompressed wire form,
    /// root label included), with EDNS for a 1232-byte answer.
    public static func make(id: UInt16, target: [UInt8], type: QueryType) -> [UInt8] {
        var message: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xff), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]
        message += target
        message += [UInt8(type.rawValue >> 8), UInt8(type.rawValue & 0xff), 0, 1]
        message += [0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]  // OPT: 1232 bytes, no DO, no options
        return message
    }

    /// Reads `response` as the answer to `make(id:target:type:)`; nil when it
    /// is not that answer (another ID or question: ignore it). An answer cut
    /// short (TC), or any RCODE but NOERROR and NXDOMAIN, is `.failed`.
    public static func read(_ response: Span<UInt8>, id: UInt16, target: [UInt8], type: QueryType) -> ChasedTarget? {
        var targetName = DomainName()
        guard response.count >= 12, response.u16(0) == id, response[2] & 0x80 != 0, response.u16(4) == 1,
              case .success = QueryDecoder.readName(target.span, at: 0, into: &targetName),
              case .success(let question) = QueryDecoder.readQuestion(response, at: 12),
              question.name == targetName, question.type == type else { return nil }
        let responseCode = ResponseCode(rawValue: response[3] & 0x0f)
        guard response[2] & 0x02 == 0, responseCode == .noError || responseCode == .nameError else { return .failed }

        var records: [ChainRecord] = []
        var chainLength = 0
        var current = targetName
        var hops = 0
        var shortestTTL = UInt32.max
        var offset = question.end
        let answerCount = Int(response.u16(6)), authorityCount = Int(response.u16(8))
        var negativeTTL = defaultNegativeTTL
        // Each record is at least 11 bytes: the walk is bounded by the length.
        for index in 0..<(answerCount + authorityCount) {
            var owner = DomainName()
            guard case .success(let ownerEnd, _) = QueryDecoder.readName(response, at: offset, into: &owner),
                  ownerEnd + 10 <= response.count else { return .failed }
            let recordType = QueryType(rawValue: response.u16(ownerEnd))
            let recordClass = QueryClass(rawValue: response.u16(ownerEnd + 2))
            // RFC 2181 §8: a TTL with the top bit set is 0.
            let rawTTL = response.u32(ownerEnd + 4)
            let ttl = rawTTL > UInt32(Int32.max) ? 0 : min(rawTTL, maximumTTL)
            let dataStart = ownerEnd + 10
            let dataEnd = dataStart + Int(response.u16(ownerEnd + 8))
            guard dataEnd <= response.count else { return .failed }
            offset = dataEnd
            guard recordClass == .internet else { continue }
            if index >= answerCount {
                // RFC 2308: a negative answer lives for the SOA's TTL or MINIMUM, whichever is less.
                if recordType == .soa, dataEnd - dataStart >= 22 {
                    negativeTTL = min(ttl, response.u32(dataEnd - 4))
                }
                continue
            }
            guard owner == current else { continue }
            var data: [UInt8]
            if recordType == .cname {
                var next = DomainName()
                guard hops < maximumChainHops,
                      case .success = QueryDecoder.readName(response, at: dataStart, into: &next) else { return .failed }
                hops += 1
                current = next
                data = (0..<next.length).map { next.wireByte($0) } + [0]
            } else if recordType == type, dataEnd - dataStart == (type == .a ? 4 : 16) {
                data = (dataStart..<dataEnd).map { response[$0] }
            } else {
                continue
            }
            let record = ChainRecord(type: recordType, ttl: ttl, data: data)
            guard chainLength + record.answerLength <= maximumChainLength else {
                // Cut inside the CNAMEs, the chain would end in a name with no
                // data, which the resolver did not say: better no answer.
                if recordType == .cname || records.last?.type == .cname { return .failed }
                break
            }
            chainLength += record.answerLength
            records.append(record)
            shortestTTL = min(shortestTTL, ttl)
        }
        let hasAddresses = records.last?.type == type
        return ChasedTarget(responseCode: responseCode, records: records,
                            ttl: hasAddresses ? shortestTTL : min(negativeTTL, shortestTTL))
    }
}
