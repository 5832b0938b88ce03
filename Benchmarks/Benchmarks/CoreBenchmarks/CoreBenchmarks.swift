// SPDX-License-Identifier: GPL-2.0-or-later
import Benchmark
import DNSWire
import DnsgatePolicy
import ThreatDetection

/// The per-packet path of the pure core, 1,000 packets per iteration (so the
/// throughput column, in K, is thousands of packets per second), and list
/// compilation. Every per-packet benchmark must allocate nothing; the static
/// thresholds in Thresholds/ hold that (0 mallocs) and throughput within 50%.
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        timeUnits: .microseconds,
        maxDuration: .seconds(2),
        maxIterations: 100_000)
    // Build the fixtures before timing anything.
    _ = (Fixtures.policy1M, Fixtures.packets, Fixtures.queries, Fixtures.longQueries, Fixtures.list100k,
         Fixtures.policy100Rules, Fixtures.policy10kRules, Fixtures.policy1MThreats,
         Fixtures.unseenQueries)
    let perPacket = Benchmark.Configuration(
        metrics: [.throughput, .mallocCountTotal],
        timeUnits: .microseconds, scalingFactor: .kilo, maxDuration: .seconds(2), maxIterations: 100_000,
        thresholds: [.mallocCountTotal: .init(absolute: [.p100: 0]), .throughput: .init(relative: [.p50: 50])])

    // Parse: an IPv4/UDP/DNS query with an EDNS cookie, as stubs send it.
    Benchmark("Parse", configuration: perPacket) { benchmark in
        for packet in Fixtures.packets {
            blackHole(QueryDecoder.decode(packet: packet.span))
        }
    }

    // Decide1M: a 1,000,000-name policy, 10% of the queries listed.
    Benchmark("Decide1M", configuration: perPacket) { benchmark in
        let policy = Fixtures.policy1M
        for query in Fixtures.queries {
            blackHole(policy.decide(name: query.name, type: query.type, client: query.source))
        }
    }

    // DecideLongNames: the same policy, names of 250+ octets in 100+ labels.
    // Lookup is linear in the name's bytes, so compare with Decide1M: the
    // ratio is about the ratio of name lengths, not its square.
    Benchmark("DecideLongNames", configuration: perPacket) { benchmark in
        let policy = Fixtures.policy1M
        for query in Fixtures.longQueries {
            blackHole(policy.decide(name: query.name, type: query.type, client: query.source))
        }
    }

    // Decide100Rules / Decide10kRules: the same 1M names in 100 lists, under
    // 100 rules in one group, then 10,000 rules in 100 groups (the same lists
    // in every group). A query looks only at the rules of the lists its name
    // is in, so the two should be within noise of each other.
    Benchmark("Decide100Rules", configuration: perPacket) { benchmark in
        let policy = Fixtures.policy100Rules
        for query in Fixtures.queries {
            blackHole(policy.decide(name: query.name, type: query.type, client: query.source))
        }
    }
    Benchmark("Decide10kRules", configuration: perPacket) { benchmark in
        let policy = Fixtures.policy10kRules
        for query in Fixtures.queries {
            blackHole(policy.decide(name: query.name, type: query.type, client: query.source))
        }
    }

    // BuildAnswer: NXDOMAIN with SOA, EDE and the cookie echoed.
    Benchmark("BuildAnswer", configuration: perPacket) { benchmark in
        var output = [UInt8](repeating: 0, count: 4096)
        let text = Array("blocked by dnsgate rule g/block".utf8)
        let settings = Fixtures.policy1M.answerSettings
        var span = output.mutableSpan
        let packets = Fixtures.packets
        for (index, query) in Fixtures.queries.enumerated() {
            let packet = packets[index]
            blackHole(ForgedAnswerBuilder.build(answering: query, packet: packet.span, kind: .nxdomain,
                                                settings: settings, extraText: text.span, into: &span))
        }
    }

    // ParseDecideBuild: the whole per-packet core, forging answers for the listed tenth.
    Benchmark("ParseDecideBuild", configuration: perPacket) { benchmark in
        var output = [UInt8](repeating: 0, count: 4096)
        let policy = Fixtures.policy1M
        var span = output.mutableSpan
        for packet in Fixtures.packets {
            guard case .query(let query) = QueryDecoder.decode(packet: packet.span),
                  let decision = policy.decide(name: query.name, type: query.type, client: query.source) else { continue }
            let extraText = policy.rules[decision.ruleIndex].extraText
            if let kind = policy.outcome(of: decision).forgedAnswer {
                blackHole(ForgedAnswerBuilder.build(answering: query, packet: packet.span, kind: kind,
                                                    settings: policy.answerSettings, extraText: extraText.span,
                                                    into: &span))
            }
        }
    }

    // ParseAssessDecideBuild: ParseDecideBuild with a rule for each threat
    // (DGA, DICT_DGA, DNS_TUNNELING): every query's registrable domain found
    // in the public suffix list, scored by the name model and recorded by the
    // tunnelling detector (500 clients). Its cost over ParseDecideBuild is
    // what the detectors add per query.
    let tunnels = TunnelTracker(capacity: 65_536)
    Benchmark("ParseAssessDecideBuild", configuration: perPacket) { benchmark in
        var output = [UInt8](repeating: 0, count: 4096)
        let policy = Fixtures.policy1MThreats
        var span = output.mutableSpan
        var now: UInt64 = 1_000_000_000
        for (index, packet) in Fixtures.packets.enumerated() {
            guard case .query(var query) = QueryDecoder.decode(packet: packet.span) else { continue }
            query.source = .v4(0xC000_0200 | UInt32(index % 500))
            now &+= 1_000_000
            let threats = policy.assess(name: query.name, type: query.type, client: query.source, now: now,
                                        tunnels: tunnels)
            guard let decision = policy.decide(name: query.name, type: query.type, client: query.source,
                                               threats: threats) else { continue }
            let extraText = policy.rules[decision.ruleIndex].extraText
            if let kind = policy.outcome(of: decision).forgedAnswer {
                blackHole(ForgedAnswerBuilder.build(answering: query, packet: packet.span, kind: kind,
                                                    settings: policy.answerSettings, extraText: extraText.span,
                                                    into: &span))
            }
        }
    }

    // ParseInspectBuild: the answer stage's whole per-packet core: a response
    // decoded, its question, CNAME targets and addresses decided (a 1M-name
    // list, a 100,000-prefix ip list, rebinding protection), and the forged
    // answer built for the blocked tenth of the chains. Set against
    // ParseDecideBuild, it is what inspecting the response adds to a query.
    Benchmark("ParseInspectBuild", configuration: perPacket) { benchmark in
        var output = [UInt8](repeating: 0, count: 4096)
        let policy = Fixtures.policy1MAnswers
        var span = output.mutableSpan
        let client = IPAddress.v4(0xC000_020A)
        for packet in Fixtures.responses {
            guard case .query(let response) = QueryDecoder.decode(packet: packet.span) else { continue }
            let message = packet.span.extracting(response.dnsOffset..<(response.dnsOffset + response.dnsLength))
            let verdict = policy.inspect(response: response, message: message, client: client, mac: nil) { blackHole($0.decision.ruleIndex) }
            guard case .blocked(let finding) = verdict, let kind = finding.outcome.forgedAnswer else { continue }
            let extraText = policy.rules[finding.decision.ruleIndex].extraText
            blackHole(ForgedAnswerBuilder.build(answering: response.queryItAnswers, packet: packet.span, kind: kind,
                                                settings: policy.answerSettings, extraText: extraText.span,
                                                into: &span))
        }
    }

    // Assess: the detectors alone (suffix list, name model, tunnel table).
    Benchmark("Assess", configuration: perPacket) { benchmark in
        let policy = Fixtures.policy1MThreats
        var now: UInt64 = 1_000_000_000
        for (index, query) in Fixtures.queries.enumerated() {
            now &+= 1_000_000
            blackHole(policy.assess(name: query.name, type: query.type, client: .v4(0xC000_0200 | UInt32(index % 500)),
                                    now: now, tunnels: tunnels))
        }
    }

    // AssessUnseen: the detectors on names never asked before (the name
    // model's cache misses: every name is scored), as in a flood of random names.
    var unseenTurn = 0
    Benchmark("AssessUnseen", configuration: perPacket) { benchmark in
        let policy = Fixtures.policy1MThreats
        let first = unseenTurn % 200 * 1000
        unseenTurn += 1
        var now: UInt64 = 1_000_000_000
        for index in first..<(first + 1000) {
            let query = Fixtures.unseenQueries[index]
            now &+= 1_000_000
            blackHole(policy.assess(name: query.name, type: query.type, client: .v4(0xC000_0200 | UInt32(index % 500)),
                                    now: now, tunnels: tunnels))
        }
    }

    // AddressLookup: 1,000 answer addresses (a third listed /32s, a third
    // inside listed /24s and /16s, a third random; a tenth IPv6, some
    // IPv4-mapped) against the 1,000,000-prefix table of AddressListLoad1M.
    var addressLookup = perPacket
    addressLookup.setup = { _ = (Fixtures.addressTable1M, Fixtures.answerAddresses) }
    Benchmark("AddressLookup", configuration: addressLookup) { benchmark in
        let table = Fixtures.addressTable1M
        for address in Fixtures.answerAddresses {
            blackHole(table.lookup(address))
        }
    }

    // AddressListLoad1M: read a 1,000,000-line address list (/32s, /24s,
    // /16s and a tenth IPv6, as text; generated in setup) and build its
    // table: what an ip_list costs a reload. The bar is one second.
    Benchmark("AddressListLoad1M",
              configuration: .init(metrics: [.wallClock, .peakMemoryResident, .mallocCountTotal], timeUnits: .milliseconds,
                                   maxDuration: .seconds(10), maxIterations: 10,
                                   thresholds: [.wallClock: .init(relative: [.p90: 50]),
                                                .peakMemoryResident: .init(relative: [.p90: 25])],
                                   setup: { _ = Fixtures.addressList1M })) { benchmark in
        var entries: [AddressTable.Entry] = []
        let report = AddressListParser.read(Fixtures.addressList1M.span, format: .auto, file: "/ip.txt") { prefix, line, _ in
            entries.append(AddressTable.Entry(prefix: prefix, line: Int32(truncatingIfNeeded: line), outcome: -1))
        }
        let table = AddressTable(entries)
        guard report.entries == 1_000_000, table.count > 900_000 else { fatalError("address fixture: \(report.diagnostics)") }
        blackHole(table)
    }

    // Compile100k: read and compile a 100,000-name domains list.
    Benchmark("Compile100k",
              configuration: .init(metrics: [.wallClock, .peakMemoryResident], timeUnits: .milliseconds,
                                   maxDuration: .seconds(5), maxIterations: 20,
                                   thresholds: [.wallClock: .init(relative: [.p90: 50]),
                                                .peakMemoryResident: .init(relative: [.p90: 25])])) { benchmark in
        let list = Fixtures.list100k
        let config = Array("domain_lists: [{name: l, file: /l.txt}]".utf8)
        let compiler = PolicyCompiler(keepLines: false) { path in path == "/l.txt" ? list : config }
        blackHole(compiler.load(configPath: "/c.yaml", generation: 1).1.policy)
    }
}
