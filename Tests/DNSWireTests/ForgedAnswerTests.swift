// SPDX-License-Identifier: GPL-2.0-or-later
import Testing
@testable import DNSWire

@Suite("Forged answers (SPEC §3)")
struct ForgedAnswerTests {
    static let settings = ForgedAnswerSettings(negativeTTL: 77, extendedError: true, cookieSecret: 0x5eed)
    static let text = Array("blocked by dnsgate rule g/r".utf8)

    func forge(_ fixture: QueryFixture, _ kind: ForgedAnswerKind,
               settings: ForgedAnswerSettings = Self.settings) throws -> (ParsedAnswer, [UInt8], [UInt8]) {
        let packet = fixture.packet()
        let query = try #require(decodedQuery(packet))
        var buffer = [UInt8](repeating: 0xee, count: 4096)
        var output = buffer.mutableSpan
        let length = try #require(ForgedAnswerBuilder.build(
            answering: query, packet: packet.span, kind: kind, settings: settings,
            extraText: Self.text.span, into: &output))
        _ = consume output
        let answer = Array(buffer[0..<length])
        return (ParsedAnswer(answer), answer, packet)
    }

    func checkCommon(_ answer: ParsedAnswer, _ fixture: QueryFixture, rcode: UInt16) {
        #expect(answer.ipChecksumValid)
        #expect(answer.udpChecksumValid)
        #expect(answer.lengthsConsistent)
        // From the query's destination to its source.
        #expect(answer.source == fixture.destination.bytes)
        #expect(answer.destination == fixture.source.bytes)
        #expect(answer.sourcePort == fixture.destinationPort)
        #expect(answer.destinationPort == fixture.sourcePort)
        #expect(answer.id == fixture.id)
        #expect(answer.flags & 0x8000 != 0, "QR")
        #expect(answer.flags & 0x7800 == fixture.flags & 0x7800, "opcode")
        #expect(answer.flags & 0x0400 == 0, "AA")
        #expect(answer.flags & 0x0100 == fixture.flags & 0x0100, "RD")
        #expect(answer.flags & 0x0080 != 0, "RA")
        #expect(answer.flags & 0x0020 == 0, "AD")
        #expect(answer.flags & 0x0010 == fixture.flags & 0x0010, "CD")
        #expect(answer.rcode == rcode)
        #expect(answer.counts[0] == 1)
        // The question byte for byte, case preserved.
        #expect(answer.questionBytes == QueryFixture.wireName(fixture.name) + be16(fixture.type) + be16(fixture.queryClass))
    }

    func checkSOA(_ answer: ParsedAnswer, ttl: UInt32) throws {
        let soa = try #require(answer.authority.first)
        #expect(answer.authority.count == 1)
        #expect(soa.type == 6)
        #expect(soa.ttl == ttl)
        // The owner is an ancestor of the question name (its last label).
        #expect(soa.owner == QueryFixture.wireName("com"))
        let minimum = soa.data.suffix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        #expect(minimum == ttl)
        let mname = ParsedAnswer.readName(answer.dns, soa.dataOffset)
        #expect(mname == QueryFixture.wireName("dnsgate.invalid"))
        let rname = ParsedAnswer.readName(answer.dns, ParsedAnswer.skipName(answer.dns, soa.dataOffset))
        #expect(rname == QueryFixture.wireName("hostmaster.dnsgate.invalid"))
    }

    @Test("NXDOMAIN over IPv4 with EDNS: SOA, EDE 15 naming the rule, cookie echoed")
    func nxdomainIPv4() throws {
        var fixture = QueryFixture()
        fixture.flags = 0x0110  // RD and CD
        let clientCookie: [UInt8] = [9, 8, 7, 6, 5, 4, 3, 2]
        fixture.ednsOptions = [(code: 10, data: clientCookie)]
        fixture.dnssecOK = true
        let (answer, bytes, query) = try forge(fixture, .nxdomain)
        checkCommon(answer, fixture, rcode: 3)
        try checkSOA(answer, ttl: 77)
        #expect(answer.counts == [1, 0, 1, 1])
        let options = try #require(answer.ednsOptions)
        #expect(options[15] == be16(15) + Self.text)
        let cookie = try #require(options[10])
        #expect(cookie.count == 16)
        #expect(Array(cookie[0..<8]) == clientCookie)
        let opt = try #require(answer.additional.first)
        #expect(opt.ttl & 0x8000 != 0, "DO echoed")
        #expect(bytes.count <= query.count + 512)
    }

    @Test("the server cookie depends on the client address and the secret")
    func serverCookie() throws {
        var fixture = QueryFixture()
        fixture.ednsOptions = [(code: 10, data: [1, 1, 1, 1, 1, 1, 1, 1])]
        let first = try #require(try forge(fixture, .nxdomain).0.ednsOptions?[10])
        let again = try #require(try forge(fixture, .nxdomain).0.ednsOptions?[10])
        #expect(first == again)
        fixture.source = IPAddress("192.0.2.11")!
        let otherClient = try #require(try forge(fixture, .nxdomain).0.ednsOptions?[10])
        #expect(first[8...] != otherClient[8...])
        var settings = Self.settings
        settings.cookieSecret = 1
        fixture.source = IPAddress("192.0.2.10")!
        let otherSecret = try #require(try forge(fixture, .nxdomain, settings: settings).0.ednsOptions?[10])
        #expect(first[8...] != otherSecret[8...])
    }

    @Test("NODATA over IPv6 without EDNS has no OPT")
    func nodataIPv6() throws {
        var fixture = QueryFixture()
        fixture.source = IPAddress("2001:db8:1::10")!
        fixture.destination = IPAddress("2001:db8:2::53")!
        fixture.type = 28
        let (answer, _, _) = try forge(fixture, .nodata)
        #expect(answer.ipVersion == 6)
        checkCommon(answer, fixture, rcode: 0)
        try checkSOA(answer, ttl: 77)
        #expect(answer.counts == [1, 0, 1, 0])
    }

    @Test("REFUSED carries no SOA")
    func refused() throws {
        var fixture = QueryFixture()
        fixture.ednsOptions = []
        let (answer, _, _) = try forge(fixture, .refused)
        checkCommon(answer, fixture, rcode: 5)
        #expect(answer.counts == [1, 0, 0, 1])
        #expect(answer.ednsOptions?[15] == be16(15) + Self.text)
    }

    @Test("OVERRIDE answers with the record; EDE 4")
    func overrideA() throws {
        var fixture = QueryFixture()
        fixture.ednsOptions = []
        let record = OverrideRecord(type: .a, ttl: 300, data: [192, 0, 2, 250])
        let (answer, _, _) = try forge(fixture, .override(record))
        checkCommon(answer, fixture, rcode: 0)
        #expect(answer.counts == [1, 1, 0, 1])
        let rr = try #require(answer.answers.first)
        #expect(rr.owner == QueryFixture.wireName(fixture.name))
        #expect(rr.type == 1 && rr.ttl == 300 && rr.data == [192, 0, 2, 250])
        #expect(answer.ednsOptions?[15] == be16(4) + Self.text)
    }

    @Test("OVERRIDE A answers an AAAA query with NODATA")
    func overrideOtherType() throws {
        var fixture = QueryFixture()
        fixture.type = 28
        let (answer, _, _) = try forge(fixture, .override(OverrideRecord(type: .a, ttl: 300, data: [192, 0, 2, 250])))
        checkCommon(answer, fixture, rcode: 0)
        #expect(answer.answers.isEmpty)
        try checkSOA(answer, ttl: 77)
    }

    @Test("OVERRIDE CNAME answers every type")
    func overrideCNAME() throws {
        var fixture = QueryFixture()
        fixture.type = 16
        let target = QueryFixture.wireName("sinkhole.example.net")
        let (answer, _, _) = try forge(fixture, .override(OverrideRecord(type: .cname, ttl: 30, data: target)))
        let rr = try #require(answer.answers.first)
        #expect(rr.type == 5 && rr.data == target && rr.ttl == 30)
    }

    @Test("a compressed question name is written out, case preserved")
    func compressedQuestion() throws {
        let fixture = QueryFixture()
        var message = fixture.dnsMessage
        // Question name "www" + pointer to a name in the header region is impossible;
        // instead point the question at a copy of the name placed... in the header: use
        // a name whose pointer targets offset 0 with header bytes shaped as a label.
        message[0] = 1  // id high byte: a label of length 1
        message[1] = UInt8(ascii: "X")
        message[2] = 0  // flags high byte 0 ends the name (QR=0, opcode 0)
        message.replaceSubrange(12..<(12 + 17), with: [3] + Array("www".utf8) + [0xc0, 0])
        let query = try #require(decodedQuery(fixture.packet(dns: message)))
        #expect(query.questionCompressed)
        #expect(query.name.text == "www.X")
        let packet = fixture.packet(dns: message)
        var buffer = [UInt8](repeating: 0, count: 2048)
        var output = buffer.mutableSpan
        let length = try #require(ForgedAnswerBuilder.build(
            answering: query, packet: packet.span, kind: .nxdomain, settings: Self.settings,
            extraText: Self.text.span, into: &output))
        _ = consume output
        let answer = ParsedAnswer(Array(buffer[0..<length]))
        #expect(answer.questionBytes == QueryFixture.wireName("www.X") + be16(1) + be16(1))
        #expect(answer.udpChecksumValid && answer.lengthsConsistent)
    }

    @Test("over TCP the answer is the same DNS message as over UDP", arguments: [
        ForgedAnswerKind.nxdomain, .nodata, .refused, .override(OverrideRecord(type: .a, ttl: 300, data: [192, 0, 2, 250])),
    ])
    func tcpMessage(kind: ForgedAnswerKind) throws {
        var fixture = QueryFixture()
        fixture.ednsOptions = [(code: 10, data: [1, 2, 3, 4, 5, 6, 7, 8])]
        let (parsed, _, _) = try forge(fixture, kind)
        let message = fixture.dnsMessage
        var query = DNSQuery(source: fixture.source, sourcePort: fixture.sourcePort, destination: fixture.destination,
                             destinationPort: 53, message: 0..<message.count, packetLength: message.count)
        #expect(QueryDecoder.decodeMessage(message.span, into: &query) == nil)
        var buffer = [UInt8](repeating: 0xee, count: 2 + message.count + ForgedAnswerBuilder.maximumGrowth)
        var output = buffer.mutableSpan
        let end = try #require(ForgedAnswerBuilder.buildMessage(
            answering: query, message: message.span, kind: kind, settings: Self.settings, extraText: Self.text.span,
            into: &output, at: 2))
        _ = consume output
        #expect(Array(buffer[2..<end]) == parsed.dns)
        var small = [UInt8](repeating: 0, count: 2 + message.count + ForgedAnswerBuilder.maximumGrowth - 1)
        var smallOutput = small.mutableSpan
        #expect(ForgedAnswerBuilder.buildMessage(answering: query, message: message.span, kind: kind,
                                                 settings: Self.settings, extraText: Self.text.span,
                                                 into: &smallOutput, at: 2) == nil)
    }

    @Test("an answer never grows more than 512 bytes, whatever the query")
    func growthBound() throws {
        var fixture = QueryFixture()
        fixture.name = Array(repeating: String(repeating: "n", count: 63), count: 3).joined(separator: ".") + ".a"
        fixture.ednsOptions = [(code: 10, data: [UInt8](repeating: 7, count: 8))]
        let target = [UInt8](repeating: 63, count: 1) + [UInt8](repeating: 0x61, count: 63)
        let longName = target + target + target + [61] + [UInt8](repeating: 0x62, count: 61) + [0]
        let longText = [UInt8](repeating: 0x41, count: 1000)
        let packet = fixture.packet()
        let query = try #require(decodedQuery(packet))
        for kind in [ForgedAnswerKind.nxdomain, .nodata, .refused,
                     .override(OverrideRecord(type: .cname, ttl: 1, data: longName))] {
            var buffer = [UInt8](repeating: 0, count: 4096)
            var output = buffer.mutableSpan
            let length = try #require(ForgedAnswerBuilder.build(
                answering: query, packet: packet.span, kind: kind, settings: Self.settings,
                extraText: longText.span, into: &output))
            #expect(length <= packet.count + 512)
        }
    }

    @Test("too small an output buffer is refused, not overrun")
    func smallBuffer() throws {
        let packet = QueryFixture().packet()
        let query = try #require(decodedQuery(packet))
        var buffer = [UInt8](repeating: 0, count: 64)
        var output = buffer.mutableSpan
        #expect(ForgedAnswerBuilder.build(answering: query, packet: packet.span, kind: .nxdomain,
                                          settings: Self.settings, extraText: Self.text.span, into: &output) == nil)
    }
}
