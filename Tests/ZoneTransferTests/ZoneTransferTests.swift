// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import Testing
@testable import ZoneTransfer

private func hex(_ text: String) -> [UInt8] {
    var bytes: [UInt8] = []
    var index = text.startIndex
    while index < text.endIndex {
        let next = text.index(index, offsetBy: 2)
        bytes.append(UInt8(text[index..<next], radix: 16)!)
        index = next
    }
    return bytes
}

private let zone = WireName("rpz.example.")!

private func soa(_ serial: UInt32) -> ResourceRecord {
    var data = WireName("ns.rpz.example.")!.wire + WireName("admin.rpz.example.")!.wire
    for value in [serial, 2, 1, 60, 30] as [UInt32] { data.appendBigEndian(value) }
    return ResourceRecord(owner: zone, type: .soa, ttl: 3600, data: data)
}

private func cname(_ owner: String, _ target: String) -> ResourceRecord {
    ResourceRecord(owner: WireName(owner + ".rpz.example.")!, type: .cname, ttl: 300, data: WireName(target)!.wire)
}

/// Signed by dnspython 2.3 (an independent implementation) at time 1700000000
/// with key `fleet-key.`, hmac-sha256, secret "0123456789abcdef0123456789abcdef":
/// an AXFR request and the two messages of its answer (the second signed with
/// the timers only, chained to the first's MAC).
private enum Dnspython {
    static let time: UInt64 = 1_700_000_000
    static let key = TSIGKey(name: WireName("fleet-key.")!, algorithm: .hmacSHA256,
                             secret: Array("0123456789abcdef0123456789abcdef".utf8))
    static let request = hex("1234000000010000000000010372707a076578616d706c650000fc000109666c6565742d6b65790000fa00ff00000000003d0b686d61632d7368613235360000006553f100012c0020c81b087b19ff52a902a874d369a563a687cefc77dae8b69e17645e9e4e172366123400000000")
    static let response1 = hex("1234800000010002000000010372707a076578616d706c650000fc0001c00c0006000100000e100021026e73c00c0561646d696ec00c0000000700000002000000010000003c0000001e03626164076578616d706c65c00c000500010000012c00010009666c6565742d6b65790000fa00ff00000000003d0b686d61632d7368613235360000006553f100012c0020d17a068d42367f61d59f518704dcc5e1751e339754c6e5c12e1972ad7c98aa70123400000000")
    static let response2 = hex("1234800000010002000000010372707a076578616d706c650000fc0001012a03626164076578616d706c65c00c000500010000012c0003012a00c00c0006000100000e100021026e73c00c0561646d696ec00c0000000700000002000000010000003c0000001e09666c6565742d6b65790000fa00ff00000000003d0b686d61632d7368613235360000006553f100012c002032378978bf9201e6d2c828a0047f117c3cdac493ea57012c2d39532d6e3bde33123400000000")
}

@Suite struct TSIGTests {
    @Test func signsARequestAsDnspythonDoes() {
        var session = TSIGSession(key: Dnspython.key)
        var request = MessageBuilder.query(id: 0x1234, zone: zone, type: .axfr)
        session.sign(&request, now: Dnspython.time)
        #expect(request == Dnspython.request)
    }

    @Test func verifiesAMultiMessageTransferSignedByDnspython() throws {
        var session = TSIGSession(key: Dnspython.key)
        var request = MessageBuilder.query(id: 0x1234, zone: zone, type: .axfr)
        session.sign(&request, now: Dnspython.time)
        var assembler = TransferAssembler(zone: zone, heldSerial: nil, maximumBytes: 1 << 20)
        var outcome: TransferOutcome? = nil
        for bytes in [Dnspython.response1, Dnspython.response2] {
            let message = try DNSMessage(bytes)
            try session.verify(bytes, message, now: Dnspython.time + 10)
            outcome = try assembler.add(message.answers)
        }
        try session.finish()
        guard case .full(let head, let records) = outcome else { Issue.record("not a full transfer: \(String(describing: outcome))"); return }
        #expect(try StartOfAuthority(head).serial == 7)
        #expect(records.map(ZoneContents.key) == ["bad.example.rpz.example. IN CNAME .", "*.bad.example.rpz.example. IN CNAME *."])
    }

    @Test func refusesAWrongSecretAChangedByteAndAStaleClock() throws {
        var wrong = Dnspython.key
        wrong.secret = Array("another secret of 32 bytes, here".utf8)
        for (key, bytes, now) in [(wrong, Dnspython.response1, Dnspython.time),
                                  (Dnspython.key, { var b = Dnspython.response1; b[60] ^= 1; return b }(), Dnspython.time),
                                  (Dnspython.key, Dnspython.response1, Dnspython.time + 301)] {
            var session = TSIGSession(key: key)
            var request = MessageBuilder.query(id: 0x1234, zone: zone, type: .axfr)
            session.sign(&request, now: Dnspython.time)
            #expect(throws: ZoneTransferError.self) { try session.verify(bytes, try DNSMessage(bytes), now: now) }
        }
    }

    @Test func refusesAnUnsignedAnswerAndAnUnsignedLastMessage() throws {
        var session = TSIGSession(key: Dnspython.key)
        var request = MessageBuilder.query(id: 0x1234, zone: zone, type: .axfr)
        session.sign(&request, now: Dnspython.time)
        let unsigned = Array(Dnspython.response2[..<(Dnspython.response2.count - 61)])
        var stripped = unsigned
        stripped[11] = 0
        #expect(throws: ZoneTransferError.self) { try session.verify(stripped, try DNSMessage(stripped), now: Dnspython.time) }
        try session.verify(Dnspython.response1, try DNSMessage(Dnspython.response1), now: Dnspython.time)
        try session.verify(stripped, try DNSMessage(stripped), now: Dnspython.time)
        #expect(throws: ZoneTransferError.self) { try session.finish() }
    }

    @Test func answersASignedNotifyWithASignedResponse() throws {
        // dnsgate as the server side: verify a signed request, sign the answer.
        var primary = TSIGSession(key: Dnspython.key)
        var notify = MessageBuilder.query(id: 7, zone: zone, type: .soa)
        notify[2] = Opcode.notify << 3 | 0x04
        primary.sign(&notify, now: Dnspython.time)
        var secondary = TSIGSession(key: Dnspython.key)
        let request = try DNSMessage(notify)
        try secondary.verify(notify, request, now: Dnspython.time)
        var answer = MessageBuilder.notifyResponse(to: request, responseCode: .noError)
        secondary.sign(&answer, now: Dnspython.time)
        try primary.verify(answer, try DNSMessage(answer), now: Dnspython.time)
        #expect(try DNSMessage(answer).opcode == Opcode.notify)
    }

    @Test func readsKeyFilesAsKnotAndBindWriteThem() throws {
        let secret = Array("0123456789abcdef0123456789abcdef".utf8)
        let base64 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
        #expect(try TSIGKey.secret(fromFile: base64 + "\n") == secret)
        #expect(try TSIGKey.secret(fromFile: "key \"fleet-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"\(base64)\";\n};\n") == secret)
        #expect(try TSIGKey.secret(fromFile: "key:\n  - id: fleet-key\n    algorithm: hmac-sha256\n    secret: \(base64)\n") == secret)
        #expect(throws: ZoneTransferError.self) { try TSIGKey.secret(fromFile: "short") }
    }
}

@Suite struct TransferTests {
    @Test func readsAnIncrementalTransferAndAppliesIt() throws {
        var contents = ZoneContents(zone: zone, soa: soa(1), records: [cname("a", "."), cname("b", ".")])
        var assembler = TransferAssembler(zone: zone, heldSerial: 1, maximumBytes: 1 << 20)
        // 1 → 2 deletes a, adds c; 2 → 3 changes b's action.
        let stream = [soa(3), soa(1), cname("a", "."), soa(2), cname("c", "."), soa(2), cname("b", "."), soa(3),
                      cname("b", "rpz-passthru."), soa(3)]
        #expect(try assembler.add(Array(stream[..<4])) == nil)
        guard case .incremental(_, let differences) = try assembler.add(Array(stream[4...])) else {
            Issue.record("not incremental"); return
        }
        try contents.apply(differences)
        #expect(contents.serial == 3)
        #expect(contents.records.keys.sorted() == ["b.rpz.example. IN CNAME rpz-passthru.", "c.rpz.example. IN CNAME ."])
    }

    @Test func takesAFullZoneAnsweredToAnIXFR() throws {
        var assembler = TransferAssembler(zone: zone, heldSerial: 1, maximumBytes: 1 << 20)
        guard case .full(_, let records) = try assembler.add([soa(5), cname("x", "."), soa(5)]) else {
            Issue.record("not full"); return
        }
        #expect(records.count == 1)
    }

    @Test func aSingleSOANotNewerIsUpToDate() throws {
        var assembler = TransferAssembler(zone: zone, heldSerial: 9, maximumBytes: 1 << 20)
        guard case .upToDate = try assembler.add([soa(9)]) else { Issue.record("not up to date"); return }
        var older = TransferAssembler(zone: zone, heldSerial: 0xffff_fff0, maximumBytes: 1 << 20)
        #expect(try older.add([soa(3)]) == nil, "serial 3 is newer than 0xfffffff0 (RFC 1982): wait for more")
    }

    @Test func refusesBrokenStreams() {
        let cases: [(UInt32?, [ResourceRecord])] = [
            (nil, [cname("a", "."), soa(1)]),                    // no SOA first
            (nil, [soa(2), cname("a", "."), soa(3)]),            // ends with another serial
            (1, [soa(3), soa(2), soa(3), soa(3)]),               // differences not from the serial held
            (1, [soa(3), soa(1), soa(2), soa(1), soa(3)]),       // a difference not from where the last ended
            (nil, [soa(2), soa(2), cname("a", ".")]),            // records after the end
        ]
        for (held, records) in cases {
            var assembler = TransferAssembler(zone: zone, heldSerial: held, maximumBytes: 1 << 20)
            #expect(throws: ZoneTransferError.self) { try assembler.add(records) }
        }
        // The budget counts names in full: a pointer to a long owner costs its length.
        var bounded = TransferAssembler(zone: zone, heldSerial: nil, maximumBytes: 150)
        #expect(throws: ZoneTransferError.self) { try bounded.add([soa(1), cname("a", "."), cname("b", "."), cname("c", ".")]) }
    }

    @Test func leavesOutRecordsOfAnotherClassOrOutsideTheZone() throws {
        var assembler = TransferAssembler(zone: zone, heldSerial: nil, maximumBytes: 1 << 20)
        var chaos = cname("c", ".")
        chaos.recordClass = .chaos
        let outside = ResourceRecord(owner: WireName("bad.example.")!, type: .cname, ttl: 300, data: WireName(".")!.wire)
        guard case .full(_, let records) = try assembler.add([soa(1), cname("a", "."), chaos, outside, soa(1)]) else {
            Issue.record("not full"); return
        }
        #expect(records.map(ZoneContents.key) == ["a.rpz.example. IN CNAME ."])
        #expect(assembler.ignored == 2)
    }

    @Test func aDeletionOfARecordNotHeldIsDrift() {
        var contents = ZoneContents(zone: zone, soa: soa(1), records: [cname("a", ".")])
        var difference = ZoneDifference(from: soa(1), to: soa(2))
        difference.deleted = [cname("zz", ".")]
        #expect(throws: ZoneTransferError.self) { try contents.apply([difference]) }
        #expect(contents.serial == 1, "nothing applied")
    }

    @Test func theMasterFileReadsBackAndCompilesAsRPZText() throws {
        let txt = ResourceRecord(owner: WireName("t.rpz.example.")!, type: .txt, ttl: 60, data: [8] + Array("a;b(\"c)\\".utf8))
        let odd = ResourceRecord(owner: WireName("o.rpz.example.")!, type: QueryType(rawValue: 65280), ttl: 60, data: [1, 2, 0xab])
        let address = ResourceRecord(owner: WireName("32.1.2.0.192.rpz-ip.rpz.example.")!, type: .a, ttl: 60, data: [198, 51, 100, 1])
        let contents = ZoneContents(zone: zone, soa: soa(4), records: [cname("a", "."), cname("*.w", "*."), txt, odd, address])
        let text = contents.masterFile()
        #expect(text.contains("$ORIGIN rpz.example.\n"))
        #expect(text.contains("t.rpz.example. 60 IN TXT \"a\\059b\\040\\034c\\041\\092\""))
        #expect(text.contains("o.rpz.example. 60 IN TYPE65280 \\# 3 0102AB"))
        #expect(text.contains("32.1.2.0.192.rpz-ip.rpz.example. 60 IN A 198.51.100.1"))
        let back = try ZoneContents(masterFile: text, zone: zone)
        #expect(back.serial == 4)
        #expect(back.records == contents.records)
        #expect(back.soa == contents.soa)
        #expect(throws: ZoneTransferError.self) { try ZoneContents(masterFile: "garbage line\n", zone: zone) }
        // Cut short at a line boundary, or with a line lost: refused (transferred again in full).
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let cut = lines.dropLast(2).joined(separator: "\n") + "\n"
        #expect(throws: ZoneTransferError.self) { try ZoneContents(masterFile: cut, zone: zone) }
        var lost = lines
        lost.remove(at: 4)
        #expect(throws: ZoneTransferError.self) { try ZoneContents(masterFile: lost.joined(separator: "\n"), zone: zone) }
    }
}

@Suite struct MessageTests {
    @Test func namesRoundTripWithEscapes() {
        for text in ["rpz.example.", ".", "a\\.b.example.", "\\032x.example.", "*.w.example."] {
            #expect(WireName(text)?.description == text, "\(text)")
        }
        #expect(WireName("a..b.") == nil)
        #expect(WireName(String(repeating: "a", count: 64) + ".") == nil)
        #expect(WireName("RPZ.Example.") == zone)
    }

    @Test func refusesForwardPointersAndShortMessages() {
        // A question whose name points at itself.
        let loop: [UInt8] = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 6, 0, 1]
        #expect(throws: ZoneTransferError.self) { try DNSMessage(loop) }
        let query = MessageBuilder.query(id: 1, zone: zone, type: .ixfr, held: soa(3))
        for length in 0..<query.count {
            #expect(throws: ZoneTransferError.self) { try DNSMessage(Array(query[..<length])) }
        }
        let message = try? DNSMessage(query)
        #expect(message?.authority.first.flatMap { try? StartOfAuthority($0).serial } == 3)
    }

    @Test func serialArithmeticWraps() {
        #expect(serialIsNewer(2, than: 1))
        #expect(serialIsNewer(1, than: 0xffff_ffff))
        #expect(!serialIsNewer(1, than: 2))
        #expect(!serialIsNewer(5, than: 5))
    }
}
