// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire

/// Decodes any bytes as a queued packet (whole, and as a capture cut short)
/// and as a DNS-over-TCP message, reads every question and every answer
/// record, builds every kind of forged answer for what decodes (for a
/// response, to the query it answers), and checks the answer's invariants: it
/// decodes as IP/UDP, goes back to the query's source (a response's
/// destination), and is never more than 512 bytes larger than the query.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPacket(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: data == nil ? 0 : size))
    check(bytes, wireLength: nil)
    if bytes.count > 1 { check(Array(bytes.dropLast(bytes.count / 2)), wireLength: bytes.count) }
    checkMessage(bytes)
    checkChase(bytes)
    return 0
}

let settings = ForgedAnswerSettings(negativeTTL: 60, extendedError: true)
let text = Array("blocked by dnsgate rule fuzz/fuzz".utf8)

/// The bytes as one DNS-over-TCP message, as the relay decides it.
func checkMessage(_ message: [UInt8]) {
    var query = DNSQuery(source: IPAddress("192.0.2.10")!, sourcePort: 40000, destination: IPAddress("198.51.100.53")!,
                         destinationPort: 53, message: 0..<message.count, packetLength: message.count)
    guard QueryDecoder.decodeMessage(message.span, into: &query) == nil else { return }
    readEveryQuestion(query, message.span)
    readEveryAnswer(query, message.span)
    var buffer = [UInt8](repeating: 0, count: 2 + ForgedAnswerBuilder.outputCapacity(forQueryOf: message.count))
    var output = buffer.mutableSpan
    if let end = ForgedAnswerBuilder.buildMessage(answering: query, message: message.span, kind: .nxdomain,
                                                  settings: settings, extraText: text.span, udp: false,
                                                  into: &output, at: 2) {
        precondition(end - 2 <= message.count + ForgedAnswerBuilder.maximumGrowth, "answer grew too much")
    }
}

let target: [UInt8] = [3, 119, 119, 119, 0]
let cnameToTarget = ForgedAnswerKind.override(OverrideRecord(type: .cname, ttl: 1, data: target))

/// The bytes as a resolver's answer for an OVERRIDE CNAME target (any resolver
/// a client names can send them), carried in a forged answer.
func checkChase(_ response: [UInt8]) {
    guard response.count >= 2 else { return }
    let id = UInt16(response[0]) << 8 | UInt16(response[1])
    for type in [QueryType.a, .aaaa] {
        guard let chased = TargetQuery.read(response.span, id: id, target: target, type: type) else { continue }
        let length = chased.records.reduce(0) { $0 + 12 + $1.data.count }
        precondition(length <= TargetQuery.maximumChainLength, "chain longer than its bound")
        var query = QueryFixtureQuery.make(type: type)
        let message = QueryFixtureQuery.message(type: type)
        query.dnsLength = message.count
        var buffer = [UInt8](repeating: 0, count: 2 + ForgedAnswerBuilder.outputCapacity(forQueryOf: message.count))
        var output = buffer.mutableSpan
        let end = ForgedAnswerBuilder.buildMessage(answering: query, message: message.span, kind: cnameToTarget,
                                                   settings: settings, extraText: text.span, chase: chased,
                                                   into: &output, at: 0)
        precondition(end != nil, "no answer with a chased target")
    }
}

/// A fixed query for `www.` of `type`, as the chase check answers it.
enum QueryFixtureQuery {
    static func message(type: QueryType) -> [UInt8] {
        [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 120, 0, UInt8(type.rawValue >> 8), UInt8(type.rawValue & 0xff), 0, 1]
    }
    static func make(type: QueryType) -> DNSQuery {
        let message = message(type: type)
        var query = DNSQuery(source: IPAddress("192.0.2.10")!, sourcePort: 40000,
                             destination: IPAddress("198.51.100.53")!, destinationPort: 53,
                             message: 0..<message.count, packetLength: message.count)
        precondition(QueryDecoder.decodeMessage(message.span, into: &query) == nil)
        return query
    }
}

/// A decoded query's questions all read again, as the judge reads them.
func readEveryQuestion(_ query: DNSQuery, _ message: Span<UInt8>) {
    var offset = query.questionEnd
    for _ in 1..<max(query.questionCount, 1) {
        guard case .success(let next) = QueryDecoder.readQuestion(message, at: offset) else {
            preconditionFailure("a question the decoder read is unreadable")
        }
        precondition(next.end > offset, "questions must advance")
        offset = next.end
    }
}

/// Every answer record, as the answer stage reads them: each within the message.
func readEveryAnswer(_ query: DNSQuery, _ message: Span<UInt8>) {
    var previousEnd = query.answersStart
    _ = AnswerSection.forEach(in: message, from: query.answersStart) { record in
        precondition(record.dataRange.lowerBound > previousEnd, "records must advance")
        precondition(record.dataRange.upperBound <= message.count, "RDATA past the message")
        if case .redirection(let target) = record.data { precondition(target.wireLength <= 255, "name too long") }
        previousEnd = record.dataRange.upperBound
        return true
    }
}

func check(_ packet: [UInt8], wireLength: Int?) {
    let decoded = QueryDecoder.decode(packet: packet.span, wireLength: wireLength)
    guard case .query(var query) = decoded else { return }
    let message = packet.span.extracting(query.dnsOffset..<(query.dnsOffset + query.dnsLength))
    readEveryQuestion(query, message)
    readEveryAnswer(query, message)
    // A response is answered as the query it answers: back to its destination.
    if query.isResponse { query = query.queryItAnswers }
    let kinds: [ForgedAnswerKind] = [.nxdomain, .nodata, .refused,
                                     .override(OverrideRecord(type: .a, ttl: 1, data: [192, 0, 2, 1])),
                                     .override(OverrideRecord(type: .cname, ttl: 1, data: [3, 119, 119, 119, 0]))]
    var buffer = [UInt8](repeating: 0, count: 70_000)
    for kind in kinds {
        var output = buffer.mutableSpan
        guard let length = ForgedAnswerBuilder.build(answering: query, packet: packet.span, kind: kind,
                                                     settings: settings, extraText: text.span, into: &output) else {
            continue
        }
        _ = consume output
        precondition(length <= query.packetLength + ForgedAnswerBuilder.maximumGrowth, "answer grew too much")
        let answer = Array(buffer[0..<length])
        precondition(answer[0] >> 4 == (query.ipVersion == .v4 ? 4 : 6), "wrong IP version")
        let destination = query.ipVersion == .v4 ? Array(answer[16..<20]) : Array(answer[24..<40])
        precondition(destination == query.source.bytes, "answer not to the query's source")
    }
    buffer.removeAll()
}
