// SPDX-License-Identifier: GPL-2.0-or-later
import Testing
@testable import DNSWire

@Suite("DNS over TCP")
struct TCPStreamsTests {
    static let client = IPAddress("192.0.2.10")!
    static let server = IPAddress("198.51.100.53")!

    /// An IPv4/TCP packet from the client to port 53.
    func segment(sequence: UInt32, flags: UInt8 = 0x18, payload: [UInt8] = []) -> [UInt8] {
        let tcp: [UInt8] = be16(40000) + be16(53) + be32(sequence) + be32(7777) + [0x50, flags] + be16(65535) + [0, 0, 0, 0]
        let total = 20 + tcp.count + payload.count
        return [0x45, 0] + be16(UInt16(total)) + [0, 1, 0x40, 0, 64, 6, 0, 0] + Self.client.bytes + Self.server.bytes + tcp + payload
    }

    func be32(_ value: UInt32) -> [UInt8] { be16(UInt16(value >> 16)) + be16(UInt16(value & 0xffff)) }

    func framed(_ name: String) -> [UInt8] {
        var fixture = QueryFixture()
        fixture.name = name
        let message = fixture.dnsMessage
        return be16(UInt16(message.count)) + message
    }

    /// Reads a packet; returns the action and the names decided.
    func read(_ streams: inout TCPStreams, _ packet: [UInt8], block: String? = nil) -> (TCPStreams.Action, [String]) {
        guard case .tcp(let tcp) = QueryDecoder.decode(packet: packet.span) else { return (.notDNS(.notUDP), []) }
        var names: [String] = []
        let action = streams.read(tcp, packet: packet.span) { query in
            names.append(query.name.text)
            return query.name.text != block
        }
        return (action, names)
    }

    @Test("one query per segment, two in one, and a split one held back until whole")
    func framing() {
        var streams = TCPStreams()
        #expect(read(&streams, segment(sequence: 99, flags: 0x02)).0 == .pass)  // SYN: next message at 100
        let first = framed("a.example"), second = framed("b.example"), third = framed("c.example")
        #expect(read(&streams, segment(sequence: 100, payload: first)) == (.pass, ["a.example"]))
        var sequence = UInt32(100 + first.count)
        #expect(read(&streams, segment(sequence: sequence, payload: second + third)) == (.pass, ["b.example", "c.example"]))
        sequence += UInt32(second.count + third.count)
        let split = framed("split.example")
        #expect(read(&streams, segment(sequence: sequence, payload: Array(split[0..<2]))).0 == .holdBack)
        #expect(read(&streams, segment(sequence: sequence + 2, payload: Array(split[2...]))).0 == .holdBack, "a gap")
        #expect(read(&streams, segment(sequence: sequence, payload: split)) == (.pass, ["split.example"]), "retransmitted whole")
        #expect(read(&streams, segment(sequence: sequence, payload: split)) == (.pass, []), "a retransmission is not decided twice")
    }

    @Test("a blocked query stops the reading; data of an unknown connection is not guessed at")
    func blockingAndUnknown() {
        var streams = TCPStreams()
        _ = read(&streams, segment(sequence: 0, flags: 0x02))
        let (action, names) = read(&streams, segment(sequence: 1, payload: framed("ok.example") + framed("bad.example")),
                                   block: "bad.example")
        #expect(action == .blocked && names == ["ok.example", "bad.example"])
        let after = read(&streams, segment(sequence: 1, payload: framed("ok.example")))
        #expect(after.0 == .unknownStream, "a blocked connection is forgotten")
        var other = TCPStreams()
        #expect(read(&other, segment(sequence: 1, payload: framed("x.example"))).0 == .unknownStream)
        var garbage = TCPStreams()
        _ = read(&garbage, segment(sequence: 0, flags: 0x02))
        #expect(read(&garbage, segment(sequence: 1, payload: be16(4) + [0xff, 0xff, 0xff, 0xff])).0 == .notDNS(.truncatedDNS))
    }

    @Test("resets carry valid checksums and the right sequence numbers")
    func resets() throws {
        let packet = segment(sequence: 5000, payload: framed("bad.example"))
        guard case .tcp(let tcp) = QueryDecoder.decode(packet: packet.span) else {
            Issue.record("not TCP")
            return
        }
        var buffer = [UInt8](repeating: 0, count: 128)
        var output = buffer.mutableSpan
        let length = try #require(TCPResetBuilder.toClient(tcp, into: &output))
        _ = consume output
        let reset = Array(buffer[0..<length])
        #expect(onesComplement(Array(reset[0..<20])) == 0xffff, "IP header checksum")
        let pseudo = Array(reset[12..<20]) + [0, 6] + be16(20)
        #expect(onesComplement(pseudo + Array(reset[20...])) == 0xffff, "TCP checksum")
        #expect(Array(reset[12..<16]) == Self.server.bytes && Array(reset[16..<20]) == Self.client.bytes)
        #expect(Array(reset[24..<28]) == be32(7777), "sequence = what the client acknowledged")
        #expect(reset[33] == 0x14, "RST and ACK")
    }
}
