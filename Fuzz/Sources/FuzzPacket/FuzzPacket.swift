// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire

/// Decodes any bytes as a queued packet (whole, and as a capture cut by the
/// copy range), builds every kind of forged answer for what decodes, and
/// checks the answer's invariants: it decodes as IP/UDP, goes back to the
/// query's source, and is never more than 512 bytes larger than the query.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPacket(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: data == nil ? 0 : size))
    check(bytes, wireLength: nil)
    if bytes.count > 1 { check(Array(bytes.dropLast(bytes.count / 2)), wireLength: bytes.count) }
    return 0
}

nonisolated(unsafe) var streams = TCPStreams()  // libFuzzer calls from one thread

func check(_ packet: [UInt8], wireLength: Int?) {
    let decoded = QueryDecoder.decode(packet: packet.span, wireLength: wireLength)
    if case .tcp(let segment) = decoded {
        var flip = false
        _ = streams.read(segment, packet: packet.span) { _ in
            flip.toggle()
            return flip
        }
        var reset = [UInt8](repeating: 0, count: 128)
        var output = reset.mutableSpan
        if let length = TCPResetBuilder.toClient(segment, into: &output) { precondition(length <= 60) }
        return
    }
    guard case .query(let query) = decoded else { return }
    let settings = ForgedAnswerSettings(negativeTTL: 60, extendedError: true, cookieSecret: 1)
    let text = Array("blocked by dnsgate rule fuzz/fuzz".utf8)
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
