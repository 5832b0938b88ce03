// SPDX-License-Identifier: GPL-2.0-or-later

/// Follows the client-to-server half of DNS-over-TCP connections (RFC 7766:
/// each message is preceded by its 2-byte length) just far enough to decide
/// every query, without reassembling streams and without passing any query
/// undecided:
/// - a segment at the expected message boundary is read message by message;
/// - a query whose question is complete is decided at once (the rest of a long
///   message is skipped as it arrives);
/// - a segment that ends inside a length or a question, or that starts after a
///   gap, is dropped: the client's TCP sends it again, and Linux coalesces the
///   retransmission with what followed, so the question arrives whole;
/// - data of a connection whose SYN was not seen is not DNS this table can read.
///
/// One table per worker (a flow always lands on the same queue); fixed size,
/// no allocation per segment. The oldest entry of a probe run gives way.
public struct TCPStreams {
    public static let capacity = 8192
    static let probes = 8

    private var keys: [UInt64]
    private var nextMessage: [UInt32]
    private var stamps: [UInt32]
    private var clock: UInt32 = 0

    public init() {
        keys = Array(repeating: 0, count: Self.capacity)
        nextMessage = Array(repeating: 0, count: Self.capacity)
        stamps = Array(repeating: 0, count: Self.capacity)
    }

    /// What to do with a segment.
    public enum Action: Equatable {
        /// Let it through: its queries (if any) were decided and none is blocked,
        /// or no query starts here (handshake, ACK, FIN, the rest of a decided
        /// message, a retransmission).
        case pass
        /// A query in it is blocked (`decide` returned false): drop it and end the connection.
        case blocked
        /// Cannot be read yet (incomplete question, gap): drop it, the client sends it again.
        case holdBack
        /// Data of a connection this table does not follow.
        case unknownStream
        /// Malformed DNS in the stream.
        case notDNS(NotDNSReason)
    }

    static func flowKey(_ segment: TCPSegment) -> UInt64 {
        var hash = NameHash()
        hash.addAddress(segment.source)
        hash.addAddress(segment.destination)
        hash.add64(UInt64(segment.sourcePort) << 16 | UInt64(segment.destinationPort))
        return max(hash.value, 1)
    }

    private func slot(of key: UInt64) -> Int? {
        var index = Int(truncatingIfNeeded: key) & (Self.capacity - 1)
        for _ in 0..<Self.probes {
            if keys[index] == key { return index }
            index = (index + 1) & (Self.capacity - 1)
        }
        return nil
    }

    private mutating func insert(_ key: UInt64, next: UInt32) {
        clock &+= 1
        var index = Int(truncatingIfNeeded: key) & (Self.capacity - 1)
        var victim = index
        for _ in 0..<Self.probes {
            if keys[index] == key || keys[index] == 0 {
                victim = index
                break
            }
            if stamps[index] &- stamps[victim] > UInt32.max / 2 { victim = index }  // older
            index = (index + 1) & (Self.capacity - 1)
        }
        keys[victim] = key
        nextMessage[victim] = next
        stamps[victim] = clock
    }


    /// Reads one client-to-server segment. `decide` is called for each query
    /// whose question is complete; it returns false when the query is blocked,
    /// which stops the reading and forgets the connection. The sequence state
    /// moves only when the segment may pass.
    public mutating func read(_ segment: TCPSegment, packet: Span<UInt8>,
                              decide: (inout DNSQuery) -> Bool) -> Action {
        let key = Self.flowKey(segment)
        if segment.flags & TCPSegment.rst != 0 {
            if let index = slot(of: key) { keys[index] = 0 }
            return .pass
        }
        if segment.flags & TCPSegment.syn != 0 {
            insert(key, next: segment.sequence &+ 1)
            return .pass
        }
        guard segment.payloadLength > 0 else { return .pass }
        guard let index = slot(of: key) else { return .unknownStream }
        let next = nextMessage[index]
        let ahead = Int32(bitPattern: segment.sequence &- next)
        if ahead > 0 { return .holdBack }  // a gap: wait for the bytes before it
        // The copy range may cut the payload: what is not captured is never guessed at.
        let captured = max(0, min(segment.payloadLength, packet.count - segment.payloadOffset))
        var offset = Int(-ahead)  // where, in this payload, the next message starts
        if offset >= segment.payloadLength { return .pass }  // all seen before
        let payload = packet.extracting(segment.payloadOffset..<(segment.payloadOffset + captured))
        while offset < segment.payloadLength {  // each turn consumes a message or returns
            guard offset + 2 <= payload.count else { return .holdBack }
            let length = Int(payload.u16(offset))
            let messageEnd = offset + 2 + length
            let message = payload.extracting((offset + 2)..<min(messageEnd, payload.count))
            var query = DNSQuery(
                ipVersion: segment.ipVersion, source: segment.source, destination: segment.destination,
                sourcePort: segment.sourcePort, destinationPort: segment.destinationPort,
                packetLength: 0, dnsOffset: 0, dnsLength: message.count, id: 0, flags: 0, name: DomainName(),
                questionEnd: 0, questionCompressed: false, type: .a, queryClass: .internet, edns: nil)
            let complete = messageEnd <= payload.count
            if let reason = QueryDecoder.decodeMessage(message, complete: complete, into: &query) {
                if !complete, reason == .truncatedDNS { return .holdBack }
                nextMessage[index] = segment.sequence &+ UInt32(truncatingIfNeeded: messageEnd)
                return .notDNS(reason)
            }
            guard decide(&query) else {
                keys[index] = 0
                return .blocked
            }
            offset = messageEnd
        }
        nextMessage[index] = segment.sequence &+ UInt32(truncatingIfNeeded: offset)
        return .pass
    }
}

/// Builds the two resets that end a TCP connection carrying a blocked query.
public enum TCPResetBuilder {
    /// To the client, from the server: its sequence is what the client acknowledged.
    public static func toClient(_ segment: TCPSegment, into output: inout MutableSpan<UInt8>) -> Int? {
        build(from: segment.destination, to: segment.source, sourcePort: segment.destinationPort,
              destinationPort: segment.sourcePort, sequence: segment.acknowledgment,
              acknowledgment: segment.sequence &+ UInt32(truncatingIfNeeded: segment.payloadLength),
              flags: TCPSegment.rst | TCPSegment.ack, into: &output)
    }

    /// To the server, from the client, at the start of the dropped segment.
    public static func toServer(_ segment: TCPSegment, into output: inout MutableSpan<UInt8>) -> Int? {
        build(from: segment.source, to: segment.destination, sourcePort: segment.sourcePort,
              destinationPort: segment.destinationPort, sequence: segment.sequence, acknowledgment: 0,
              flags: TCPSegment.rst, into: &output)
    }

    static func build(from: IPAddress, to: IPAddress, sourcePort: UInt16, destinationPort: UInt16, sequence: UInt32,
                      acknowledgment: UInt32, flags: UInt8, into output: inout MutableSpan<UInt8>) -> Int? {
        let ipLength = from.isIPv4 ? 20 : 40
        let total = ipLength + 20
        guard output.count >= total, from.isIPv4 == to.isIPv4 else { return nil }
        var writer = PacketWriter()
        guard var pseudo = IPHeader.write(from: from, to: to, protocol: 6, payloadLength: 20, &writer, &output) else {
            return nil
        }
        writer.u16(sourcePort, &output); writer.u16(destinationPort, &output)
        writer.u32(sequence, &output); writer.u32(acknowledgment, &output)
        writer.u8(5 << 4, &output); writer.u8(flags, &output)
        writer.u16(0, &output); writer.u16(0, &output); writer.u16(0, &output)
        pseudo.add(output, ipLength..<total)
        writer.patch16(pseudo.value, at: ipLength + 16, &output)
        return total
    }
}
