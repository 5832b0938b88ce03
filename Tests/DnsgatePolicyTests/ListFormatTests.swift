// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import Foundation
import Testing
@testable import DnsgatePolicy

@Suite("Adblock and RPZ lists")
struct ListFormatTests {
    @Test("adblock: ||name^ blocks the name and below; @@ excepts; the rest is skipped and counted")
    func adblock() throws {
        let text = """
        [Adblock Plus 2.0]
        ! Title: test
        ||ads.example^
        ||tracker.example^$important
        @@||ok.ads.example^
        ||cdn.example^$third-party
        ||aax-*.amazon.*^
        /banner[0-9]+/
        example.org##.ad
        ||paths.example/ads^
        |https://x.example^
        """
        let list = ListParser.parse(text: text, format: .auto, file: "a.txt", matchSubdomains: false)
        #expect(list.format == .adblock)
        #expect(list.entries.map(\.line) == [3, 4, 5])
        #expect(list.entries.allSatisfy { $0.kind == .subtree })
        #expect(list.entries.filter(\.exception).map(\.key) == [ListParser.key(for: "ok.ads.example")!])
        #expect(list.skippedLines == 6)
        #expect(list.skipReasons == ["modifiers": 1, "wildcard inside a name": 1, "regular expression": 1,
                                     "cosmetic rule": 1, "path": 1, "not a ||name^ rule": 1])
        let files = Files(contents: ["/a.txt": text])
        let policy = try #require(files.compile("""
        domain_lists: [{name: ads, file: /a.txt}]
        rule_groups: [{name: g, priority: 1, rules: [{name: r, priority: 1, domain_list: ads, action: BLOCK}]}]
        """).policy)
        #expect(policy.decision("ads.example") == "g/r")
        #expect(policy.decision("x.ads.example") == "g/r")
        #expect(policy.decision("ok.ads.example") == nil, "exception")
        #expect(policy.decision("deep.ok.ads.example") == nil, "exception covers below")
        #expect(policy.decision("tracker.example") == "g/r")
        #expect(policy.decision("cdn.example") == nil, "skipped, not misread")
    }

    static let zone = """
    $TTL 2h;
    $ORIGIN rpz.example.
    @   SOA ns.example. hostmaster.example. ( 1 12h
            15m 3w 2h )
        NS  ns.example.
    nx.test         CNAME .
    *.nx.test       CNAME .
    nodata.test     CNAME *.
    pass.nx.test    CNAME rpz-passthru.
    drop.test 300 IN CNAME rpz-drop.
    walled.test     CNAME garden.example.net.
    local.test      A 192.0.2.53
    local6.test     AAAA 2001:db8::53
    absolute.test.rpz.example. CNAME .
    tcp.test        CNAME rpz-tcp-only.
    32.1.0.0.127.rpz-client-ip CNAME rpz-drop.
    24.0.2.0.192.rpz-ip CNAME .
    ns.bad.rpz-nsdname CNAME .
    """

    @Test("rpz: QNAME triggers with their actions; other triggers reported with their count")
    func rpz() throws {
        let list = ListParser.parse(text: Self.zone, format: .auto, file: "z.rpz", matchSubdomains: false)
        #expect(list.format == .rpz)
        #expect(list.entries.count == 9)
        #expect(list.skipReasons == ["unsupported action": 1, "rpz-client-ip trigger (unsupported)": 1,
                                     "rpz-ip trigger (unsupported)": 1, "rpz-nsdname trigger (unsupported)": 1])
        #expect(list.diagnostics.contains { $0.line == 16 && $0.message.contains("rpz-client-ip") })
        let policy = try #require(Files(contents: ["/z.rpz": Self.zone]).compile("""
        domain_lists: [{name: rpz, file: /z.rpz}]
        rule_groups: [{name: g, priority: 1, rules: [{name: r, priority: 1, domain_list: rpz, action: BLOCK}]}]
        """).policy)
        #expect(policy.outcome("nx.test")?.forgedAnswer == .nxdomain)
        #expect(policy.outcome("a.nx.test")?.forgedAnswer == .nxdomain)
        #expect(policy.outcome("nodata.test")?.forgedAnswer == .nodata)
        #expect(policy.outcome("pass.nx.test")?.action == .allow, "the exact passthru beats the wildcard")
        let drop = try #require(policy.outcome("drop.test"))
        #expect(drop.action == .block && drop.blockResponse == .drop && drop.forgedAnswer == nil)
        #expect(policy.outcome("walled.test")?.forgedAnswer
                == .override(OverrideRecord(type: .cname, ttl: 300, data: ListParser.key(for: "garden.example.net")! + [0])))
        #expect(policy.outcome("local.test")?.forgedAnswer == .override(OverrideRecord(type: .a, ttl: 300, data: [192, 0, 2, 53])))
        #expect(policy.outcome("local6.test")?.blockResponse == .override)
        #expect(policy.outcome("absolute.test")?.forgedAnswer == .nxdomain)
        #expect(policy.outcome("tcp.test") == nil)
        #expect(policy.outcome("rpz.example") == nil, "the apex SOA/NS are not triggers")
    }

    @Test("rpz entries under an ALERT rule keep the rule's action")
    func rpzUnderAlert() throws {
        let policy = try #require(Files(contents: ["/z.rpz": Self.zone]).compile("""
        domain_lists: [{name: rpz, file: /z.rpz}]
        rule_groups: [{name: g, priority: 1, rules: [{name: r, priority: 1, domain_list: rpz, action: ALERT}]}]
        """).policy)
        #expect(policy.outcome("drop.test")?.action == .alert)
    }
}

/// The hagezi list published in several syntaxes must come out as one policy.
@Suite("Published lists in every format")
struct PublishedFormatTests {
    static let directory = publishedListsDirectory

    static func load(_ file: String, format: ListFormat = .auto, matchSubdomains: Bool = false) throws -> CompiledPolicy {
        let path = try #require(directory) + "/" + file
        let files = Files(contents: [path: try String(contentsOfFile: path, encoding: .utf8)])
        let result = files.compile("""
        domain_lists: [{name: l, file: \(path), format: \(format.rawValue), match_subdomains: \(matchSubdomains)}]
        rule_groups: [{name: g, priority: 1, rules: [{name: r, priority: 1, domain_list: l, action: BLOCK}]}]
        """)
        #expect(!result.hasErrors, "\(result.diagnostics.prefix(3))")
        return try #require(result.policy)
    }

    @Test("hosts, domains, adblock and wildcard files block every name the hosts file lists; adblock and wildcard also block below",
          .enabled(if: directory != nil, "../shared/data is absent: published-list tests skipped"))
    func hagezi() throws {
        let directory = try #require(Self.directory)
        let hostsText = try String(contentsOfFile: directory + "/hagezi_fake_2022-07-24/hosts_fake.txt", encoding: .utf8)
        let names = hostsText.split(separator: "\n").filter { $0.hasPrefix("0.0.0.0 ") }.map { String($0.dropFirst(8)) }
        #expect(names.count == 14_043)
        let policies = [
            ("hosts", try Self.load("hagezi_fake_2022-07-24/hosts_fake.txt"), false),
            ("domains", try Self.load("hagezi_fake_2022-07-24/domains_fake.txt"), false),
            ("adblock", try Self.load("hagezi_fake_2022-07-24/adblock_fake.txt"), true),
            ("wildcard", try Self.load("hagezi_fake_2022-07-24/wildcard_fake.txt", matchSubdomains: true), true),
        ]
        for (format, policy, coversBelow) in policies {
            let missed = names.filter { policy.decision($0) == nil }
            #expect(missed.isEmpty, "\(format) misses \(missed.count) names, e.g. \(missed.prefix(3))")
            let below = names.prefix(500).filter { policy.decision("sub-\($0.count).\($0)") != nil }.count
            #expect(below == (coversBelow ? 500 : 0), "\(format): \(below) of 500 names below listed ones blocked")
        }
        #expect(policies[2].1.lists[0].entries == 7355)
        #expect(policies[3].1.lists[0].entries == 7355)
    }

    @Test("the hagezi allowlist: wildcard patterns skipped and counted, never misread",
          .enabled(if: directory != nil, "../shared/data is absent"))
    func allowlist() throws {
        let file = "hagezi_fake_2022-07-24/adblock_whitelist-referral.txt"
        let policy = try Self.load(file)
        let rules = try String(contentsOfFile: try #require(Self.directory) + "/" + file, encoding: .utf8)
            .split(separator: "\n").filter { !$0.hasPrefix("!") && !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        let info = policy.lists[0]
        #expect(info.skipReasons["wildcard inside a name"] ?? 0 >= 2)
        #expect(info.entries + info.skippedLines == rules.count)
        #expect(policy.decision("aax-eu.amazon.de") == nil)
    }

    @Test("the PowerDNS RPZ: QNAME triggers load, client-ip, ip and nsdname triggers reported",
          .enabled(if: directory != nil, "../shared/data is absent"))
    func powerDNS() throws {
        let policy = try Self.load("powerdns_fuzz_rpz/basic.rpz")
        let info = policy.lists[0]
        #expect(info.format == .rpz)
        #expect(info.skipReasons["rpz-client-ip trigger (unsupported)"] == 2)
        #expect(info.skipReasons["rpz-ip trigger (unsupported)"] == 1)
        #expect(info.skipReasons["rpz-nsdname trigger (unsupported)"] == 3)
        #expect(policy.outcome("nxdomain.org")?.forgedAnswer == .nxdomain)
        #expect(policy.outcome("x.nxdomain-apex.org")?.forgedAnswer == .nxdomain)
        #expect(policy.outcome("mail.nxdomain-apix.org")?.action == .allow)
        #expect(policy.outcome("example.net")?.blockResponse == .drop)
        #expect(policy.outcome("local.org")?.blockResponse == .override)
        #expect(policy.outcome("local-a.org")?.forgedAnswer == .override(OverrideRecord(type: .a, ttl: 300, data: [192, 168, 2, 5])))
    }
}
