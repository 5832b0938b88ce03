// SPDX-License-Identifier: GPL-2.0-or-later
import Testing
@testable import DNSWire

@Suite("Query decoder")
struct QueryDecoderTests {
    @Test("a plain IPv4 query decodes with every field")
    func plainIPv4() throws {
        let fixture = QueryFixture()
        let query = try #require(decodedQuery(fixture.packet()))
        #expect(query.ipVersion == .v4)
        #expect(query.source == IPAddress("192.0.2.10"))
        #expect(query.destination == IPAddress("198.51.100.53"))
        #expect(query.sourcePort == 40000)
        #expect(query.destinationPort == 53)
        #expect(query.id == 0x1234)
        #expect(query.name.text == "www.Example.com")
        #expect(query.name == DomainName(text: "WWW.example.COM."))
        #expect(query.name.labelCount == 3)
        #expect(query.type == .a)
        #expect(query.queryClass == .internet)
        #expect(query.edns == nil)
        #expect(!query.questionCompressed)
        #expect(query.questionEnd == 12 + 17 + 4)
    }

    @Test("IPv6 with extension headers skipped", arguments: [
        [(UInt8(0), [UInt8](repeating: 0, count: 7))],  // hop-by-hop, 8 bytes
        [(UInt8(60), [UInt8](repeating: 0, count: 7)), (UInt8(43), [UInt8(0)] + [UInt8](repeating: 0, count: 6))],
        [(UInt8(44), [UInt8](repeating: 0, count: 7))],  // atomic fragment
        [(UInt8(0), [UInt8(1)] + [UInt8](repeating: 0, count: 14))],  // hop-by-hop, 16 bytes
    ])
    func ipv6Extensions(headers: [(UInt8, [UInt8])]) throws {
        var fixture = QueryFixture()
        fixture.source = IPAddress("2001:db8:1::10")!
        fixture.destination = IPAddress("2001:db8:2::53")!
        fixture.ipv6ExtensionHeaders = headers.map { (type: $0.0, body: $0.1) }
        let query = try #require(decodedQuery(fixture.packet()))
        #expect(query.ipVersion == .v6)
        #expect(query.source == IPAddress("2001:db8:1::10"))
        #expect(query.name.text == "www.Example.com")
    }

    @Test("a non-atomic IPv6 fragment is not decided")
    func ipv6Fragment() {
        var fixture = QueryFixture()
        fixture.source = IPAddress("2001:db8:1::10")!
        fixture.destination = IPAddress("2001:db8:2::53")!
        fixture.ipv6ExtensionHeaders = [(type: 44, body: [0, 0, 1, 0, 0, 0, 7])]  // M flag set
        #expect(notDNSReason(fixture.packet()) == .fragment)
    }

    @Test("an IPv4 fragment is not decided")
    func ipv4Fragment() {
        var packet = QueryFixture().packet()
        packet[6] = 0x20  // more fragments
        #expect(notDNSReason(packet) == .fragment)
        packet[6] = 0x00
        packet[7] = 0x10  // offset
        #expect(notDNSReason(packet) == .fragment)
    }

    @Test("EDNS with a cookie and padding")
    func ednsCookie() throws {
        var fixture = QueryFixture()
        let cookie: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
        fixture.ednsOptions = [(code: 12, data: [0, 0, 0]), (code: 10, data: cookie)]
        fixture.dnssecOK = true
        let packet = fixture.packet()
        let query = try #require(decodedQuery(packet))
        let edns = try #require(query.edns)
        #expect(edns.udpPayloadSize == 1232)
        #expect(edns.dnssecOK)
        #expect(edns.cookieLength == 8)
        let offset = try #require(edns.clientCookieOffset)
        #expect(Array(packet[(query.dnsOffset + offset)..<(query.dnsOffset + offset + 8)]) == cookie)
    }

    @Test("a cookie of a length RFC 7873 forbids is ignored, not trusted")
    func badCookieLength() throws {
        var fixture = QueryFixture()
        fixture.ednsOptions = [(code: 10, data: [1, 2, 3])]
        let query = try #require(decodedQuery(fixture.packet()))
        #expect(query.edns?.clientCookieOffset == nil)
    }

    // Lenient servers answer these (Unbound an option past RDLENGTH, dnsmasq
    // duplicate OPTs, Knot an OPT with a non-root owner): the question decides.
    @Test("an OPT option running past its record: the question is still decided")
    func optionOverrun() throws {
        var fixture = QueryFixture()
        fixture.ednsOptions = [(code: 10, data: [1, 2, 3, 4, 5, 6, 7, 8])]
        var message = fixture.dnsMessage
        message[message.count - 9] = 20  // option length beyond the RDATA
        let query = try #require(decodedQuery(fixture.packet(dns: message)))
        #expect(query.name.text == "www.Example.com")
        #expect(query.edns != nil && query.edns?.clientCookieOffset == nil, "the broken option is not trusted")
    }

    @Test("two OPT records, or one with a non-root owner: the question is still decided")
    func oddOPT() throws {
        var fixture = QueryFixture()
        fixture.extraRecords = [[0] + be16(41) + be16(512) + [0, 0, 0, 0] + be16(0)]
        fixture.ednsOptions = []
        #expect(try #require(decodedQuery(fixture.packet())).edns?.udpPayloadSize == 512, "the first OPT counts")
        fixture.extraRecords = [[1, UInt8(ascii: "x"), 0] + be16(41) + be16(777) + [0, 0, 0, 0] + be16(0)]
        fixture.ednsOptions = nil
        #expect(try #require(decodedQuery(fixture.packet())).name.text == "www.Example.com")
    }

    @Test("record counts and lengths that overrun the message: the question is still decided")
    func overruns() throws {
        var fixture = QueryFixture()
        var message = fixture.dnsMessage
        message[11] = 9  // ARCOUNT 9, no record there
        #expect(decodedQuery(fixture.packet(dns: message)) != nil)
        fixture.extraRecords = [[0xc0, 12] + be16(1) + be16(1) + [0, 0, 0, 60] + be16(400) + [192, 0, 2, 1]]
        #expect(decodedQuery(fixture.packet()) != nil, "RDLENGTH past the end")
    }

    @Test("every opcode with a question is decided; responses are read too, with or without a question", arguments: [
        (UInt16(0x8100), UInt16(1), nil),  // a response with its question: read, so a blocked one can be stopped
        (UInt16(0x8100), UInt16(0), nil),  // a response without a question: its answers are still read
        (UInt16(0x8100), UInt16(2), NotDNSReason?.some(.truncatedDNS)),  // says 2, holds 1: undecodable like a query
        (UInt16(0x0100), UInt16(9), NotDNSReason?.some(.questionCount)),  // more than anyone answers
        (UInt16(0x0900), UInt16(1), nil),  // opcode 1, IQUERY
        (UInt16(0x1100), UInt16(1), nil),  // opcode 2, STATUS
        (UInt16(0x2100), UInt16(1), nil),  // opcode 4, NOTIFY
        (UInt16(0x2800), UInt16(1), nil),  // opcode 5, UPDATE
        (UInt16(0x7900), UInt16(1), nil),  // opcode 15
        (UInt16(0x0100), UInt16(0), NotDNSReason?.some(.questionCount)),
        (UInt16(0x0100), UInt16(2), NotDNSReason?.some(.truncatedDNS)),  // says 2, holds 1
    ])
    func headerShapes(flags: UInt16, questions: UInt16, reason: NotDNSReason?) {
        var fixture = QueryFixture()
        fixture.flags = flags
        fixture.questionCount = questions
        #expect(notDNSReason(fixture.packet()) == reason)
        if let query = decodedQuery(fixture.packet()) { #expect(query.isResponse == (flags & 0x8000 != 0)) }
    }

    @Test("every question of a message with several is read")
    func severalQuestions() throws {
        var fixture = QueryFixture()
        fixture.questionCount = 3
        fixture.extraQuestions = [QueryFixture.wireName("second.example") + be16(16) + be16(1),
                                  [0xc0, 12] + be16(28) + be16(1)]
        let packet = fixture.packet()
        let query = try #require(decodedQuery(packet))
        #expect(query.questionCount == 3 && query.name.text == "www.Example.com")
        let message = Array(packet[query.dnsOffset...])
        guard case .success(let second) = QueryDecoder.readQuestion(message.span, at: query.questionEnd) else {
            Issue.record("second question unread")
            return
        }
        #expect(second.name.text == "second.example" && second.type == .txt)
        guard case .success(let third) = QueryDecoder.readQuestion(message.span, at: second.end) else {
            Issue.record("third question unread")
            return
        }
        #expect(third.name.text == "www.Example.com" && third.type == .aaaa && third.compressed)
        fixture.extraQuestions = [[5, 1, 2]]  // a broken second question
        #expect(notDNSReason(fixture.packet()) == .truncatedDNS, "an unreadable question is not decided on")
    }

    @Test("every truncation inside the question is refused; past it the question is decided")
    func everyTruncation() {
        var fixture = QueryFixture()
        fixture.ednsOptions = [(code: 10, data: [1, 2, 3, 4, 5, 6, 7, 8])]
        let message = fixture.dnsMessage
        let questionEnd = 12 + 17 + 4
        for length in 0..<message.count {
            // Consistent IP and UDP lengths around a cut DNS message.
            let packet = fixture.packet(dns: Array(message[0..<length]))
            #expect((decodedQuery(packet) != nil) == (length >= questionEnd), "DNS message cut at \(length)")
        }
        // And the raw packet cut anywhere (the IP length now lies).
        let whole = fixture.packet()
        for length in 0..<whole.count {
            #expect(decodedQuery(Array(whole[0..<length])) == nil, "packet cut at \(length) decoded")
        }
        #expect(decodedQuery(whole) != nil)
    }

    @Test("a capture cut by the copy range is decided on its question, never passed undecided")
    func copyRangeCut() throws {
        var fixture = QueryFixture()
        fixture.ednsOptions = [(code: 12, data: [UInt8](repeating: 0, count: 400)), (code: 10, data: [1, 2, 3, 4, 5, 6, 7, 8])]
        let whole = fixture.packet()
        let questionEnd = 20 + 8 + 12 + 17 + 4
        for captured in 0..<whole.count {
            let result = QueryDecoder.decode(packet: whole[0..<captured].span, wireLength: whole.count)
            if captured < questionEnd {
                guard case .notDNS = result else { Issue.record("cut at \(captured) decoded"); continue }
            } else {
                guard case .query(let query) = result else { Issue.record("cut at \(captured) refused"); continue }
                #expect(query.name.text == "www.Example.com")
                #expect(query.packetLength == whole.count)
                #expect(query.edns == nil, "the OPT record was not captured whole")
            }
        }
        // A length on the wire shorter than the IP header says is still refused.
        #expect(notDNSReason(whole) == nil)
        if case .query = QueryDecoder.decode(packet: whole[0..<100].span, wireLength: 100) { Issue.record("lying length decoded") }
    }

    @Test("compression pointers: forward ones are followed as lenient servers do, loops are refused")
    func compressionPointers() throws {
        var fixture = QueryFixture()
        // Question name is a pointer to itself.
        var message = fixture.dnsMessage
        message.replaceSubrange(12..<(12 + 17), with: [0xc0, 12])
        #expect(notDNSReason(fixture.packet(dns: message)) == .compressionLoop)
        // Two pointers at each other.
        message = fixture.dnsMessage
        message.replaceSubrange(12..<(12 + 17), with: [0xc0, 18])
        message += [0xc0, 12]
        #expect(notDNSReason(fixture.packet(dns: message)) == .compressionLoop)
        // A forward pointer to a name after the question (dnsmasq follows it).
        message = fixture.dnsMessage
        message.replaceSubrange(12..<(12 + 17), with: [0xc0, 18])
        message += QueryFixture.wireName("ads.blocked.example")
        #expect(try #require(decodedQuery(fixture.packet(dns: message))).name.text == "ads.blocked.example")
        // A chain of 18 jumps, as Unbound and dnsmasq follow it.
        message = fixture.dnsMessage
        message.replaceSubrange(12..<(12 + 17), with: [0xc0, 18])
        for hop in 0..<17 { message += [0xc0, UInt8(18 + 2 * (hop + 1))] }
        message += QueryFixture.wireName("chained.blocked.example")
        #expect(try #require(decodedQuery(fixture.packet(dns: message))).name.text == "chained.blocked.example")
        // A pointer past the end.
        message = fixture.dnsMessage
        message.replaceSubrange(12..<(12 + 17), with: [0xc0, 200])
        #expect(notDNSReason(fixture.packet(dns: message)) == .truncatedDNS)
        // Additional records whose owners point at each other: the question still decides.
        fixture.extraRecords = [[0xc0, 12 + 17 + 4 + 12] + be16(1) + be16(1) + [0, 0, 0, 0] + be16(0),
                                [0xc0, 12 + 17 + 4] + be16(1) + be16(1) + [0, 0, 0, 0] + be16(0)]
        #expect(decodedQuery(fixture.packet()) != nil)
    }

    @Test("a backward pointer in an additional record is fine")
    func backwardPointer() throws {
        var fixture = QueryFixture()
        fixture.extraRecords = [[0xc0, 12] + be16(1) + be16(1) + [0, 0, 0, 60] + be16(4) + [192, 0, 2, 1]]
        #expect(decodedQuery(fixture.packet()) != nil)
    }

    @Test("a label of 64 bytes and a name over 255 bytes are bad names")
    func oversizedNames() {
        var fixture = QueryFixture()
        fixture.name = String(repeating: "a", count: 64) + ".example"
        #expect(notDNSReason(fixture.packet()) == .badName)
        fixture.name = Array(repeating: String(repeating: "b", count: 63), count: 4).joined(separator: ".")  // 256 bytes
        #expect(notDNSReason(fixture.packet()) == .badName)
        fixture.name = Array(repeating: String(repeating: "b", count: 63), count: 3).joined(separator: ".") + "."
            + String(repeating: "c", count: 61)  // exactly 255 bytes
        #expect(decodedQuery(fixture.packet())?.name.wireLength == 255)
    }

    @Test("reserved label types are bad names")
    func reservedLabelType() {
        let fixture = QueryFixture()
        var message = fixture.dnsMessage
        message[12] = 0x41
        #expect(notDNSReason(fixture.packet(dns: message)) == .badName)
    }

    @Test("a root query and odd bytes in labels")
    func oddNames() throws {
        var fixture = QueryFixture()
        fixture.name = ""
        let root = try #require(decodedQuery(fixture.packet()))
        #expect(root.name.labelCount == 0)
        #expect(root.name.text == ".")
        fixture.name = "a.b"
        var message = fixture.dnsMessage
        message[13] = UInt8(ascii: ".")  // the label "." inside a name
        let dotted = try #require(decodedQuery(fixture.packet(dns: message)))
        #expect(dotted.name.text == "\\..b")
    }

    @Test("the whole IPv6 extension-header chain is walked: eight headers, or a kilobyte of them")
    func ipv6ExtensionHeaders() throws {
        var fixture = QueryFixture()
        fixture.source = IPAddress("2001:db8:1::10")!
        fixture.destination = IPAddress("2001:db8:2::53")!
        fixture.ipv6ExtensionHeaders = Array(repeating: (type: 60, body: [0, 1, 4, 0, 0, 0, 0]), count: 8)
        #expect(try #require(decodedQuery(fixture.packet())).name.text == "www.Example.com")
        // A 1,024-byte routing header (type 0, segments left 0): length field 127.
        fixture.ipv6ExtensionHeaders = [(type: 43, body: [127, 0, 0] + [UInt8](repeating: 0, count: 1020))]
        let long = fixture.packet()
        #expect(long.count > 1_100)
        #expect(try #require(decodedQuery(long)).name.text == "www.Example.com")
        fixture.ipv6ExtensionHeaders = Array(repeating: (type: 0, body: [0, 1, 4, 0, 0, 0, 0]), count: 40)
        #expect(decodedQuery(fixture.packet()) != nil)
        // A chain running past the payload is refused.
        var cut = fixture.packet()
        cut[41] = 200
        #expect(decodedQuery(cut) == nil)
    }

    @Test("non-UDP and non-IP packets")
    func notUDP() {
        var packet = QueryFixture().packet()
        packet[9] = 1  // ICMP
        #expect(notDNSReason(packet) == .notUDP)
        #expect(notDNSReason([0x55, 1, 2, 3]) == .unsupportedIP)
        #expect(notDNSReason([]) == .truncatedIP)
    }

    @Test("a UDP length beyond the IP packet is refused")
    func udpLength() {
        var packet = QueryFixture().packet()
        packet[24] = 0xff
        #expect(notDNSReason(packet) == .truncatedUDP)
    }
}

@Suite("Addresses")
struct AddressTests {
    @Test("IPv6 text round trip", arguments: [
        ("2001:db8::1", "2001:db8::1"), ("2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"), ("::", "::"),
        ("::ffff:192.0.2.1", "::ffff:c000:201"), ("2001:db8:1::10", "2001:db8:1::10"),
    ])
    func ipv6(text: String, expected: String) throws {
        #expect(try #require(IPAddress(text)).description == expected)
    }

    @Test("invalid addresses", arguments: ["1.2.3", "256.1.1.1", "1.2.3.4.5", "2001:db8::1::2", "12345::", "x"])
    func invalid(text: String) {
        #expect(IPAddress(text) == nil)
    }

    @Test("prefixes contain what they should")
    func networks() throws {
        let v4 = try #require(IPNetwork("192.0.2.0/24"))
        #expect(v4.contains(IPAddress("192.0.2.200")!))
        #expect(!v4.contains(IPAddress("192.0.3.1")!))
        #expect(!v4.contains(IPAddress("2001:db8::1")!))
        let v6 = try #require(IPNetwork("2001:db8:1::/48"))
        #expect(v6.contains(IPAddress("2001:db8:1:ffff::1")!))
        #expect(!v6.contains(IPAddress("2001:db8:2::1")!))
        #expect(try #require(IPNetwork("0.0.0.0/0")).contains(IPAddress("203.0.113.9")!))
        #expect(try #require(IPNetwork("2001:db8::1:2/127")).contains(IPAddress("2001:db8::1:3")!))
        #expect(IPNetwork("192.0.2.0/33") == nil)
    }

    @Test("IPv4 clients and ::ffff: prefixes are one host")
    func mappedAddresses() throws {
        let mapped = try #require(IPNetwork("::ffff:192.0.2.0/120"))
        #expect(mapped.contains(IPAddress("192.0.2.77")!))
        #expect(!mapped.contains(IPAddress("192.0.3.77")!))
        #expect(mapped.contains(IPAddress("::ffff:192.0.2.9")!))
        #expect(mapped.family == .v4)
        let v4 = try #require(IPNetwork("192.0.2.0/24"))
        #expect(v4.contains(IPAddress("::ffff:192.0.2.9")!))
        #expect(!v4.contains(IPAddress("::ffff:198.51.100.1")!))
        #expect(!v4.contains(IPAddress("2001:db8::c000:209")!))
    }

    @Test("MAC addresses and client selectors")
    func clientSelectors() throws {
        let mac = try #require(MACAddress("02:00:5E:10:00:0a"))
        #expect(mac.description == "02:00:5e:10:00:0a")
        #expect(MACAddress("02-00-5e-10-00-0a") == mac)
        for bad in ["02:00:5e:10:00", "02:00:5e:10:00:0a:0b", "02:00:5e:10:00:zz", "2:0:5e:10:0:a"] {
            #expect(MACAddress(bad) == nil, "\(bad)")
        }
        let byMAC = try #require(ClientSelector("02:00:5e:10:00:0a"))
        #expect(byMAC.matches(IPAddress("192.0.2.10")!, mac: mac) && byMAC.matches(IPAddress("2001:db8:1::10")!, mac: mac))
        #expect(!byMAC.matches(IPAddress("192.0.2.10")!, mac: nil))
        #expect(!byMAC.matches(IPAddress("192.0.2.10")!, mac: MACAddress("02:00:5e:10:00:0b")))
        #expect(ClientSelector.onlyFamily([ClientSelector("192.0.2.0/24")!, ClientSelector("::ffff:198.51.100.0/120")!]) == .v4)
        #expect(ClientSelector.onlyFamily([ClientSelector("2001:db8::/32")!]) == .v6)
        #expect(ClientSelector.onlyFamily([ClientSelector("192.0.2.0/24")!, ClientSelector("2001:db8::/32")!]) == nil)
        #expect(ClientSelector.onlyFamily([ClientSelector("192.0.2.0/24")!, byMAC]) == nil)
    }
}

@Test("query type mnemonics: IANA's names, TYPEnnn for the rest, each name once")
func queryTypeMnemonics() {
    for (text, value) in [("SSHFP", 44), ("spf", 99), ("AXFR", 252), ("TYPE44", 44), ("TYPE65534", 65534), ("URI", 256)] {
        #expect(QueryType(mnemonic: text)?.rawValue == UInt16(value), "\(text)")
    }
    #expect(QueryType(rawValue: 44).description == "SSHFP" && QueryType(rawValue: 65534).description == "TYPE65534")
    #expect(QueryType(mnemonic: "BOGUS") == nil && QueryType(mnemonic: "TYPE70000") == nil)
    for value in UInt16(0)...300 {
        let type = QueryType(rawValue: value)
        #expect(QueryType(mnemonic: type.description) == type, "\(type) does not read back")
    }
}
