// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import Foundation
import Testing
@testable import DnsgatePolicy

@Suite("List formats")
struct ListParserTests {
    @Test("domains: comments, wildcards, a bad line reported by line and skipped")
    func domains() {
        let text = "# header\nads.example\n*.tracker.example  # trailing\n\nbad..name\nUPPER.Example.\nx y\n"
        let list = ListParser.parse(text: text, format: .auto, file: "d.txt", matchSubdomains: false)
        #expect(list.format == .domains)
        #expect(list.entries.map(\.line) == [2, 3, 6])
        #expect(list.entries[1].kind == .wildcard)
        #expect(list.entries[2].key == ListParser.key(for: "upper.example"))
        #expect(list.skippedLines == 2)
        #expect(list.diagnostics.map(\.line) == [5, 7])
        #expect(list.diagnostics.allSatisfy { $0.file == "d.txt" && $0.severity == .warning })
    }

    @Test("hosts: any address, several names, inline comments, self names skipped")
    func hosts() {
        let text = """
        127.0.0.1 localhost
        ::1 localhost ip6-localhost
        0.0.0.0 a.example b.example # two
        127.0.0.1\tc.example
        :: d.example
        notanaddress e.example
        """
        let list = ListParser.parse(text: text, format: .auto, file: "h", matchSubdomains: false)
        #expect(list.format == .hosts)
        #expect(list.entries.map(\.key) == ["a.example", "b.example", "c.example", "d.example"].map { ListParser.key(for: $0)! })
        #expect(list.entries.allSatisfy { $0.kind == .exact })
        #expect(list.diagnostics.map(\.line) == [6])
    }

    @Test("format detection", arguments: [
        ("0.0.0.0 x.example\n", ListFormat.hosts), ("# c\nx.example\n", .domains),
        ("! adblock\n||x.example^\n", .adblock), ("$TTL 300\n@ SOA a b 1 2 3 4 5\n", .rpz),
    ])
    func detection(text: String, format: ListFormat) {
        #expect(ListParser.detectFormat(text) == format)
    }

    @Test("match_subdomains turns every entry into a subtree")
    func subtree() {
        let list = ListParser.parse(text: "a.example\n*.b.example\n", format: .domains, file: "f", matchSubdomains: true)
        #expect(list.entries.allSatisfy { $0.kind == .subtree })
    }
}

@Suite("Matching and evaluation (SPEC §2)")
struct PolicyTests {
    static let files = Files(contents: [
        "/etc/dnsgate/lists/bad.txt": "# malware\nmalware.example\n*.evil.example\n",
        "/etc/dnsgate/lists/hosts": "0.0.0.0 tracker.example\n",
        "/lists/all.txt": "*\n",
    ])

    static let config = """
    domain_lists:
      - { name: corp, domains: ["corp.example", "*.corp.example"] }
      - { name: bad, file: lists/bad.txt }
      - { name: trackers, file: lists/hosts, format: hosts }
      - { name: wide, domains: [wide.example], match_subdomains: true }
      - { name: everything, file: /lists/all.txt }
      - { name: guest-only, domains: [games.example] }
    rule_groups:
      - name: guests
        priority: 200
        clients: ["192.0.2.20/32", "2001:db8:1::20/128"]
        rules:
          - { name: no-games, priority: 1, domain_list: guest-only, action: BLOCK, block_response: REFUSED }
      - name: baseline
        priority: 100
        rules:
          - { name: allow-corp, priority: 10, domain_list: corp, action: ALLOW }
          - { name: block-bad, priority: 20, domain_list: bad, action: BLOCK }
          - { name: trackers, priority: 30, domain_list: trackers, action: BLOCK, block_response: NODATA }
          - { name: wide, priority: 40, domain_list: wide, action: BLOCK, block_response: DROP }
          - { name: watch-txt, priority: 50, domain_list: everything, action: ALERT, qtypes: [TXT] }
    """

    func policy() throws -> CompiledPolicy {
        let result = Self.files.compile(Self.config)
        #expect(!result.hasErrors, "\(result.diagnostics)")
        return try #require(result.policy)
    }

    @Test("exact, wildcard and subtree entries match as SPEC §2 says")
    func semantics() throws {
        let p = try policy()
        #expect(p.decision("malware.example") == "baseline/block-bad")
        #expect(p.decision("sub.malware.example") == nil, "exact entry does not match below")
        #expect(p.decision("evil.example") == nil, "*. does not match the apex")
        #expect(p.decision("a.evil.example") == "baseline/block-bad")
        #expect(p.decision("a.b.c.evil.example") == "baseline/block-bad")
        #expect(p.decision("wide.example") == "baseline/wide")
        #expect(p.decision("x.wide.example") == "baseline/wide")
        #expect(p.decision("notwide.example") == nil, "suffix match stops at label boundaries")
        #expect(p.decision("MALWARE.Example.") == "baseline/block-bad", "case-insensitive, trailing dot")
    }

    @Test("rule priority: ALLOW ends evaluation before a later BLOCK")
    func allowFirst() throws {
        let p = try policy()
        #expect(p.decision("corp.example") == "baseline/allow-corp")
        #expect(p.decision("mail.corp.example") == "baseline/allow-corp")
    }

    @Test("qtypes scope a rule; `*` matches every name")
    func queryTypes() throws {
        let p = try policy()
        #expect(p.decision("anything.example", type: .txt) == "baseline/watch-txt")
        #expect(p.decision("anything.example", type: .a) == nil)
        #expect(p.decision("malware.example", type: .txt) == "baseline/block-bad", "earlier rule wins")
    }

    @Test("client association: a group applies only to its clients, in group priority order")
    func clients() throws {
        let p = try policy()
        #expect(p.decision("games.example", client: "192.0.2.20") == "guests/no-games")
        #expect(p.decision("games.example", client: "2001:db8:1::20") == "guests/no-games")
        #expect(p.decision("games.example", client: "192.0.2.10") == nil)
        #expect(p.decision("games.example", client: "2001:db8:1::10") == nil)
        // baseline (100) is evaluated before guests (200) even for a guest.
        #expect(p.decision("malware.example", client: "192.0.2.20") == "baseline/block-bad")
        #expect(p.groups.map(\.name) == ["baseline", "guests"])
    }

    @Test("the rule index finds the same rule as scanning every group and rule in order")
    func ruleIndexAgreesWithScan() throws {
        // 12 groups, each with its clients or none, 6 rules each over 5 lists
        // (the same list in many groups), some limited to a query type.
        var files: [String: String] = [:]
        var config = "queues: 1\ndomain_lists:\n"
        for list in 0..<5 {
            files["/l\(list).txt"] = "*.l\(list).example\nshared.example\n"
            config += "  - {name: l\(list), file: /l\(list).txt}\n"
        }
        config += "rule_groups:\n"
        let actions = ["BLOCK", "ALLOW", "ALERT"]
        for group in 0..<12 {
            config += "  - name: g\(group)\n    priority: \(100 - group)\n"
            if group % 3 == 1 { config += "    clients: [192.0.2.\(group)/32]\n" }
            if group % 3 == 2 { config += "    clients: [2001:db8::/32]\n" }
            config += "    rules:\n"
            for rule in 0..<6 {
                let qtypes = rule % 4 == 3 ? ", qtypes: [TXT]" : ""
                config += "      - {name: r\(rule), priority: \(rule + 1), domain_list: l\((group + rule) % 5), "
                    + "action: \(actions[(group * 6 + rule) % 3])\(qtypes)}\n"
            }
        }
        let policy = try #require(Files(contents: files).compile(config).policy)
        /// The definition (SPEC §2): groups in priority order, then their rules.
        func scan(_ query: DomainName, _ type: QueryType, _ client: IPAddress) -> Int? {
            let matches = policy.matchingLists(query)
            for group in policy.groups where group.applies(to: client, mac: nil) {
                for index in group.ruleIndices
                    where matches.contains(policy.rules[index].listIndex) && policy.rules[index].applies(to: type) {
                    return index
                }
            }
            return nil
        }
        var checked = 0
        for queryName in ["x.l0.example", "x.l3.example", "shared.example", "none.example", "a.b.l4.example"] {
            for type in [QueryType.a, .txt] {
                for client in ["192.0.2.1", "192.0.2.4", "192.0.2.99", "2001:db8::5", "2001:db9::5"] {
                    let expected = scan(name(queryName), type, address(client))
                    #expect(policy.decide(name: name(queryName), type: type, client: address(client))?.ruleIndex
                            == expected, "\(queryName) \(type) \(client)")
                    checked += expected == nil ? 0 : 1
                }
            }
        }
        #expect(checked > 20, "most queries are decided by some rule")
    }

    @Test("a group naming a MAC address covers that host over IPv4 and IPv6")
    func macClients() throws {
        let result = Files(contents: [:]).compile("""
        domain_lists: [{name: l, domains: [ads.example]}]
        rule_groups:
          - {name: kid, priority: 1, clients: ["02:00:5e:10:00:0a"], rules: [{name: r, priority: 1, domain_list: l, action: BLOCK}]}
        """)
        let p = try #require(result.policy)
        let kid = MACAddress("02:00:5e:10:00:0a")!
        for client in ["192.0.2.10", "2001:db8:1::10", "2001:db8:1::abcd"] {
            #expect(p.decide(name: name("ads.example"), type: .a, client: address(client), mac: kid) != nil, "\(client)")
            #expect(p.decide(name: name("ads.example"), type: .a, client: address(client), mac: nil) == nil)
        }
    }

    @Test("every suffix hash of a name equals its key's hash, in one pass")
    func suffixHashes() throws {
        let query = name("A.very.Long.name.Blocked.example")
        let hashes = query.suffixHashes()
        let tail = query.suffixHashes(from: 4)
        for label in 0...query.labelCount {
            #expect(hashes[label] == query.suffixHash(fromLabel: label))
            if label >= 4 { #expect(tail[label] == hashes[label]) }
            let text = (label..<query.labelCount).map { query.text.split(separator: ".")[$0] }.joined(separator: ".")
            if let key = NameKey(text: text) { #expect(key.hash == hashes[label], "\(text)") }
        }
        // 120 labels, 253 octets: the longest names still match on their last labels.
        let long = name(Array(repeating: "a", count: 118).joined(separator: ".") + ".blocked.example")
        let p = try #require(Files(contents: [:]).compile("""
        domain_lists: [{name: l, domains: ["*.blocked.example"]}]
        rule_groups: [{name: g, priority: 1, rules: [{name: r, priority: 1, domain_list: l, action: BLOCK}]}]
        """).policy)
        #expect(p.decide(name: long, type: .a, client: address("192.0.2.10")) != nil)
    }

    @Test("compiled rules carry their forged answer")
    func forgedKinds() throws {
        let p = try policy()
        let byName = Dictionary(uniqueKeysWithValues: p.rules.map { ($0.name, $0) })
        #expect(byName["block-bad"]?.outcome.forgedAnswer == .nxdomain)
        #expect(byName["trackers"]?.outcome.forgedAnswer == .nodata)
        #expect(byName["no-games"]?.outcome.forgedAnswer == .refused)
        #expect(byName["wide"]?.outcome.forgedAnswer == nil)
        #expect(byName["allow-corp"]?.outcome.forgedAnswer == nil)
        #expect(String(decoding: byName["block-bad"]!.extraText, as: UTF8.self) == "blocked by dnsgate rule baseline/block-bad")
    }

    @Test("explain names the list entry's file and line")
    func explain() throws {
        let p = try policy()
        let explanation = p.explain(name: name("x.evil.example"), type: .a, client: address("192.0.2.10"))
        let entry = try #require(explanation.matchedEntry)
        #expect(entry.text == "*.evil.example")
        #expect(entry.file == "/etc/dnsgate/lists/bad.txt")
        #expect(entry.line == 3)
        #expect(explanation.listsContainingName.contains("bad"))
        let none = p.explain(name: name("fine.example"), type: .a, client: address("192.0.2.10"))
        #expect(none.ruleIndex == nil)
    }

    @Test("a missing list file is an error naming the config line")
    func missingFile() {
        let result = Files(contents: [:]).compile("domain_lists:\n  - name: x\n    file: /nope.txt\n")
        #expect(result.hasErrors)
        #expect(result.diagnostics.contains { $0.line == 2 && $0.message.contains("/nope.txt") })
    }

    @Test("a config with errors still has its lists checked, and never traps")
    func errorsEverywhere() {
        let files = Files(contents: ["/l.txt": "ok.example\nbad..example\n"])
        let result = files.compile("""
        fail_mode: maybe
        domain_lists:
          - {name: dup, file: /l.txt}
          - {name: dup, domains: [x.example]}
        rule_groups:
          - name: g
            priority: 1
            rules: [{name: r, priority: 1, domain_list: dup, action: BLOCK}]
        """)
        #expect(result.policy == nil)
        #expect(result.diagnostics.contains { $0.file == "/l.txt" && $0.line == 2 })
        #expect(result.diagnostics.contains { $0.message.contains("defined twice") })
        #expect(result.diagnostics.contains { $0.line == 1 && $0.message.contains("fail_mode") })
    }

    @Test("many names: every one is found, neighbours are not")
    func manyNames() throws {
        let names = (0..<20_000).map { "host\($0).zone\($0 % 97).example" }
        let files = Files(contents: ["/big.txt": names.joined(separator: "\n")])
        let result = files.compile("""
        domain_lists: [{name: big, file: /big.txt}]
        rule_groups: [{name: g, priority: 1, rules: [{name: r, priority: 1, domain_list: big, action: BLOCK}]}]
        """)
        let p = try #require(result.policy)
        #expect(p.domainCount == names.count)
        for n in names.prefix(2000) { #expect(p.decision(n) == "g/r") }
        #expect(p.decision("host1.zone2.example") == nil)
        #expect(p.decision("zone1.example") == nil)
    }
}

/// Real published lists from ../shared/data, when present (a user's clone has none).
@Suite("Published lists")
struct PublishedListTests {
    static let dataDirectory = publishedListsDirectory

    @Test("hagezi hosts and domains files hold the same names; adaway loads",
          .enabled(if: dataDirectory != nil, "../shared/data is absent: published-list tests skipped"))
    func hageziHostsAndDomains() throws {
        let directory = try #require(Self.dataDirectory)
        let hagezi = directory + "/hagezi_fake_2022-07-24"
        let files = try FileManager.default.contentsOfDirectory(atPath: hagezi)
        let hostsFile = try #require(files.first { $0 == "hosts_fake.txt" })
        let domainsFile = try #require(files.first { $0 == "domains_fake.txt" })
        let hosts = ListParser.parse(text: try String(contentsOfFile: "\(hagezi)/\(hostsFile)", encoding: .utf8),
                                     format: .auto, file: hostsFile, matchSubdomains: false)
        let domains = ListParser.parse(text: try String(contentsOfFile: "\(hagezi)/\(domainsFile)", encoding: .utf8),
                                       format: .auto, file: domainsFile, matchSubdomains: false)
        #expect(hosts.format == .hosts)
        #expect(domains.format == .domains)
        #expect(Set(hosts.entries.map(\.key)).count == 14_043)
        #expect(Set(hosts.entries.map(\.key)) == Set(domains.entries.map(\.key)))
        let adaway = ListParser.parse(text: try String(contentsOfFile: directory + "/adaway/hosts.txt", encoding: .utf8),
                                      format: .auto, file: "adaway", matchSubdomains: false)
        #expect(adaway.format == .hosts)
        #expect(adaway.entries.count > 1000)
        #expect(!adaway.entries.contains { $0.key == ListParser.key(for: "localhost") })
    }
}
