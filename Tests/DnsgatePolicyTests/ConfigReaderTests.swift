// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import Foundation
import Testing
@testable import DnsgatePolicy

@Suite("Config reader")
struct ConfigReaderTests {
    @Test("the shipped example config is valid")
    func shippedExample() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../config/dnsgate.yaml").standardized.path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let (config, diagnostics) = ConfigReader.read(yaml: text, path: path)
        #expect(diagnostics.isEmpty, "\(diagnostics)")
        let parsed = try #require(config)
        #expect(parsed.queues == [0, 1])
        #expect(parsed.ruleGroups.count >= 1)
    }

    @Test("every field of SPEC §2 is read")
    func fields() throws {
        let yaml = """
        queues: "2-3"
        fail_mode: closed
        stats_socket: /tmp/x.sock
        query_log:
          path: "-"
          actions: [ALERT]
        block_defaults:
          ttl: 30
          extended_error: false
        domain_lists:
          - name: l
            domains: ["a.example", "*.b.example"]
            match_subdomains: true
          - name: f
            file: lists/f.txt
            format: hosts
        rule_groups:
          - name: g
            priority: 5
            clients: ["192.0.2.0/24", "2001:db8:1::/48"]
            rules:
              - name: r2
                priority: 20
                domain_list: f
                action: BLOCK
                block_response: OVERRIDE
                override: { type: AAAA, value: "2001:db8::53", ttl: 9 }
              - name: r1
                priority: 10
                domain_list: l
                action: alert
                qtypes: [TXT, NULL, TYPE65]
        """
        let (config, diagnostics) = ConfigReader.read(yaml: yaml, path: "c.yaml")
        #expect(diagnostics.isEmpty, "\(diagnostics)")
        let c = try #require(config)
        #expect(c.queues == [2, 3])
        #expect(c.failMode == .closed)
        #expect(c.statsSocket == "/tmp/x.sock")
        #expect(c.queryLog == QueryLogConfig(path: "-", actions: [.alert]))
        #expect(c.blockTTL == 30 && !c.extendedError)
        #expect(c.domainLists.map(\.name) == ["l", "f"])
        #expect(c.domainLists[0].matchSubdomains)
        #expect(c.domainLists[1].format == .hosts)
        let group = try #require(c.ruleGroups.first)
        #expect(group.clients.count == 2)
        #expect(group.rules.map(\.name) == ["r1", "r2"], "rules sorted by priority")
        #expect(group.rules[0].queryTypes == [.txt, .null, .https])
        #expect(group.rules[0].action == .alert)
        #expect(group.rules[1].override == OverrideRecord(type: .aaaa, ttl: 9, data: IPAddress("2001:db8::53")!.bytes))
    }

    @Test("problems are all reported, each with its line", arguments: [
        ("queues: \"5-1\"\n", 1, "queues"),
        ("fail_mode: sideways\n", 1, "fail_mode"),
        ("colour: blue\n", 1, "unknown key 'colour'"),
        ("domain_lists:\n  - name: a\n    domains: [x.example]\n    file: f\n", 2, "not domains and file"),
        ("domain_lists:\n  - name: a\n    url: ftp://x/y\n", 3, "must start with http:// or https://"),
        ("domain_lists:\n  - name: a\n    url: https://x.example/l\n    refresh: soon\n", 4, "refresh: expected a duration"),
        ("domain_lists:\n  - name: a\n    file: f\n    refresh: 1h\n", 4, "'refresh' only applies to a 'url' list"),
        ("domain_lists:\n  - name: a\n    url: https://x.example/l\n    max_size: lots\n", 4, "max_size: expected a size"),
        ("rule_groups:\n  - name: g\n    priority: 1\n    clients: [\"192.0.2.0/33\"]\n", 4, "not an address, CIDR prefix or MAC"),
        ("domain_lists:\n  - {name: l, domains: [a.example]}\nrule_groups:\n  - name: g\n    priority: 1\n    rules:\n      - {name: r, priority: 1, domain_list: nope, action: BLOCK}\n", 7, "'nope', which is not defined"),
        ("domain_lists:\n  - {name: l, domains: [a.example]}\nrule_groups:\n  - name: g\n    priority: 1\n    rules:\n      - {name: r, priority: 1, domain_list: l, action: BLOCK, block_response: OVERRIDE}\n", 7, "needs 'override"),
        ("domain_lists:\n  - {name: l, domains: [a.example]}\nrule_groups:\n  - name: g\n    priority: 1\n    rules:\n      - {name: r, priority: 1, domain_list: l, action: BLOCK, block_response: OVERRIDE, override: {type: A, value: \"2001:db8::1\"}}\n", 7, "not an IPv4 address"),
        ("domain_lists:\n  - {name: l, domains: [a.example]}\nrule_groups:\n  - name: g\n    priority: 1\n    rules:\n      - {name: r, priority: 1, domain_list: l, action: PERMIT}\n", 7, "'PERMIT' is not one of"),
        ("domain_lists:\n  - {name: l, domains: [a.example]}\nrule_groups:\n  - name: g\n    priority: 1\n    rules:\n      - {name: r, priority: 1, domain_list: l, action: BLOCK, qtypes: [BOGUS]}\n", 7, "'BOGUS' is not a query type"),
        ("rule_groups:\n  - {name: a, priority: 1}\n  - {name: b, priority: 1}\n", 3, "share priority 1"),
        ("domain_lists:\n  - {name: l, domains: [a.example]}\nrule_groups:\n  - name: g\n    priority: 1\n    rules:\n      - {name: r, priority: 1, domain_list: l, action: ALLOW}\n      - {name: s, priority: 1, domain_list: l, action: ALLOW}\n", 8, "share priority 1"),
        ("queues: [0\n", 2, "YAML"),
    ])
    func problems(yaml: String, line: Int, message: String) {
        let (_, diagnostics) = ConfigReader.read(yaml: yaml, path: "bad.yaml")
        #expect(diagnostics.contains { $0.severity == .error })
        #expect(diagnostics.contains { $0.line == line && $0.message.contains(message) && $0.file == "bad.yaml" },
                "\(diagnostics)")
    }

    @Test("remote lists: url, refresh and max_size")
    func remoteList() throws {
        let yaml = """
        cache_dir: /var/cache/x
        domain_lists:
          - {name: "threat feed/1", url: "https://feeds.example/list.txt", refresh: 4h, max_size: 10M, format: adblock}
          - {name: b, url: "http://feeds.example/b"}
        """
        let (config, diagnostics) = ConfigReader.read(yaml: yaml, path: "c.yaml")
        #expect(diagnostics.isEmpty, "\(diagnostics)")
        let c = try #require(config)
        #expect(c.cacheDirectory == "/var/cache/x")
        #expect(c.domainLists[0].source == .url(RemoteSource(url: "https://feeds.example/list.txt", refreshSeconds: 4 * 3600,
                                                             maximumBytes: 10 << 20)))
        #expect(c.domainLists[0].format == .adblock)
        #expect(c.domainLists[1].source == .url(RemoteSource(url: "http://feeds.example/b",
            refreshSeconds: RemoteSource.defaultRefreshSeconds, maximumBytes: RemoteSource.defaultMaximumBytes)))
        #expect(c.domainLists[0].cachePath(in: "/var/cache/x") == "/var/cache/x/threat_feed_1.list")
    }

    @Test("undecodable, on_overload and tcp_port; both drop by default in either fail mode")
    func enforcementKeys() throws {
        let (defaults, none) = ConfigReader.read(yaml: "fail_mode: closed\n", path: "c.yaml")
        #expect(none.isEmpty)
        let d = try #require(defaults)
        #expect(d.undecodable == .drop && d.onOverload == .drop && d.tcpPort == 5053)
        #expect(try #require(ConfigReader.read(yaml: "fail_mode: open\n", path: "c.yaml").0).onOverload == .drop)
        let (config, diagnostics) = ConfigReader.read(
            yaml: "fail_mode: closed\nundecodable: pass\non_overload: pass\ntcp_port: 8053\n", path: "c.yaml")
        #expect(diagnostics.isEmpty, "\(diagnostics)")
        let c = try #require(config)
        #expect(c.undecodable == .pass && c.onOverload == .pass && c.tcpPort == 8053)
        for (yaml, message) in [("undecodable: maybe\n", "undecodable"), ("on_overload: queue\n", "on_overload"),
                                ("tcp_port: 70000\n", "tcp_port")] {
            let (_, problems) = ConfigReader.read(yaml: yaml, path: "c.yaml")
            #expect(problems.contains { $0.severity == .error && $0.line == 1 && $0.message.contains(message) }, "\(problems)")
        }
    }

    @Test("clients may be MAC addresses; a group naming one address family only is warned about")
    func clientKinds() throws {
        let yaml = """
        rule_groups:
          - {name: both, priority: 1, clients: ["02:00:5e:10:00:0a", "192.0.2.0/24"]}
          - {name: v4only, priority: 2, clients: ["192.0.2.0/24", "::ffff:198.51.100.0/120"]}
          - {name: v6only, priority: 3, clients: ["2001:db8:1::/48"]}
          - {name: dual, priority: 4, clients: ["192.0.2.0/24", "2001:db8:1::/48"]}
        """
        let (config, diagnostics) = ConfigReader.read(yaml: yaml, path: "c.yaml")
        #expect(!diagnostics.contains { $0.severity == .error }, "\(diagnostics)")
        #expect(try #require(config).ruleGroups[0].clients.first == .mac(MACAddress("02:00:5e:10:00:0a")!))
        let warnings = diagnostics.filter { $0.severity == .warning }
        #expect(warnings.map(\.line) == [3, 4], "\(warnings)")
        #expect(warnings[0].message.contains("'v4only'") && warnings[0].message.contains("IPv6 queries fall outside"))
    }

    @Test("several problems in one file are all listed")
    func severalProblems() {
        let yaml = "fail_mode: maybe\nqueues: x\nextra: 1\n"
        let (_, diagnostics) = ConfigReader.read(yaml: yaml, path: "c.yaml")
        #expect(Set(diagnostics.map(\.line)) == [1, 2, 3])
    }

    @Test("zone lists: primaries with ports, TSIG, notify_listen")
    func zoneLists() throws {
        let yaml = """
        notify_listen: ["192.0.2.1:5300", "[2001:db8::1]:5300"]
        domain_lists:
          - name: fleet
            zone:
              name: RPZ.Example
              primaries: ["203.0.113.53", "[2001:db8:3::53]:5353", "198.51.100.9:53"]
              tsig: {name: fleet-key, secret_file: keys/fleet.key}
        """
        let (config, diagnostics) = ConfigReader.read(yaml: yaml, path: "/etc/dnsgate/c.yaml")
        #expect(diagnostics.isEmpty, "\(diagnostics)")
        let parsed = try #require(config)
        #expect(parsed.notifyListen.map(\.description) == ["192.0.2.1:5300", "[2001:db8::1]:5300"])
        guard case .zone(let zone) = parsed.domainLists.first?.source else { Issue.record("not a zone list"); return }
        #expect(zone.zone == "rpz.example.")
        #expect(zone.primaries.map(\.description) == ["203.0.113.53:53", "[2001:db8:3::53]:5353", "198.51.100.9:53"])
        #expect(zone.tsig == TSIGKeyConfig(name: "fleet-key", algorithm: "hmac-sha256", secretFile: "/etc/dnsgate/keys/fleet.key"))
        #expect(parsed.domainLists[0].format == .rpz)
        #expect(parsed.domainLists[0].remoteOrigin == "dns://203.0.113.53:53,[2001:db8:3::53]:5353,198.51.100.9:53/rpz.example.")
    }

    @Test("zone list mistakes are reported with their line", arguments: [
        ("zone: {primaries: [203.0.113.53]}", "needs a 'name'"),
        ("zone: {name: rpz.example}", "needs 'primaries'"),
        ("zone: {name: rpz.example, primaries: [\"203.0.113.999\"]}", "is not ADDRESS or ADDRESS:PORT"),
        ("zone: {name: rpz.example, primaries: [\"203.0.113.53:0\"]}", "is not ADDRESS or ADDRESS:PORT"),
        ("zone: {name: \"bad..name\", primaries: [203.0.113.53]}", "is not a domain name"),
        ("zone: {name: rpz.example, primaries: [203.0.113.53], tsig: {name: k}}", "needs 'name' and 'secret_file'"),
        ("zone: {name: rpz.example, primaries: [203.0.113.53], tsig: {name: k, secret_file: f, algorithm: hmac-md5}}",
         "algorithm must be one of"),
        ("zone: {name: rpz.example, primaries: [203.0.113.53]}, url: \"http://x.example/l\"", "give one of"),
        ("zone: {name: rpz.example, primaries: [203.0.113.53]}, format: hosts", "a zone is read as rpz"),
    ])
    func zoneMistakes(source: String, message: String) {
        let yaml = "domain_lists:\n  - {name: fleet, \(source)}\n"
        let (_, problems) = ConfigReader.read(yaml: yaml, path: "c.yaml")
        #expect(problems.contains { $0.severity == .error && $0.line == 2 && $0.message.contains(message) }, "\(problems)")
        let (_, port53) = ConfigReader.read(yaml: "notify_listen: [\"192.0.2.1:53\"]\n", path: "c.yaml")
        #expect(port53.contains { $0.severity == .warning && $0.line == 1 && $0.message.contains("use another port") })
        let (_, listen) = ConfigReader.read(yaml: "notify_listen: 192.0.2.1\n", path: "c.yaml")
        #expect(listen.contains { $0.line == 1 && $0.message.contains("notify_listen: '192.0.2.1' is not an address and port") })
    }
}

@Suite("Config reader: dnstap")
struct DnstapConfigTests {
    @Test("dnstap: a Unix socket or a TCP address, identity, version, actions and buffer")
    func fields() throws {
        let (config, diagnostics) = ConfigReader.read(yaml: """
            dnstap: {unix: run/tap.sock, identity: gw1, version: v9, actions: [BLOCK, NO_MATCH], buffer_frames: 64}
            """, path: "/etc/dnsgate/d.yaml")
        #expect(diagnostics.isEmpty, "\(diagnostics)")
        let dnstap = try #require(config?.dnstap)
        #expect(dnstap.destination == .unix(path: "/etc/dnsgate/run/tap.sock"), "relative to the config's folder")
        #expect(dnstap.identity == "gw1" && dnstap.version == "v9")
        #expect(dnstap.actions == [.block] && dnstap.sendsNoMatch && dnstap.bufferFrames == 64)

        let tcp = try #require(ConfigReader.read(yaml: "dnstap: {tcp: \"[2001:db8::5]:6000\"}", path: "d.yaml").0?.dnstap)
        #expect(tcp.destination == .tcp(address: IPAddress("2001:db8::5")!, port: 6000))
        #expect(tcp.actions == [.block, .alert] && !tcp.sendsNoMatch, "the query log's default actions")
        #expect(tcp.identity == nil && tcp.bufferFrames == DnstapConfig.defaultBufferFrames)
        let v4 = try #require(ConfigReader.read(yaml: "dnstap: {tcp: \"192.0.2.1:6000\"}", path: "d.yaml").0?.dnstap)
        #expect(v4.destination == .tcp(address: IPAddress("192.0.2.1")!, port: 6000))
    }

    @Test("bad dnstap settings are errors naming file and line", arguments: [
        ("dnstap: {identity: x}", "dnstap: one of 'unix' (a socket path) or 'tcp' (\"ADDRESS:PORT\") is required"),
        ("dnstap: {unix: /a, tcp: \"192.0.2.1:1\"}", "dnstap: 'unix' and 'tcp' exclude each other"),
        ("dnstap: {tcp: \"collector:6000\"}", "dnstap.tcp: 'collector:6000' is not ADDRESS:PORT"),
        ("dnstap: {tcp: \"2001:db8::5:6000\"}", "dnstap.tcp: '2001:db8::5:6000' is not ADDRESS:PORT"),
        ("dnstap: {tcp: \"192.0.2.1:0\"}", "is not ADDRESS:PORT"),
        ("dnstap: {unix: /a, actions: [DENY]}", "dnstap.actions: 'DENY' is not one of ALLOW, BLOCK, ALERT, NO_MATCH"),
        ("dnstap: {unix: /a, buffer_frames: 2}", "dnstap.buffer_frames must be a whole number from 16 to 1000000"),
        ("dnstap: {unix: /a, port: 6000}", "dnstap: unknown key 'port'"),
        ("dnstap: /run/tap.sock", "dnstap must be a mapping"),
    ])
    func errors(yaml: String, message: String) {
        let (_, diagnostics) = ConfigReader.read(yaml: "queues: 0\n" + yaml + "\n", path: "/etc/d.yaml")
        let errors = diagnostics.filter { $0.severity == .error }.map { "\($0)" }
        #expect(errors.contains { $0.hasPrefix("/etc/d.yaml:2:") && $0.contains(message) }, "\(errors)")
    }
}
