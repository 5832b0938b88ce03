// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import DnsgatePolicy

/// Reads any bytes as a list in every format, compiles it into a policy and
/// asks it about a few names.
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
    return 0
}
