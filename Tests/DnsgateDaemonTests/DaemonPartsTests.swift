// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
@testable import DnsgatePolicy
import Foundation
import Testing
import ThreatDetection
@testable import DnsgateDaemon

/// The daemon's pure parts: the counter table behind every stats view, the
/// Prometheus text, the query-log line, top talkers and the log writer's
/// handling of outputs that fail.
@Suite("Daemon parts")
struct DaemonPartsTests {
    /// A snapshot whose every counter holds a different value.
    static func numberedSnapshot() -> StatsSnapshot {
        var snapshot = StatsSnapshot(version: "t", uptimeSeconds: 1, failMode: "open", undecodable: "drop",
                                     onOverload: "drop", policy: .init(generation: 1, rules: 0, domains: 0, loadedAt: ""))
        var next: UInt64 = 100
        func number() -> UInt64 { next += 1; return next }
        snapshot.packets = .init(received: number(), accepted: number(), dropped: number(), answered: number(),
                                 overflowPassed: number(), overflowDropped: number())
        snapshot.verdicts = .init(allow: number(), block: number(), alert: number(), noMatch: number(),
                                  notDns: number(), notQuery: number())
        snapshot.responses = .init(nxdomain: number(), nodata: number(), refused: number(), override: number(),
                                   drop: number())
        snapshot.tcp = .init(connections: number(), open: number(), refused: number(), queries: number(),
                             relayed: number(), answersRelayed: number(), upstreamFailures: number(),
                             idleClosed: number())
        snapshot.overrideTargets = .init(queries: number(), failures: number(), cacheHits: number(),
                                         overflows: number())
        snapshot.errors = .init(injectFailures: number(), reloadFailures: number(), verdictFailures: number(),
                                queryLogDropped: number())
        snapshot.queryLog = .init(written: number(), lost: number(), lastError: "disk full")
        snapshot.dnstap = .init(frames: number(), dropped: number(), buffered: number(), connected: true,
                                lastError: nil)
        return snapshot
    }

    @Test("every counter of the JSON is in the one table, with its value, and in the Prometheus text")
    func counterTableCoversTheJSON() throws {
        let snapshot = Self.numberedSnapshot()
        let json = try #require(JSONSerialization.jsonObject(with: Data(snapshot.json().utf8)) as? [String: Any])
        let table = Dictionary(uniqueKeysWithValues: snapshot.counters.map { ("\($0.section).\($0.name)", $0.value) })
        var seen = 0
        for section in ["packets", "verdicts", "responses", "tcp", "override_targets", "errors", "query_log", "dnstap"] {
            let fields = try #require(json[section] as? [String: Any], "section \(section)")
            for (key, value) in fields {
                guard let number = value as? NSNumber, !(value is String) else { continue }
                #expect(table["\(section).\(key)"] == number.uint64Value, "\(section).\(key) is not in the table")
                seen += 1
            }
        }
        #expect(seen >= 35)
        let prometheus = snapshot.prometheus
        for counter in snapshot.counters {
            let labels = counter.label.map { "{\($0.name)=\"\($0.value)\"}" } ?? ""
            #expect(prometheus.contains("dnsgate_\(counter.family)\(labels) \(counter.value)\n"),
                    "\(counter.section).\(counter.name) missing from Prometheus")
        }
    }

    @Test("Prometheus: one HELP and TYPE per family, before its samples; every line well formed")
    func prometheusIsWellFormed() {
        var snapshot = Self.numberedSnapshot()
        snapshot.rules = [.init(group: "g\"x", rule: "r\\y", action: "BLOCK", hits: 3)]
        var declared = Set<String>()
        for line in snapshot.prometheus.split(separator: "\n") {
            if line.hasPrefix("# HELP ") {
                let name = String(line.split(separator: " ")[2])
                #expect(declared.insert(name).inserted, "\(name) declared twice")
            } else if line.hasPrefix("# TYPE ") {
                #expect(["counter", "gauge"].contains(String(line.split(separator: " ")[3])))
            } else {
                let name = String(line.prefix { $0 != "{" && $0 != " " })
                #expect(declared.contains(name), "sample of undeclared \(name)")
                #expect(UInt64(line.split(separator: " ").last ?? "") != nil, "\(line)")
            }
        }
        #expect(snapshot.prometheus.contains(#"group="g\"x",rule="r\\y""#), "label values escaped")
    }

    static func policy() throws -> CompiledPolicy {
        let files: [String: [UInt8]] = [
            "/l.txt": Array("*.bad.example\n".utf8),
            "/c.yaml": Array("""
                domain_lists: [{name: bad, file: /l.txt}]
                rule_groups: [{name: base, priority: 1, rules: [{name: block-bad, priority: 1, domain_list: bad, action: BLOCK}]}]
                """.utf8),
        ]
        let compiler = PolicyCompiler(keepLines: false) { files[$0] ?? [] }
        return try #require(compiler.load(configPath: "/c.yaml", generation: 3).1.policy)
    }

    @Test("a query-log line is one JSON object with Route 53's fields")
    func queryLogLine() throws {
        let policy = try Self.policy()
        let name = try #require(DomainName(text: "X.bad.example"))
        let decision = try #require(policy.decide(name: name, type: .aaaa, client: IPAddress("2001:db8::7")!))
        let outcome = policy.outcome(of: decision)
        let record = DecisionRecord(
            seconds: 1_700_000_000, microseconds: 42, source: IPAddress("2001:db8::7")!, sourcePort: 5353,
            destination: IPAddress("198.51.100.53")!, destinationPort: 53, name: name, type: .aaaa,
            queryClass: .internet, transport: .tcp, generation: policy.generation, ruleIndex: decision.ruleIndex,
            action: outcome.action, blockResponse: outcome.blockResponse)
        var formatter = QueryLogFormatter()
        formatter.use(RuleLabels(policy), generation: policy.generation)
        var out: [UInt8] = []
        formatter.append(record, to: &out)
        #expect(out.last == UInt8(ascii: "\n"))
        let line = try #require(JSONSerialization.jsonObject(with: Data(out)) as? [String: Any])
        #expect(line["query_timestamp"] as? String == "2023-11-14T22:13:20.000042Z")
        #expect(line["srcaddr"] as? String == "2001:db8::7")
        #expect(line["query_type"] as? String == "AAAA")
        #expect(line["firewall_rule_action"] as? String == "BLOCK")
        #expect(line["block_response"] as? String == "NXDOMAIN")
        #expect(line["firewall_rule"] as? String == "block-bad" && line["firewall_domain_list"] as? String == "bad")
    }

    /// A policy of one threat rule, with the shipped model and suffix list.
    static func threatPolicy(_ threat: String = "DNS_TUNNELING", generation: Int = 2) throws -> CompiledPolicy {
        let detect = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../detect")
            .standardized.path
        var files: [String: [UInt8]] = ["/c.yaml": Array("""
            threat_detection: {model: /model.txt, public_suffix_list: /psl.dat}
            rule_groups: [{name: threats, priority: 1, rules: [{name: tunnels, priority: 1, threat: \(threat), confidence: MEDIUM, action: ALERT}]}]
            """.utf8)]
        files["/model.txt"] = FileManager.default.contents(atPath: detect + "/threat-model.txt").map { [UInt8]($0) }
        files["/psl.dat"] = FileManager.default.contents(atPath: detect + "/public_suffix_list.dat").map { [UInt8]($0) }
        let compiler = PolicyCompiler(keepLines: false) { files[$0] ?? [] }
        return try #require(compiler.load(configPath: "/c.yaml", generation: generation).1.policy)
    }

    @Test("what the tunnel table has seen carries over a reload that keeps a tunnel rule and its size")
    func tunnelTableAcrossReloads() throws {
        let first = PolicyState(policy: try Self.threatPolicy(), workers: 1, tunnelPairs: 4096)
        let kept = PolicyState(policy: try Self.threatPolicy(generation: 3), workers: 1, tunnelPairs: 4096, previous: first)
        #expect(first.tunnels != nil && kept.tunnels === first.tunnels)
        let resized = PolicyState(policy: try Self.threatPolicy(generation: 4), workers: 1, tunnelPairs: 8192, previous: kept)
        #expect(resized.tunnels !== kept.tunnels && resized.tunnels?.capacity == 8192)
        let none = PolicyState(policy: try Self.threatPolicy("DGA", generation: 5), workers: 1, tunnelPairs: 8192,
                               previous: resized)
        #expect(none.tunnels == nil, "no tunnel rule, no table")
    }

    @Test("a threat rule's log line names the threat, the rule's threshold and what the detector found")
    func threatLogLine() throws {
        let policy = try Self.threatPolicy()
        let name = try #require(DomainName(text: "aGVsbG8gd29ybGQ.t.example.net"))
        var threats = ThreatAssessment()
        threats.tunneling = ThreatFinding(level: .high, score: 0.8765)
        let decision = try #require(policy.decide(name: name, type: .txt, client: IPAddress("192.0.2.9")!, threats: threats))
        let record = DecisionRecord(
            seconds: 1_700_000_000, microseconds: 0, source: IPAddress("192.0.2.9")!, sourcePort: 5353,
            destination: IPAddress("198.51.100.53")!, destinationPort: 53, name: name, type: .txt,
            queryClass: .internet, transport: .udp, generation: policy.generation, ruleIndex: decision.ruleIndex,
            action: .alert, blockResponse: .nxdomain, threat: threats.tunneling)
        var formatter = QueryLogFormatter()
        formatter.use(RuleLabels(policy), generation: policy.generation)
        var out: [UInt8] = []
        formatter.append(record, to: &out)
        formatter.append(record, to: &out)  // the rule's fields from the cache the second time
        let lines = out.split(separator: UInt8(ascii: "\n"))
        #expect(lines.count == 2 && lines[0] == lines[1])
        let line = try #require(JSONSerialization.jsonObject(with: Data(lines[0])) as? [String: Any])
        #expect(line["dns_threat_protection"] as? String == "DNS_TUNNELING")
        #expect(line["confidence_threshold"] as? String == "MEDIUM")
        #expect(line["threat_confidence"] as? String == "HIGH")
        #expect(line["threat_score"] as? String == "0.877", "rounded to three decimals")
        #expect(line["firewall_rule_action"] as? String == "ALERT" && line["firewall_domain_list"] == nil)
    }

    @Test("decimal fractions", arguments: [(0, "0.000"), (5, "0.005"), (877, "0.877"), (1000, "1.000")])
    func decimalFractions(value: Int, text: String) {
        var out: [UInt8] = []
        QueryLogFormatter.decimal(value, minimumDigits: 4, fractionDigits: 3, to: &out)
        #expect(String(decoding: out, as: UTF8.self) == text)
    }

    @Test("each decider's ring reaches the log; a full ring drops and counts, never waits")
    func recorderRings() throws {
        let policy = try Self.policy()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dnsgate-rings-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("q.log").path
        let recorder = DecisionRecorder(log: QueryLogConfig(path: file, actions: [.block]), deciders: 2, capacity: 8)
        recorder.policyInForce(policy)
        let name = try #require(DomainName(text: "a.bad.example"))
        func record(_ second: Int) -> DecisionRecord {
            DecisionRecord(seconds: second, microseconds: 0, source: IPAddress("192.0.2.10")!, sourcePort: 1,
                           destination: IPAddress("198.51.100.53")!, destinationPort: 53, name: name, type: .a,
                           queryClass: .internet, transport: .udp, generation: policy.generation, ruleIndex: 0,
                           action: .block, blockResponse: .nxdomain)
        }
        for second in 0..<10 { recorder.append(record(second), from: 0) }
        for second in 0..<5 { recorder.append(record(second), from: 1) }
        #expect(recorder.droppedRecords.value == 2)
        recorder.run(while: { false }, report: { _ in })
        #expect(recorder.writtenRecords.value == 13)
        let text = try String(contentsOfFile: file, encoding: .utf8)
        #expect(text.split(separator: "\n").count == 13)
        #expect(text.contains(#""firewall_rule":"block-bad""#))
    }

    @Test("with NO_MATCH, queries no rule matched are logged too, without firewall fields")
    func noMatchLogged() throws {
        let policy = try Self.policy()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dnsgate-nomatch-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("q.log").path
        let name = try #require(DomainName(text: "www.good.example"))
        func unmatched() -> DecisionRecord {
            DecisionRecord(seconds: 1, microseconds: 0, source: IPAddress("192.0.2.10")!, sourcePort: 1,
                           destination: IPAddress("198.51.100.53")!, destinationPort: 53, name: name, type: .a,
                           queryClass: .internet, transport: .udp, generation: policy.generation,
                           ruleIndex: DecisionRecord.noRule, action: .allow, blockResponse: .nxdomain)
        }
        for logsNoMatch in [false, true] {
            let recorder = DecisionRecorder(log: QueryLogConfig(path: file, actions: [.allow], logsNoMatch: logsNoMatch),
                                            deciders: 1)
            recorder.policyInForce(policy)
            recorder.append(unmatched(), from: 0)
            recorder.run(while: { false }, report: { _ in })
            #expect(recorder.writtenRecords.value == (logsNoMatch ? 1 : 0), "ALLOW alone does not log unmatched queries")
        }
        let line = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file)))
            as? [String: Any])
        #expect(line["query_name"] as? String == "www.good.example.")
        #expect(line["firewall_rule"] == nil && line["firewall_rule_action"] == nil)
    }

    @Test("metrics carry when the policy was loaded and each list last loaded or fetched")
    func timestampsInMetrics() {
        var snapshot = Self.numberedSnapshot()
        snapshot.policy.loadedAt = "2026-11-30T04:00:00Z"
        snapshot.lists = [.init(name: "feed", file: "/c/feed.list", url: "https://x", format: "domains", entries: 1,
                                skippedLines: 0, hits: 0, lastSuccess: "2026-11-30T03:00:00Z", lastError: nil)]
        #expect(snapshot.prometheus.contains("dnsgate_policy_loaded_timestamp_seconds 1796011200\n"))
        #expect(snapshot.prometheus.contains("dnsgate_list_last_success_timestamp_seconds{list=\"feed\"} 1796007600\n"))
    }

    @Test("top talkers rank the most blocked names and clients of the window")
    func topTalkers() throws {
        let top = TopTalkers()
        let noisy = try #require(DomainName(text: "noisy.bad.example"))
        let quiet = try #require(DomainName(text: "quiet.bad.example"))
        for second in 0..<5 { top.add(name: noisy, client: IPAddress("192.0.2.10")!, at: 1000 + second) }
        top.add(name: quiet, client: IPAddress("192.0.2.20")!, at: 1004)
        let ranking = top.ranking(limit: 1, now: 1005)
        #expect(ranking.names.map(\.0) == ["noisy.bad.example"])
        #expect(ranking.names.first?.1 == 5)
        #expect(ranking.clients.map(\.0) == ["192.0.2.10"])
    }

    @Test("the log writer counts what a full disk or a FIFO with no reader does not take, and recovers")
    func logWriterFailures() throws {
        let full = QueryLogWriter(path: "/dev/full")
        let lines = Array("{\"a\":1}\n{\"b\":2}\n".utf8)
        #expect(full.write(lines, recordEnds: [8, 16]) == 0)
        #expect(full.lastError?.contains("No space") == true, "\(full.lastError ?? "nil")")

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dnsgate-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let fifo = directory.appendingPathComponent("log.fifo").path
        #expect(mkfifo(fifo, 0o600) == 0)
        let unread = QueryLogWriter(path: fifo)
        #expect(unread.write(lines, recordEnds: [8, 16]) == 0, "no reader: not written, and no wait for one")
        #expect(unread.lastError != nil)

        let file = directory.appendingPathComponent("queries.log").path
        let writer = QueryLogWriter(path: file)
        #expect(writer.write(lines, recordEnds: [8, 16]) == 2)
        #expect(writer.write(lines, recordEnds: [8, 16]) == 2)
        #expect(writer.lastError == nil)
        #expect(try String(contentsOfFile: file, encoding: .utf8) == String(decoding: lines + lines, as: UTF8.self))
    }
}

/// The per-packet ruling and the policy swap, without a queue.
@Suite("Judge and policy swap")
struct JudgeAndSwapTests {
    static func policy(generation: Int, rules: String) throws -> CompiledPolicy {
        let files: [String: [UInt8]] = [
            "/bad.txt": Array("*.bad.example\n".utf8),
            "/c.yaml": Array("domain_lists: [{name: bad, file: /bad.txt}]\nrule_groups: [{name: base, priority: 1, rules: [\(rules)]}]\n".utf8),
        ]
        let compiler = PolicyCompiler(keepLines: false) { files[$0] ?? [] }
        return try #require(compiler.load(configPath: "/c.yaml", generation: generation).1.policy)
    }

    /// An IPv4/UDP query for `name` from 192.0.2.10 to 198.51.100.53.
    static func packet(_ name: String, qr: Bool = false) -> [UInt8] {
        var dns: [UInt8] = [0x12, 0x34, qr ? 0x81 : 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
        for label in name.split(separator: ".") { dns += [UInt8(label.utf8.count)] + Array(label.utf8) }
        dns += [0, 0, 1, 0, 1]
        return ipv4UDP(dns, toResolver: true)
    }

    /// `dns` in IPv4/UDP between the client 192.0.2.10:40000 and the
    /// resolver 198.51.100.53:53, in either direction.
    static func ipv4UDP(_ dns: [UInt8], toResolver: Bool) -> [UInt8] {
        let client: [UInt8] = [192, 0, 2, 10], resolver: [UInt8] = [198, 51, 100, 53]
        let clientPort: [UInt8] = [0x9c, 0x40], resolverPort: [UInt8] = [0, 53]
        let udp = (toResolver ? clientPort + resolverPort : resolverPort + clientPort)
            + [UInt8((8 + dns.count) >> 8), UInt8((8 + dns.count) & 0xff), 0, 0]
        let total = 20 + udp.count + dns.count
        return [0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), 0, 1, 0x40, 0, 64, 17, 0, 0]
            + (toResolver ? client + resolver : resolver + client) + udp + dns
    }

    static func rule(_ judge: QueryJudge, _ packet: [UInt8], state: PolicyState) -> String {
        switch judge.rule(QueryDecoder.decode(packet: packet.span), packet: packet.span, transport: .udp,
                          state: state, mac: nil) {
        case .pass: return "pass"
        case .drop: return "drop"
        case .answer(let question, let kind, _, let stage):
            return "answer \(question.name) \(kind)" + (stage == .answer ? " to \(question.source):\(question.sourcePort)" : "")
        }
    }

    /// A response from 198.51.100.53:53 to 192.0.2.10:40000 for `name` A,
    /// whose answer is a CNAME to `target` (when given) and `address`.
    static func response(_ name: String, target: String? = nil, address: [UInt8] = [203, 0, 113, 7],
                         cutBy: Int = 0) -> [UInt8] {
        func wire(_ text: String) -> [UInt8] {
            text.split(separator: ".").flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) } + [0]
        }
        var dns: [UInt8] = [0x12, 0x34, 0x81, 0x80, 0, 1, 0, target == nil ? 1 : 2, 0, 0, 0, 0] + wire(name) + [0, 1, 0, 1]
        var owner: [UInt8] = [0xc0, 12]
        if let target {
            dns += owner + [0, 5, 0, 1, 0, 0, 0, 60, 0, UInt8(wire(target).count)] + wire(target)
            owner = wire(target)
        }
        dns += owner + [0, 1, 0, 1, 0, 0, 0, 60, 0, 4] + address
        return ipv4UDP(Array(dns.dropLast(cutBy)), toResolver: false)
    }

    /// A judge (undecodable questions dropped) and a policy state for `rules`.
    static func judge(rules: String, undecodableAnswer: PacketAction = .drop) throws -> (QueryJudge, PolicyState) {
        let judge = QueryJudge(counters: WorkerCounters(queue: 0), recorder: DecisionRecorder(log: nil, deciders: 1),
                               index: 0, undecodable: .drop, undecodableAnswer: undecodableAnswer)
        return (judge, PolicyState(policy: try policy(generation: 1, rules: rules), workers: 1))
    }

    @Test("a response is decided on its answer and counted in the answer stage only")
    func answerStage() throws {
        let blockBad = "{name: nx, priority: 1, domain_list: bad, action: BLOCK}"
        let (judge, state) = try Self.judge(rules: blockBad)
        let counters = judge.counters
        #expect(Self.rule(judge, Self.response("www.good.example"), state: state) == "pass")
        #expect(Self.rule(judge, Self.response("www.good.example", target: "t.bad.example"), state: state)
                == "answer www.good.example nxdomain to 192.0.2.10:40000", "the forged answer goes to the client")
        #expect(Self.rule(judge, Self.response("www.good.example", cutBy: 2), state: state)
                == "drop", "an answer section cut short is undecodable")
        let headerCut = Self.ipv4UDP([0x12, 0x34, 0x81, 0x80, 0, 1, 0], toResolver: false)
        #expect(Self.rule(judge, headerCut, state: state) == "drop", "a message from port 53 cut inside its header too")
        let (passing, _) = try Self.judge(rules: blockBad, undecodableAnswer: .pass)
        #expect(Self.rule(passing, headerCut, state: state) == "pass", "fail_mode open passes it, whatever undecodable says")
        #expect(Self.rule(judge, Self.response("www.good.example", target: "t.bad.example", cutBy: 2), state: state)
                == "answer www.good.example nxdomain to 192.0.2.10:40000", "a blocked name before the damage still blocks")
        let answers = counters.answers
        #expect(answers.received.value == 5 && answers.accepted.value == 1 && answers.dropped.value == 4)
        #expect(answers.block.value == 2 && answers.noMatch.value == 1 && answers.notDNS.value == 2)
        #expect(counters.received.value == 2 && counters.notDNS.value == 2 && counters.dropped.value == 2,
                "a malformed response is not_dns in the question stage's counters too")
        #expect(counters.block.value == 0 && counters.noMatch.value == 0, "no question was decided")
        #expect(state.hits(ofRule: 0).answers == 2 && state.hits(ofRule: 0).questions == 0)
    }

    @Test("a query is passed, dropped or answered, and counted once either way")
    func ruling() throws {
        let (judge, state) = try Self.judge(rules: "{name: nx, priority: 1, domain_list: bad, action: BLOCK}")
        let counters = judge.counters
        #expect(Self.rule(judge, Self.packet("www.good.example"), state: state) == "pass")
        #expect(Self.rule(judge, Self.packet("x.bad.example"), state: state) == "answer x.bad.example nxdomain")
        #expect(Self.rule(judge, [0x45, 0, 0], state: state) == "drop", "undecodable: drop")
        #expect(Self.rule(judge, Self.packet("x.bad.example", qr: true), state: state) == "drop",
                "a response naming a blocked name is not passed")
        #expect(counters.received.value == 4)
        #expect(counters.accepted.value == 1 && counters.dropped.value == 3)
        #expect(counters.block.value == 1 && counters.noMatch.value == 1 && counters.notDNS.value == 1)
        #expect(counters.answers.received.value == 0, "a response to port 53 is no answer to a client")
        #expect(state.hits(ofRule: 0).questions == 1)
    }

    @Test("rule hits survive reloads by group/rule name; a rule that goes away takes its hits with it")
    func hitsCarryOver() throws {
        let first = try Self.policy(generation: 1, rules: """
            {name: nx, priority: 1, domain_list: bad, action: BLOCK}, {name: gone, priority: 2, domain_list: bad, action: ALERT}
            """)
        let holder = PolicyHolder(PolicyState(policy: first, workers: 2))
        holder.state.ruleHits[0][0].hits.increment()
        holder.state.ruleHits[1][0].hits.increment()
        holder.state.ruleHits[1][1].hits.increment()
        let second = try Self.policy(generation: 2, rules: "{name: nx, priority: 5, domain_list: bad, action: BLOCK}")
        holder.replace(with: PolicyState(policy: second, workers: 2))
        holder.state.ruleHits[0][0].hits.increment()
        let third = try Self.policy(generation: 3, rules: "{name: nx, priority: 5, domain_list: bad, action: BLOCK}")
        holder.replace(with: PolicyState(policy: third, workers: 2))
        let (state, hits) = holder.ruleHits()
        #expect(state.policy.generation == 3)
        #expect(hits.map(\.questions) == [3], "2 from generation 1 and 1 from generation 2, by name")
        #expect(holder.swapCount == 2)
    }
}
