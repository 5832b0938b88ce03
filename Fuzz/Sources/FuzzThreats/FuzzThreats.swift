// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import DnsgatePolicy
import Foundation
import ThreatDetection

/// The shipped model and suffix list, read once from the checkout.
let shippedModels: ThreatModels = {
    let detect = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../../detect").standardized.path
    let files = ["/m": FileManager.default.contents(atPath: detect + "/threat-model.txt").map { [UInt8]($0) } ?? [],
                 "/p": FileManager.default.contents(atPath: detect + "/public_suffix_list.dat").map { [UInt8]($0) } ?? []]
    var settings = ThreatDetectionConfig()
    settings.model = "/m"
    settings.publicSuffixList = "/p"
    guard let models = PolicyCompiler(readFile: { files[$0] ?? [] }).loadThreatModels(settings, configPath: "/c").0 else {
        fatalError("FuzzThreats: the shipped model or suffix list does not load")
    }
    return models
}()
let tunnels = TunnelTracker(capacity: 4096)
nonisolated(unsafe) var clock: UInt64 = 1_000_000_000

/// Hostile query names (one a line, any bytes) through every detector the
/// packet path runs, the tunnel table kept across inputs; and the same bytes
/// read as a public suffix list (an error is fine; a crash is not).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzThreats(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: data == nil ? 0 : size))
    let types: [QueryType] = [.a, .aaaa, .txt, .null, .cname, .mx, .ptr, QueryType(rawValue: 65_400)]
    for (index, line) in bytes.split(separator: UInt8(ascii: "\n")).enumerated() {
        guard let name = DomainName(rawText: line.span) else { continue }
        clock &+= UInt64(line.first ?? 0) &* 10_000_000
        let client = IPAddress.v4(0xc000_0200 | UInt32(line.count & 0xff))
        let assessment = shippedModels.assess(name: name, type: types[index % types.count], client: client, now: clock,
                                              names: true, tunnels: tunnels)
        precondition(assessment.tunneling.score >= 0 && assessment.tunneling.score <= 1 && assessment.dga.score <= 1)
    }
    if let list = try? PublicSuffixList(text: String(decoding: bytes, as: UTF8.self), file: "fuzz"),
       let name = DomainName(text: "a.b.example.co.uk") {
        _ = list.registrableDomainStarts(name)
    }
    return 0
}
