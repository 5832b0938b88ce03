// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import DnsgatePolicy

/// Reads any bytes as a list in every format, compiles it into a policy and
/// asks it about a few names; then reads them as an address list (`ip_lists`)
/// in each of its formats into an `AddressTable`, which must find every
/// prefix it was given.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLists(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: data == nil ? 0 : size))
    for format in ["auto", "domains", "hosts", "adblock", "rpz"] {
        for subdomains in [false, true] {
            let config = Array("""
            domain_lists: [{name: l, file: /l, format: \(format), match_subdomains: \(subdomains)}]
            rule_groups: [{name: g, priority: 1, rules: [{name: r, priority: 1, domain_list: l, action: BLOCK}]}]
            """.utf8)
            let compiler = PolicyCompiler { path in path == "/l" ? bytes : config }
            guard let policy = compiler.load(configPath: "/c.yaml", generation: 1).1.policy else { continue }
            for name in ["example.com", "a.b.example.com", "x", "local.org"] {
                if let domain = DomainName(text: name) {
                    _ = policy.decide(name: domain, type: .a, client: .v4(0xc000_020a))
                    _ = policy.explain(name: domain, type: .txt, client: .v4(0xc000_020a))
                }
            }
        }
    }
    for format in [ListFormat.auto, .addresses, .rpz] {
        var entries: [AddressTable.Entry] = []
        _ = AddressListParser.read(bytes.span, format: format, file: "/l") { prefix, line, _ in
            entries.append(AddressTable.Entry(prefix: prefix, line: Int32(truncatingIfNeeded: line), outcome: -1))
        }
        let table = AddressTable(entries)
        for entry in entries where table.lookup(entry.prefix.address) == nil {
            fatalError("\(entry.prefix) was read but is not found")
        }
        for address: IPAddress in [.v4(0xc000_020a), .v4(0), .v4(.max), .v6(high: 0x2001_0db8 << 32, low: 1),
                                   .v6(high: 0, low: 0xffff_c000_020a)] {
            _ = table.lookup(address)
        }
    }
    return 0
}
