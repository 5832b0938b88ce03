// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import Testing
@testable import DnsgatePolicy

/// Issue #10: a list that collapses is refused, lists are read within a size
/// limit, and a remote list without a copy is reported (and in fail_mode
/// closed the policy drops what it does not match).
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

    // MARK: binary content

    @Test("a NUL byte or bytes that are not UTF-8 make a list binary, with the line", arguments: [
        (Array("a.example\nb.example\nc\u{0}d\n".utf8), 3, "a NUL byte"),
        (Array("a.example\n".utf8) + [0x62, 0xE9, 0x0A], 2, "bytes that are not UTF-8"),   // Latin-1 é
        (Array("a.example\n".utf8) + [0xC0, 0xAF, 0x0A], 2, "bytes that are not UTF-8"),   // overlong '/'
        (Array("a.example\n".utf8) + [0xED, 0xA0, 0x80], 2, "bytes that are not UTF-8"),   // a surrogate, at the end
        (Array("a.example\n".utf8) + [0xE2, 0x82], 2, "bytes that are not UTF-8"),         // cut short at the end
    ])
    func binary(bytes: [UInt8], line: Int, found: String) {
        let binary = ListHealth.firstBinaryLine(bytes.span)
        #expect(binary?.line == line)
        #expect(binary?.found == found)
    }

    @Test("UTF-8 text is not binary, however it is split into lines")
    func text() {
        for text in ["", "\n\n", "# café, naïve, 日本\nexample.com\n", "no newline at the end", "x\r\n€\r\n"] {
            #expect(ListHealth.firstBinaryLine(Array(text.utf8).span) == nil, "\(text)")
        }
    }

    @Test("binary content fails the compile, naming the file and line, and is not parsed")
    func binaryCompile() {
        let result = compileList(Array("blocked.example\n".utf8) + [0, 1, 2, 0x0A] + Array("more.example\n".utf8))
        #expect(result.policy == nil)
        let error = errors(result)
        #expect(error.count == 1)
        #expect(error.first?.file == "/l.txt" && error.first?.line == 2)
        #expect(error.first?.message.contains("binary content") == true)
        #expect(result.lists.first?.info.entries == 0)
    }

    // MARK: collapse

    func report(_ text: String, format: ListFormat = .auto) -> ListReport {
        ListParser.read(Array(text.utf8).span, format: format, file: "f", matchSubdomains: false) { _, _ in }
    }

    @Test("no entries at all is a collapse: an empty file, only comments, only unreadable lines")
    func noEntries() {
        for (text, line) in [("", 0), ("# only\n\n# comments\n", 0), ("x y\n<p>\n", 1), ("# head\n\nnot a name!\n", 3)] {
            let collapse = ListHealth.collapse(report(text), list: "l", file: "f", allowEmpty: false)
            #expect(collapse?.severity == .error, "\(text)")
            #expect(collapse?.line == line, "\(text)")
            #expect(collapse?.message.contains("allow_empty: true") == true)
            #expect(ListHealth.collapse(report(text), list: "l", file: "f", allowEmpty: true) == nil)
        }
    }

    @Test("more than half of the lines unreadable is a collapse; half is not")
    func mostlyUnreadable() {
        let half = report("a.example\nb.example\nnot a name\n<td>x</td>\n")
        #expect(half.lines == 4 && half.unreadableLines == 2 && half.entries == 2)
        #expect(ListHealth.collapse(half, list: "l", file: "f", allowEmpty: false) == nil)
        let most = report("a.example\nb.example\n# c\nnot a name\n<td>x</td>\nbad!name\n")
        #expect(most.lines == 5 && most.unreadableLines == 3 && most.firstUnreadableLine == 4)
        let collapse = ListHealth.collapse(most, list: "l", file: "f", allowEmpty: false)
        #expect(collapse?.line == 4)
        #expect(collapse?.message.contains("3 of its 5 lines are not domains syntax") == true)
        #expect(ListHealth.collapse(most, list: "l", file: "f", allowEmpty: true) == nil)
    }

    @Test("rules a DNS firewall cannot honour are not unreadable: an adblock list of cosmetic rules loads")
    func unsupportedIsNotUnreadable() {
        let adblock = report("! list\n||ads.example^\nexample.com##.banner\n/ads[0-9]+/\n||x.example^$third-party\n||a*b.example^\n")
        #expect(adblock.format == .adblock && adblock.entries == 1 && adblock.skippedLines == 4)
        #expect(adblock.unreadableLines == 0)
        #expect(ListHealth.collapse(adblock, list: "l", file: "f", allowEmpty: false) == nil)
        let rpz = report("$ORIGIN rpz.\n@ SOA a. b. 1 2 3 4 5\nx.example CNAME .\n32.1.2.0.192.rpz-ip CNAME .\n24.0.2.0.198.rpz-client-ip CNAME .\n")
        #expect(rpz.format == .rpz && rpz.entries == 1 && rpz.unreadableLines == 0)
        #expect(ListHealth.collapse(rpz, list: "l", file: "f", allowEmpty: false) == nil)
    }

    @Test("a collapsed list fails the compile; allow_empty: true loads it")
    func collapseCompile() throws {
        let empty = compileList([])
        #expect(empty.policy == nil)
        #expect(errors(empty).first?.file == "/l.txt")
        let meant = compileList([], listKeys: ", allow_empty: true")
        #expect(!meant.hasErrors, "\(meant.diagnostics)")
        #expect(try #require(meant.policy).domainCount == 0)
        let garbage = compileList(Array(("ok.example\n" + String(repeating: "<div>not a list</div>\n", count: 1000)).utf8))
        #expect(garbage.policy == nil)
        #expect(errors(garbage).first?.file == "/l.txt")
        #expect(errors(garbage).first?.line == 2)
    }

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

    @Test("max_size and allow_empty apply to file and url lists only")
    func keysOnInlineLists() {
        for key in ["max_size: 1M", "allow_empty: true"] {
            let (_, diagnostics) = ConfigReader.read(yaml: "domain_lists:\n  - name: l\n    domains: [a.example]\n    \(key)\n", path: "/c.yaml")
            #expect(diagnostics.contains { $0.line == 4 && $0.message.contains("only applies to a 'file', 'url' or 'zone' list") }, "\(key)")
        }
        let (config, diagnostics) = ConfigReader.read(yaml: "domain_lists:\n  - {name: u, url: \"https://x.example/l\", allow_empty: true}\n", path: "/c.yaml")
        #expect(diagnostics.isEmpty && config?.domainLists.first?.allowEmpty == true)
    }

    // MARK: remote lists without a copy

    static func feedConfig(failMode: String) -> String {
        """
        fail_mode: \(failMode)
        cache_dir: cache
        domain_lists:
          - {name: l, url: "https://feeds.example/l.txt"}
        """ + "\n" + rules
    }

    @Test("a remote list with no copy yet is a warning; in fail_mode closed the policy drops what it does not match")
    func awaitingCopy() throws {
        for (failMode, drops) in [("open", false), ("closed", true)] {
            let result = Files(contents: [:]).compile(Self.feedConfig(failMode: failMode), at: "/srv/dg/dnsgate.yaml")
            #expect(!result.hasErrors, "\(result.diagnostics)")
            #expect(result.diagnostics.contains { $0.severity == .warning && $0.message.contains("no usable copy") })
            let policy = try #require(result.policy)
            #expect(policy.listsAwaitingFirstCopy == ["l"])
            #expect(policy.dropsUnmatched == drops)
            #expect(policy.lists[0].file == "/srv/dg/cache/l.list")
        }
        let cached = Files(contents: ["/srv/dg/cache/l.list": "a.example\n"])
            .compile(Self.feedConfig(failMode: "closed"), at: "/srv/dg/dnsgate.yaml")
        let policy = try #require(cached.policy)
        #expect(policy.listsAwaitingFirstCopy.isEmpty && !policy.dropsUnmatched)
        #expect(policy.decision("a.example") == "g/r")
    }

    @Test("a cached copy that collapsed counts as no copy: a warning, never a daemon that cannot start",
          arguments: ["\u{0}\u{1}", "", "not a domain at all!\nnor this?\nnor that!\n"])
    func collapsedCache(copy: String) throws {
        let result = Files(contents: ["/srv/dg/cache/l.list": copy])
            .compile(Self.feedConfig(failMode: "closed"), at: "/srv/dg/dnsgate.yaml")
        #expect(errors(result).isEmpty)
        let policy = try #require(result.policy)
        #expect(policy.listsAwaitingFirstCopy == ["l"], "fetched anew, and unmatched queries dropped until then")
        #expect(policy.dropsUnmatched)
        #expect(result.diagnostics.contains { $0.severity == .warning })
    }
}
