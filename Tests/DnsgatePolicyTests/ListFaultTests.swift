// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import Testing
@testable import DnsgatePolicy

/// Issue #10: lists are read within a size limit.
@Suite("List faults")
struct ListFaultTests {
    static let rules = """
    rule_groups:
      - name: g
        priority: 1
        rules: [{name: r, priority: 1, domain_list: l, action: BLOCK}]
    """

    /// The compiler's result for one file list `/l.txt` holding `bytes`.
    func compileList(_ bytes: [UInt8], listKeys: String = "") -> PolicyCompiler.Result {
        let config = "domain_lists:\n  - {name: l, file: /l.txt\(listKeys)}\n" + Self.rules
        let files: [String: [UInt8]] = ["/etc/dnsgate/dnsgate.yaml": Array(config.utf8), "/l.txt": bytes]
        let compiler = PolicyCompiler { path in
            guard let found = files[path] else { throw PolicyError([]) }
            return found
        }
        return compiler.load(configPath: "/etc/dnsgate/dnsgate.yaml", generation: 1).1
    }

    func errors(_ result: PolicyCompiler.Result) -> [Diagnostic] { result.diagnostics.filter { $0.severity == .error } }

    // MARK: size limits

    @Test("a list over its max_size is refused; the limit is 256M unless max_size says otherwise")
    func sizeLimit() throws {
        let list = Array("a.example\nb.example\n".utf8)
        #expect(!compileList(list).hasErrors)
        let small = compileList(list, listKeys: ", max_size: 10")
        #expect(small.policy == nil)
        #expect(errors(small).first?.message.contains("20 bytes, more than max_size (10 bytes)") == true)
        let (config, _) = ConfigReader.read(yaml: "domain_lists:\n  - {name: l, file: /l.txt}\n  - {name: m, file: /m.txt, max_size: 1G}\n", path: "/c.yaml")
        let lists = try #require(config).domainLists
        #expect(lists[0].maximumBytes == 256 << 20 && lists[1].maximumBytes == 1 << 30)
    }

    @Test("max_size applies to file and url lists only")
    func keysOnInlineLists() {
        for key in ["max_size: 1M"] {
            let (_, diagnostics) = ConfigReader.read(yaml: "domain_lists:\n  - name: l\n    domains: [a.example]\n    \(key)\n", path: "/c.yaml")
            #expect(diagnostics.contains { $0.line == 4 && $0.message.contains("only applies to a 'file' or 'url' list") }, "\(key)")
        }
    }
}
