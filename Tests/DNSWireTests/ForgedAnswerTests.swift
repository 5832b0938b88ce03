// SPDX-License-Identifier: GPL-2.0-or-later
import Testing
@testable import DNSWire

@Suite("Forged answers (SPEC §3)")
struct ForgedAnswerTests {
    static let settings = ForgedAnswerSettings(negativeTTL: 77, extendedError: true)
    static let text = Array("blocked by dnsgate rule g/r".utf8)

    func forge(_ fixture: QueryFixture, _ kind: ForgedAnswerKind, settings: ForgedAnswerSettings = Self.settings,
               chase: ChasedTarget? = nil) throws -> (ParsedAnswer, [UInt8], [UInt8]) {
        let packet = fixture.packet()
        let query = try #require(decodedQuery(packet))
        var buffer = [UInt8](repeating: 0xee, count: 4096)
        var output = buffer.mutableSpan
        let length = try #require(ForgedAnswerBuilder.build(
            answering: query, packet: packet.span, kind: kind, settings: settings,
            extraText: Self.text.span, chase: chase, into: &output))
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

    func checkSOA(_ answer: ParsedAnswer, ttl: UInt32, owner: String = QueryFixture().name) throws {
        let soa = try #require(answer.authority.first)
        #expect(answer.authority.count == 1)
        #expect(soa.type == 6)
        #expect(soa.ttl == ttl)
        // The owner is the question name for NODATA, its parent for NXDOMAIN:
        // never a zone further up, whose real SOA a forwarder may hold (issue #9).
        #expect(soa.owner == QueryFixture.wireName(owner))
        let minimum = soa.data.suffix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        #expect(minimum == ttl)
        let mname = ParsedAnswer.readName(answer.dns, soa.dataOffset)
        #expect(mname == QueryFixture.wireName("dnsgate.invalid"))
        let rname = ParsedAnswer.readName(answer.dns, ParsedAnswer.skipName(answer.dns, soa.dataOffset))
        #expect(rname == QueryFixture.wireName("hostmaster.dnsgate.invalid"))
    }

    @Test("NXDOMAIN over IPv4 with EDNS: SOA, EDE 15 naming the rule, no invented server cookie")
    func nxdomainIPv4() throws {
        var fixture = QueryFixture()
        fixture.flags = 0x0110  // RD and CD
        let clientCookie: [UInt8] = [9, 8, 7, 6, 5, 4, 3, 2]
        fixture.ednsOptions = [(code: 10, data: clientCookie)]
        fixture.dnssecOK = true
        let (answer, bytes, query) = try forge(fixture, .nxdomain)
        checkCommon(answer, fixture, rcode: 3)
        // DO set, a validator asks: the SOA is the name's own (a validated parent SOA would win over it).
        try checkSOA(answer, ttl: 77)
        #expect(answer.counts == [1, 0, 1, 1])
        // Without DO the parent owns it (an SOA at a name that does not exist is NODATA to dnsmasq).
        fixture.dnssecOK = false
        let (plain, _, _) = try forge(fixture, .nxdomain)
        try checkSOA(plain, ttl: 77, owner: "Example.com")
        let options = try #require(answer.ednsOptions)
        #expect(options[15] == be16(15) + Self.text)
        #expect(options[10] == nil, "a client cookie alone gets no COOKIE: clients remember which servers do cookies")
        let opt = try #require(answer.additional.first)
        #expect(opt.ttl & 0x8000 != 0, "DO echoed")
        #expect(bytes.count <= query.count + 512)
    }

    @Test("a client and server cookie are echoed unchanged", arguments: [16, 24, 40])
    func serverCookieEchoed(length: Int) throws {
        var fixture = QueryFixture()
        let cookie = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }
        fixture.ednsOptions = [(code: 10, data: cookie)]
        let (answer, _, _) = try forge(fixture, .nxdomain)
        #expect(try #require(answer.ednsOptions)[10] == cookie)
    }

    /// A query whose answer is large: a long name, an OVERRIDE CNAME to a long
    /// target, EDNS advertising `size`, a full cookie.
    func largeAnswer(edns size: UInt16?, nameLength: Int, targetLength: Int) throws -> ParsedAnswer {
        var fixture = QueryFixture()
        fixture.name = (0..<(nameLength / 50)).map { _ in String(repeating: "n", count: 49) }.joined(separator: ".")
        if let size {
            fixture.ednsOptions = [(code: 10, data: [UInt8](repeating: 3, count: 40))]
            fixture.ednsPayloadSize = size
        }
        let target = (0..<(targetLength / 50)).map { _ in String(repeating: "t", count: 49) }.joined(separator: ".")
        let record = OverrideRecord(type: .cname, ttl: 300, data: QueryFixture.wireName(target))
        return try forge(fixture, .override(record)).0
    }

    @Test("never larger than 512 without EDNS, nor than the advertised size with it; TC only as a last resort")
    func sizeLimits() throws {
        let plain = try largeAnswer(edns: nil, nameLength: 250, targetLength: 250)
        #expect(plain.dns.count <= 512)
        #expect(plain.flags & 0x0200 != 0 && plain.counts[1] == 0, "does not fit 512: cut to the question, TC set")
        let small = try largeAnswer(edns: nil, nameLength: 100, targetLength: 100)
        #expect(small.dns.count <= 512 && small.flags & 0x0200 == 0 && small.counts[1] == 1)
        for size: UInt16 in [0, 100, 512] {  // below 512 counts as 512
            let answer = try largeAnswer(edns: size, nameLength: 250, targetLength: 250)
            #expect(answer.dns.count <= 512, "advertised \(size)")
        }
        let roomy = try largeAnswer(edns: 1232, nameLength: 250, targetLength: 250)
        #expect(roomy.flags & 0x0200 == 0 && roomy.counts[1] == 1)
        #expect(try #require(roomy.ednsOptions)[15] == be16(4) + Self.text, "room for everything: EDE with its text")
        #expect(try #require(roomy.ednsOptions)[10]?.count == 40)
    }

    @Test("to fit, the EDE text goes first, then the EDE, then the cookie, then the answer (TC)")
    func sheddingOrder() throws {
        // 536 bytes of header, question and CNAME: every stage falls between 512 and the whole answer.
        let full = try largeAnswer(edns: 1232, nameLength: 250, targetLength: 250)
        let fullSize = full.dns.count
        let withoutText = fullSize - Self.text.count, withoutEDE = withoutText - 6, withoutCookie = withoutEDE - 44
        #expect(withoutCookie - 11 > 512)
        var previous = fullSize
        for size in stride(from: fullSize, through: 512, by: -1) {  // every limit, one byte at a time
            let answer = try largeAnswer(edns: UInt16(size), nameLength: 250, targetLength: 250)
            #expect(answer.dns.count <= size, "limit \(size)")
            #expect(answer.dns.count <= previous, "shrinks with the limit")
            previous = answer.dns.count
            let options = answer.ednsOptions ?? [:]
            #expect((options[15].map { $0.count > 2 } ?? false) == (size >= fullSize), "text at \(size)")
            #expect((options[15] != nil) == (size >= withoutText), "EDE at \(size)")
            #expect((options[10] != nil) == (size >= withoutEDE), "cookie at \(size)")
            let truncated = answer.flags & 0x0200 != 0
            #expect(truncated == (size < withoutCookie), "TC at \(size)")
            #expect(truncated == (answer.counts[1] == 0), "a cut answer holds the question alone")
        }
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

    static let sinkhole = QueryFixture.wireName("sinkhole.example.net")
    static let cnameToSinkhole = ForgedAnswerKind.override(OverrideRecord(type: .cname, ttl: 30, data: sinkhole))

    /// A resolver's answer to `TargetQuery.make`: `answers` are (owner, type, ttl, rdata) with names
    /// compressed against the question where `compress` says so, then `authority`.
    func resolverAnswer(id: UInt16, type: UInt16, rcode: UInt8 = 0, flags: UInt8 = 0x81,
                        answers: [([UInt8], UInt16, UInt32, [UInt8])],
                        authority: [([UInt8], UInt16, UInt32, [UInt8])] = []) -> [UInt8] {
        var message = be16(id) + [flags, 0x80 | rcode] + be16(1) + be16(UInt16(answers.count))
            + be16(UInt16(authority.count)) + be16(0)
        message += Self.sinkhole + be16(type) + be16(1)
        for (owner, recordType, ttl, data) in answers + authority {
            message += owner + be16(recordType) + be16(1)
            message += [UInt8(ttl >> 24), UInt8(ttl >> 16 & 0xff), UInt8(ttl >> 8 & 0xff), UInt8(ttl & 0xff)]
            message += be16(UInt16(data.count)) + data
        }
        return message
    }

    @Test("a target's answer is read as a chain from the target: CNAMEs, then addresses; strays are left out")
    func readChasedTarget() throws {
        let cdn = QueryFixture.wireName("edge.cdn.example")
        let response = resolverAnswer(id: 0x4242, type: 1, answers: [
            ([0xc0, 12], 5, 300, cdn),  // the target by pointer, CNAME to the CDN
            (QueryFixture.wireName("unrelated.example"), 1, 5, [192, 0, 2, 9]),  // not on the chain
            (QueryFixture.wireName("EDGE.cdn.example"), 1, 120, [203, 0, 113, 53]),  // case differs: still the chain
            (cdn, 1, 100, [203, 0, 113, 54]),
            (cdn, 28, 100, [UInt8](repeating: 1, count: 16)),  // another type
        ])
        let read = TargetQuery.read(response.span, id: 0x4242, target: Self.sinkhole, type: .a)
        let chased = try #require(read)
        #expect(chased.responseCode == .noError)
        #expect(chased.records == [
            ChainRecord(type: .cname, ttl: 300, data: cdn),
            ChainRecord(type: .a, ttl: 120, data: [203, 0, 113, 53]),
            ChainRecord(type: .a, ttl: 100, data: [203, 0, 113, 54]),
        ])
        #expect(chased.ttl == 100, "kept for the shortest TTL")
        #expect(chased.aged(by: 40).records.map(\.ttl) == [260, 80, 60])
        // Not the answer to this query: ignored, so a stray or forged datagram cannot end the wait.
        let otherID = TargetQuery.read(response.span, id: 0x4243, target: Self.sinkhole, type: .a)
        let otherType = TargetQuery.read(response.span, id: 0x4242, target: Self.sinkhole, type: .aaaa)
        let otherName = TargetQuery.read(response.span, id: 0x4242, target: cdn, type: .a)
        #expect(otherID == nil && otherType == nil && otherName == nil)
    }

    @Test("an error or truncated answer fails the chase; a negative one is kept for the SOA's time")
    func readChaseFailures() throws {
        let servfail = resolverAnswer(id: 7, type: 1, rcode: 2, answers: [])
        let failedRead = TargetQuery.read(servfail.span, id: 7, target: Self.sinkhole, type: .a)
        #expect(failedRead == .failed)
        let truncated = resolverAnswer(id: 7, type: 1, flags: 0x83, answers: [])
        let truncatedRead = TargetQuery.read(truncated.span, id: 7, target: Self.sinkhole, type: .a)
        #expect(truncatedRead == .failed)
        let soa = QueryFixture.wireName("ns.example") + QueryFixture.wireName("host.example") + [UInt8](repeating: 0, count: 16)
            + [0, 0, 0, 45]
        let nxdomain = resolverAnswer(id: 7, type: 1, rcode: 3, answers: [],
                                      authority: [(QueryFixture.wireName("example.net"), 6, 900, soa)])
        let negative = TargetQuery.read(nxdomain.span, id: 7, target: Self.sinkhole, type: .a)
        #expect(negative == ChasedTarget(responseCode: .nameError, records: [], ttl: 45))
        // RFC 2181 §8: a TTL with the top bit set is 0, not an hour.
        let topBit = resolverAnswer(id: 7, type: 1, answers: [([0xc0, 12], 1, 0x8000_0000, [203, 0, 113, 9])])
        let topBitRead = TargetQuery.read(topBit.span, id: 7, target: Self.sinkhole, type: .a)
        #expect(topBitRead?.ttl == 0 && topBitRead?.records.first?.ttl == 0)
        let loop = resolverAnswer(id: 7, type: 1, answers: (0..<10).map { _ in ([0xc0, 12], 5, 60, Self.sinkhole) })
        let loopRead = TargetQuery.read(loop.span, id: 7, target: Self.sinkhole, type: .a)
        #expect(loopRead == .failed, "a CNAME loop")
    }

    @Test("OVERRIDE CNAME to A or AAAA carries the target's chain and addresses; to other types NODATA after it")
    func overrideCNAMEWithTarget() throws {
        let cdn = QueryFixture.wireName("edge.cdn.example")
        let chased = ChasedTarget(responseCode: .noError, records: [
            ChainRecord(type: .cname, ttl: 300, data: cdn), ChainRecord(type: .a, ttl: 20, data: [203, 0, 113, 53]),
        ], ttl: 20)
        let fixture = QueryFixture()
        let packet = fixture.packet()
        let query = try #require(decodedQuery(packet))
        var buffer = [UInt8](repeating: 0, count: 4096)
        var output = buffer.mutableSpan
        let length = try #require(ForgedAnswerBuilder.build(
            answering: query, packet: packet.span, kind: Self.cnameToSinkhole, settings: Self.settings,
            extraText: Self.text.span, chase: chased, into: &output))
        _ = consume output
        let answer = ParsedAnswer(Array(buffer[0..<length]))
        checkCommon(answer, fixture, rcode: 0)
        #expect(answer.lengthsConsistent)
        #expect(answer.answers.map(\.owner) == [QueryFixture.wireName(fixture.name), Self.sinkhole, cdn])
        #expect(answer.answers.map(\.type) == [5, 5, 1])
        #expect(answer.answers.map(\.ttl) == [30, 300, 20])
        #expect(answer.answers.last?.data == [203, 0, 113, 53])
        #expect(answer.authority.isEmpty)

        // The target has no address: CNAME, then NXDOMAIN as the resolver said, with an SOA.
        let missing = ChasedTarget(responseCode: .nameError, records: [], ttl: 30)
        var nxFixture = QueryFixture()
        nxFixture.type = 28
        let (nx, _, _) = try forge(nxFixture, Self.cnameToSinkhole, chase: missing)
        checkCommon(nx, nxFixture, rcode: 3)
        #expect(nx.answers.map(\.type) == [5])
        try checkSOA(nx, ttl: 77, owner: "Example.com")

        // The resolver did not answer: SERVFAIL, nothing made up.
        let (failed, _, _) = try forge(QueryFixture(), Self.cnameToSinkhole, chase: .failed)
        #expect(failed.rcode == 2 && failed.answers.isEmpty && failed.authority.isEmpty)

        // MX: the CNAME, then NODATA (no stub asks the target).
        var mxFixture = QueryFixture()
        mxFixture.type = 15
        let (mx, _, _) = try forge(mxFixture, Self.cnameToSinkhole)
        checkCommon(mx, mxFixture, rcode: 0)
        #expect(mx.answers.map(\.type) == [5])
        try checkSOA(mx, ttl: 77)
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
        var buffer = [UInt8](repeating: 0xee, count: 2 + ForgedAnswerBuilder.outputCapacity(forQueryOf: message.count))
        var output = buffer.mutableSpan
        let end = try #require(ForgedAnswerBuilder.buildMessage(
            answering: query, message: message.span, kind: kind, settings: Self.settings, extraText: Self.text.span,
            udp: false, into: &output, at: 2))
        _ = consume output
        #expect(Array(buffer[2..<end]) == parsed.dns)
        var small = [UInt8](repeating: 0, count: 2 + ForgedAnswerBuilder.outputCapacity(forQueryOf: message.count) - 1)
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
