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

    @Test("an OPT option running past its record is malformed")
    func optionOverrun() {
        var fixture = QueryFixture()
        fixture.ednsOptions = [(code: 10, data: [1, 2, 3, 4, 5, 6, 7, 8])]
        var message = fixture.dnsMessage
        message[message.count - 9] = 20  // option length beyond the RDATA
        #expect(notDNSReason(fixture.packet(dns: message)) == .badRecord)
    }

    @Test("two OPT records are malformed")
    func duplicateOPT() {
        var fixture = QueryFixture()
        fixture.extraRecords = [[0] + be16(41) + be16(512) + [0, 0, 0, 0] + be16(0)]
        fixture.ednsOptions = []
        #expect(notDNSReason(fixture.packet()) == .duplicateOPT)
    }

    @Test("header shapes that are not a single-question query", arguments: [
        (UInt16(0x8100), UInt16(1), NotDNSReason.notQuery),
        (UInt16(0x2100), UInt16(1), NotDNSReason.unsupportedOpcode),  // opcode 4, NOTIFY
        (UInt16(0x2800), UInt16(1), NotDNSReason.unsupportedOpcode),  // opcode 5, UPDATE
        (UInt16(0x0100), UInt16(0), NotDNSReason.questionCount),
        (UInt16(0x0100), UInt16(2), NotDNSReason.questionCount),
    ])
    func headerShapes(flags: UInt16, questions: UInt16, reason: NotDNSReason) {
        var fixture = QueryFixture()
        fixture.flags = flags
        fixture.questionCount = questions
        #expect(notDNSReason(fixture.packet()) == reason)
    }

    @Test("every truncation of a valid query is refused, never decoded or crashed on")
    func everyTruncation() {
        var fixture = QueryFixture()
        fixture.ednsOptions = [(code: 10, data: [1, 2, 3, 4, 5, 6, 7, 8])]
        let message = fixture.dnsMessage
        for length in 0..<message.count {
            // Consistent IP and UDP lengths around a cut DNS message.
            let packet = fixture.packet(dns: Array(message[0..<length]))
            #expect(decodedQuery(packet) == nil, "DNS message cut at \(length) decoded")
            // And the raw packet cut anywhere (IP length now lies).
        }
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

    @Test("compression pointers must point strictly backwards")
    func compressionPointers() {
        var fixture = QueryFixture()
        // Question name is a pointer to itself.
        var message = fixture.dnsMessage
        message.replaceSubrange(12..<(12 + 17), with: [0xc0, 12])
        #expect(notDNSReason(fixture.packet(dns: message)) == .compressionLoop)
        // A forward pointer.
        message = fixture.dnsMessage
        message.replaceSubrange(12..<(12 + 17), with: [0xc0, 40])
        #expect(notDNSReason(fixture.packet(dns: message)) == .compressionLoop)
        // Two additional records whose owners point at each other.
        fixture.extraRecords = [[0xc0, 12 + 17 + 4 + 12] + be16(1) + be16(1) + [0, 0, 0, 0] + be16(0),
                                [0xc0, 12 + 17 + 4] + be16(1) + be16(1) + [0, 0, 0, 0] + be16(0)]
        #expect(notDNSReason(fixture.packet()) == .badRecord)
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
}
