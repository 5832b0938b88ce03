// SPDX-License-Identifier: GPL-2.0-or-later
@testable import DNSWire
import Testing

/// Builds responses byte by byte: a question, then answer records whose
/// names are given as raw wire bytes (so tests can compress them by hand).
struct ResponseFixture {
    var question = "www.cloaked.test"
    var type: UInt16 = 1
    var flags: UInt16 = 0x8180
    var answers: [[UInt8]] = []
    var answerCount: UInt16? = nil

    /// A record: owner (raw wire bytes), type, class IN, TTL 60, RDATA.
    static func record(_ owner: [UInt8], _ type: UInt16, _ data: [UInt8], recordClass: UInt16 = 1) -> [UInt8] {
        owner + be16(type) + be16(recordClass) + [0, 0, 0, 60] + be16(UInt16(data.count)) + data
    }

    /// A pointer to `offset` of the message.
    static func pointer(_ offset: Int) -> [UInt8] { [0xc0 | UInt8(offset >> 8), UInt8(offset & 0xff)] }

    var message: [UInt8] {
        var bytes = [0x12, 0x34] + be16(flags) + be16(1) + be16(answerCount ?? UInt16(answers.count)) + be16(0) + be16(0)
        bytes += QueryFixture.wireName(question) + be16(type) + be16(1)
        for answer in answers { bytes += answer }
        return bytes
    }

    func packet(source: String = "198.51.100.53", destination: String = "192.0.2.10") -> [UInt8] {
        var fixture = QueryFixture()
        fixture.source = IPAddress(source)!
        fixture.destination = IPAddress(destination)!
        fixture.sourcePort = 53
        fixture.destinationPort = 40000
        return fixture.packet(dns: message)
    }
}

/// What the walk saw: each record as "owner TYPE data", and the error if any.
func walk(_ message: [UInt8]) -> (records: [String], error: NotDNSReason?) {
    var query = DNSQuery(source: .v4(0), sourcePort: 53, destination: .v4(1), destinationPort: 1000,
                         message: 0..<message.count, packetLength: message.count)
    if let reason = QueryDecoder.decodeMessage(message.span, into: &query) { return ([], reason) }
    var records: [String] = []
    let error = AnswerSection.forEach(in: message.span, from: query.answersStart) { record in
        let data: String
        switch record.data {
        case .redirection(let target): data = target.text
        case .address(let address): data = address.description
        case .service(let target, let parameters):
            var hints: [String] = []
            AnswerSection.forEachHint(in: message.span, parameters: parameters) { hints.append($0.description); return true }
            data = "\(target.text) \(hints.joined(separator: ","))"
        case .other: data = "\(record.dataRange.count) bytes"
        }
        records.append("\(record.owner.text) \(record.type) \(data)")
        return true
    }
    return (records, error)
}

@Suite("Answer section")
struct AnswerSectionTests {
    /// Offset of the question name in every fixture message.
    static let question = 12

    @Test func chainCompressedIntoTheQuestion() {
        var response = ResponseFixture()
        // www.cloaked.test CNAME tracker.blocked.test; tracker.blocked.test A 203.0.113.66
        let targetOffset = 12 + 18 + 4 + 2 + 10  // question, then the first record's owner pointer and fixed fields
        response.answers = [
            ResponseFixture.record(ResponseFixture.pointer(Self.question), 5, QueryFixture.wireName("tracker.blocked.test")),
            ResponseFixture.record(ResponseFixture.pointer(targetOffset), 1, [203, 0, 113, 66]),
        ]
        let (records, error) = walk(response.message)
        #expect(error == nil)
        #expect(records == ["www.cloaked.test CNAME tracker.blocked.test", "tracker.blocked.test A 203.0.113.66"])
    }

    @Test func dnameAndSynthesizedCNAME() {
        var response = ResponseFixture()
        response.question = "x.alias.test"
        response.answers = [
            ResponseFixture.record(QueryFixture.wireName("alias.test"), 39, QueryFixture.wireName("blocked.test")),
            // The synthesized CNAME's target points into the DNAME's RDATA ("blocked.test").
            ResponseFixture.record(ResponseFixture.pointer(Self.question), 5, [1, UInt8(ascii: "x")] + ResponseFixture.pointer(12 + 14 + 4 + 12 + 10)),
            ResponseFixture.record(QueryFixture.wireName("x.blocked.test"), 28, Array(repeating: 0x20, count: 16)),
        ]
        let (records, error) = walk(response.message)
        #expect(error == nil)
        #expect(records == ["alias.test DNAME blocked.test", "x.alias.test CNAME x.blocked.test",
                            "x.blocked.test AAAA 2020:2020:2020:2020:2020:2020:2020:2020"])
    }

    @Test func everyClassAndOtherTypesAreRead() {
        var response = ResponseFixture()
        response.answers = [
            ResponseFixture.record(ResponseFixture.pointer(Self.question), 16, [3] + Array("abc".utf8)),
            // musl uses an A record whatever its class: the firewall reads it too.
            ResponseFixture.record(ResponseFixture.pointer(Self.question), 1, [10, 0, 0, 1], recordClass: 3),
        ]
        let (records, error) = walk(response.message)
        #expect(error == nil)
        #expect(records == ["www.cloaked.test TXT 4 bytes", "www.cloaked.test A 10.0.0.1"])
    }

    @Test(arguments: [
        // A pointer to itself, and one pointing forwards (to the next record's bytes).
        (ResponseFixture.record(ResponseFixture.pointer(12 + 22), 1, [1, 2, 3, 4]), NotDNSReason.compressionLoop),
        (ResponseFixture.record(ResponseFixture.pointer(12 + 22 + 20), 1, [1, 2, 3, 4]), NotDNSReason.compressionLoop),
        (ResponseFixture.record(ResponseFixture.pointer(12), 1, [1, 2, 3]), NotDNSReason.badRecord),
        (ResponseFixture.record(ResponseFixture.pointer(12), 28, [1, 2, 3, 4]), NotDNSReason.badRecord),
        // A CNAME whose name ends before its RDATA does, or runs past it.
        (ResponseFixture.record(ResponseFixture.pointer(12), 5, QueryFixture.wireName("a.test") + [0]), NotDNSReason.badRecord),
        (ResponseFixture.record(ResponseFixture.pointer(12), 5, [5] + Array("ab".utf8)), NotDNSReason.truncatedDNS),
    ])
    func malformedRecords(record: [UInt8], reason: NotDNSReason) {
        var response = ResponseFixture()
        response.answers = [record, ResponseFixture.record(ResponseFixture.pointer(12), 1, [203, 0, 113, 1])]
        let (records, error) = walk(response.message)
        #expect(error == reason)
        if reason == .compressionLoop {
            #expect(records.isEmpty, "an owner that cannot be read ends the walk: where its record ends is unknown")
        } else {
            // The bad record's own length still says where the next one starts: both are given.
            #expect(records.count == 2 && records.last == "www.cloaked.test A 203.0.113.1", "\(records)")
        }
    }

    /// Resolvers pass SVCB parameters they do not check: a hostile zone's
    /// broken HTTPS record must not hide the records after it.
    @Test func recordsAfterABrokenServiceRecordAreStillRead() {
        var response = ResponseFixture()
        response.type = 255
        let brokenHints = be16(1) + [0] + be16(4) + be16(6) + [192, 168, 1, 30, 1, 2]
        let pastTheEnd = be16(1) + [0] + be16(1) + be16(9) + [2] + Array("h2".utf8)
        response.answers = [
            ResponseFixture.record(ResponseFixture.pointer(12), 65, brokenHints),
            ResponseFixture.record(ResponseFixture.pointer(12), 65, pastTheEnd),
            ResponseFixture.record(ResponseFixture.pointer(12), 65, be16(1) + [0xc0, 12]),  // a compressed TargetName
            ResponseFixture.record(ResponseFixture.pointer(12), 1, [192, 168, 1, 40]),
        ]
        let (records, error) = walk(response.message)
        #expect(error == .badRecord)
        #expect(records == ["www.cloaked.test HTTPS . 192.168.1.30", "www.cloaked.test HTTPS . ",
                            "www.cloaked.test HTTPS www.cloaked.test ", "www.cloaked.test A 192.168.1.40"])
    }

    @Test func serviceRecordsTargetsAndHints() {
        var response = ResponseFixture()
        response.type = 65
        // HTTPS 1 svc.blocked.test. alpn=h2 ipv4hint=192.168.1.1,203.0.113.5 ipv6hint=fd00::1
        let parameters: [UInt8] = be16(1) + be16(3) + [2] + Array("h2".utf8)
            + be16(4) + be16(8) + [192, 168, 1, 1, 203, 0, 113, 5] + be16(6) + be16(16) + [0xfd] + Array(repeating: 0, count: 14) + [1]
        response.answers = [
            ResponseFixture.record(ResponseFixture.pointer(12), 65, be16(1) + QueryFixture.wireName("svc.blocked.test") + parameters),
            ResponseFixture.record(ResponseFixture.pointer(12), 64, be16(1) + [0]),  // TargetName ".": the owner
        ]
        let (records, error) = walk(response.message)
        #expect(error == nil)
        #expect(records == ["www.cloaked.test HTTPS svc.blocked.test 192.168.1.1,203.0.113.5,fd00::1",
                            "www.cloaked.test SVCB . "])
        // A hint list that is no whole number of addresses, or parameters past the RDATA.
        for bad in [be16(4) + be16(3) + [1, 2, 3], be16(6) + be16(20) + [1]] {
            response.answers = [ResponseFixture.record(ResponseFixture.pointer(12), 65, be16(1) + [0] + bad)]
            #expect(walk(response.message).error == .badRecord)
        }
    }

    @Test func typesMuslReadsByTheirLowByteAreAddresses() {
        var response = ResponseFixture()
        response.answers = [
            ResponseFixture.record(ResponseFixture.pointer(12), 257, [10, 0, 0, 1]),  // CAA to everyone but musl
            ResponseFixture.record(ResponseFixture.pointer(12), 257, [0, 5] + Array("issue".utf8)),
        ]
        let (records, error) = walk(response.message)
        #expect(error == nil)
        #expect(records == ["www.cloaked.test CAA 10.0.0.1", "www.cloaked.test CAA 7 bytes"])
        // Even in an answer to a CAA question: musl matches an answer on its ID alone.
        response.type = 257
        #expect(walk(response.message).records == ["www.cloaked.test CAA 10.0.0.1", "www.cloaked.test CAA 7 bytes"])
    }

    @Test func aResponseWithoutAQuestionStillHasItsAnswersRead() throws {
        var message: [UInt8] = [0x12, 0x34, 0x81, 0x80, 0, 0, 0, 1, 0, 0, 0, 0]
        message += QueryFixture.wireName("x.example") + be16(1) + be16(1) + [0, 0, 0, 60] + be16(4) + [10, 0, 0, 1]
        let (records, error) = walk(message)
        #expect(error == nil)
        #expect(records == ["x.example A 10.0.0.1"])
    }

    @Test func aCNAMETargetPointingForwardsIsALoop() {
        var response = ResponseFixture()
        let second = 12 + 22 + 12 + 2
        response.answers = [
            ResponseFixture.record(ResponseFixture.pointer(12), 5, ResponseFixture.pointer(second)),
            ResponseFixture.record(QueryFixture.wireName("blocked.test"), 1, [1, 2, 3, 4]),
        ]
        #expect(walk(response.message).error == .compressionLoop)
    }

    @Test func aLongPointerChainBackwardsEnds() {
        // Each record's owner points at the one before: backwards always, so bounded.
        var response = ResponseFixture()
        var offset = 12 + 22
        var records: [[UInt8]] = []
        var previous = 12
        for _ in 0..<200 {
            let record = ResponseFixture.record(ResponseFixture.pointer(previous), 16, [0])
            records.append(record)
            previous = offset
            offset += record.count
        }
        response.answers = records
        let (seen, error) = walk(response.message)
        #expect(error == nil)
        #expect(seen.count == 200)
    }

    @Test func truncationAtEveryByteNeverTrapsAndIsReported() {
        var response = ResponseFixture()
        response.answers = [
            ResponseFixture.record(ResponseFixture.pointer(12), 5, QueryFixture.wireName("tracker.blocked.test")),
            ResponseFixture.record(QueryFixture.wireName("tracker.blocked.test"), 1, [203, 0, 113, 66]),
        ]
        let whole = response.message
        let questionEnd = 12 + 18 + 4
        for length in questionEnd..<whole.count {
            let (_, error) = walk(Array(whole[..<length]))
            #expect(error != nil, "cut at \(length) of \(whole.count)")
        }
        #expect(walk(whole).error == nil)
    }

    @Test func moreRecordsAnnouncedThanPresent() {
        var response = ResponseFixture()
        response.answers = [ResponseFixture.record(ResponseFixture.pointer(12), 1, [1, 2, 3, 4])]
        response.answerCount = 65535
        let (records, error) = walk(response.message)
        #expect(records.count == 1)
        #expect(error == .truncatedDNS)
    }

    @Test func theQueryAResponseAnswersGoesBackToTheClient() throws {
        var response = ResponseFixture()
        response.answers = [ResponseFixture.record(ResponseFixture.pointer(12), 1, [1, 2, 3, 4])]
        let query = try #require(decodedQuery(response.packet()))
        #expect(query.isResponse)
        let asked = query.queryItAnswers
        #expect(asked.source == IPAddress("192.0.2.10"))
        #expect(asked.destination == IPAddress("198.51.100.53"))
        #expect(asked.sourcePort == 40000)
        #expect(asked.destinationPort == 53)
        #expect(asked.id == 0x1234)
    }

    @Test(arguments: [
        ("0.1.2.3", "unspecified"), ("10.20.30.40", "private"), ("127.0.0.1", "loopback"), ("100.64.0.1", "cgnat"),
        ("100.127.255.254", "cgnat"), ("169.254.1.1", "link-local"), ("172.16.0.1", "private"),
        ("172.31.255.255", "private"), ("192.168.1.10", "private"), ("::", "unspecified"), ("::1", "loopback"),
        ("fe80::1", "link-local"), ("febf::1", "link-local"), ("fec0::1", "private"), ("fc00::1", "unique-local"),
        ("fd12:3456::1", "unique-local"), ("::ffff:10.0.0.1", "private"), ("::ffff:127.0.0.1", "loopback"),
        ("64:ff9b::c0a8:10a", "private"), ("64:ff9b::cb00:7107", nil), ("64:ff9b:1::a00:1", nil),
        ("100.63.255.255", nil), ("100.128.0.0", nil), ("172.15.255.255", nil), ("172.32.0.0", nil),
        ("192.169.0.1", nil), ("169.255.0.1", nil), ("203.0.113.7", nil), ("8.8.8.8", nil), ("2001:db8::1", nil),
        ("fe00::1", nil), ("ff02::1", nil), ("::ffff:203.0.113.7", nil), ("::2", nil),
    ] as [(String, String?)])
    func localUseClasses(address: String, expected: String?) {
        #expect(IPAddress(address)!.localUseClass?.rawValue == expected)
    }

    @Test("addresses from 4 or 16 bytes, as sockets and RDATA hold them")
    func addressesFromBytes() {
        #expect(IPAddress(bytes: [198, 51, 100, 7]) == IPAddress("198.51.100.7"))
        #expect(IPAddress(bytes: IPAddress("2001:db8::53")!.bytes) == IPAddress("2001:db8::53"))
        #expect(IPAddress(bytes: [1, 2, 3]) == nil)
    }
}
