// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import DnsgatePolicy
import Foundation

/// Deterministic names and packets: the same seed gives the same bytes on
/// every machine, so runs compare.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {  // splitmix64
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

enum Fixtures {
    static let syllables = ["ka", "lo", "mi", "ra", "ton", "vel", "qu", "zi", "bar", "dex", "nor", "ix", "pa", "sun", "tri"]
    static let suffixes = ["com", "net", "org", "io", "de", "co.uk", "info", "xyz", "fr", "example"]
    static let prefixes = ["www", "ads", "cdn", "api", "m", "img", "static"]

    /// A realistic-looking name: 2–5 syllables and a number under a public suffix, sometimes a host label.
    static func name(_ rng: inout SeededGenerator) -> String {
        var label = ""
        for _ in 0..<Int.random(in: 2...5, using: &rng) { label += syllables.randomElement(using: &rng)! }
        label += String(Int.random(in: 0..<1000, using: &rng))
        var name = label + "." + suffixes.randomElement(using: &rng)!
        if Int.random(in: 0..<10, using: &rng) < 3 { name = prefixes.randomElement(using: &rng)! + "." + name }
        return name
    }

    static func names(count: Int, seed: UInt64) -> [String] {
        var rng = SeededGenerator(state: seed)
        var seen = Set<String>()
        var result: [String] = []
        result.reserveCapacity(count)
        while result.count < count {
            let next = name(&rng)
            if seen.insert(next).inserted { result.append(next) }
        }
        return result
    }

    static func policy(listedNames: [String]) -> CompiledPolicy {
        let list = Array(listedNames.joined(separator: "\n").utf8)
        let config = Array("""
        domain_lists: [{name: big, file: /big.txt}]
        rule_groups: [{name: g, priority: 1, rules: [{name: block, priority: 1, domain_list: big, action: BLOCK}]}]
        """.utf8)
        let compiler = PolicyCompiler(keepLines: false) { path in path == "/big.txt" ? list : config }
        return compiler.load(configPath: "/etc/dnsgate.yaml", generation: 1).1.policy!
    }

    /// The 1M names in 100 lists; `groups` groups of 100 rules, rule r of
    /// group g using list (g + r) % 100 (each list in every group), groups
    /// after the first for clients the queries do not come from.
    static func manyRules(groups: Int) -> CompiledPolicy {
        var files: [String: [UInt8]] = [:]
        var config = "domain_lists:\n"
        for list in 0..<100 {
            files["/l\(list).txt"] = Array(listed[(list * 10_000)..<((list + 1) * 10_000)].joined(separator: "\n").utf8)
            config += "  - {name: l\(list), file: /l\(list).txt}\n"
        }
        config += "rule_groups:\n"
        for group in 0..<groups {
            config += "  - name: g\(group)\n    priority: \(group + 1)\n"
            if group > 0 { config += "    clients: [203.0.113.\(group % 250)/32]\n" }
            config += "    rules:\n"
            for rule in 0..<100 {
                config += "      - {name: r\(rule), priority: \(rule + 1), domain_list: l\((group + rule) % 100), action: BLOCK}\n"
            }
        }
        files["/etc/dnsgate.yaml"] = Array(config.utf8)
        let compiler = PolicyCompiler(keepLines: false) { path in files[path] ?? [] }
        return compiler.load(configPath: "/etc/dnsgate.yaml", generation: 1).1.policy!
    }
    static let policy100Rules = manyRules(groups: 1)
    static let policy10kRules = manyRules(groups: 100)

    /// An IPv4 UDP DNS query with EDNS and a cookie, as a stub sends it.
    static func packet(name: String, id: UInt16) -> [UInt8] {
        var dns: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xff), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]
        for label in name.split(separator: ".") { dns += [UInt8(label.utf8.count)] + Array(label.utf8) }
        dns += [0, 0, 1, 0, 1]
        dns += [0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]
        return ipv4UDP(dns, toResolver: true)
    }

    /// `dns` in IPv4/UDP between the client 192.0.2.10:40000 and the
    /// resolver 198.51.100.53:53, in either direction.
    static func ipv4UDP(_ dns: [UInt8], toResolver: Bool) -> [UInt8] {
        let client: [UInt8] = [192, 0, 2, 10], resolver: [UInt8] = [198, 51, 100, 53]
        let clientPort: [UInt8] = [0x9c, 0x40], resolverPort: [UInt8] = [0, 53]
        let udpLength = 8 + dns.count
        let udp = (toResolver ? clientPort + resolverPort : resolverPort + clientPort)
            + [UInt8(udpLength >> 8), UInt8(udpLength & 0xff), 0, 0]
        let total = 20 + udpLength
        return [0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), 0, 1, 0x40, 0, 64, 17, 0, 0]
            + (toResolver ? client + resolver : resolver + client) + udp + dns
    }

    static let listed = names(count: 1_000_000, seed: 0xD15_6A7E)
    static let policy1M = policy(listedNames: listed)
    /// 1,000 queries: every tenth for a listed name, the rest for names not listed.
    static let packets: [[UInt8]] = {
        let unlisted = names(count: 1000, seed: 0xBEEF)
        return (0..<1000).map { index in
            packet(name: index % 10 == 0 ? listed[index * 97 % listed.count] : unlisted[index % unlisted.count],
                   id: UInt16(index))
        }
    }()
    static let queries: [DNSQuery] = packets.map { packet in
        guard case .query(let query) = QueryDecoder.decode(packet: packet.span) else { fatalError("fixture does not decode") }
        return query
    }
    /// 1,000 longest names (253 octets in 120 labels: 118 one-letter labels
    /// under a realistic name), every tenth below a listed name: the flood of
    /// long names that once cost a re-hash of the whole suffix at every label.
    static let longQueries: [DNSQuery] = {
        let unlisted = names(count: 1000, seed: 0xFACE)
        return (0..<1000).map { index in
            var base = index % 10 == 0 ? listed[index * 97 % listed.count] : unlisted[index % unlisted.count]
            var labels = 0
            while base.utf8.count + 2 <= 252 && labels < 118 {
                base = "a." + base
                labels += 1
            }
            let packet = packet(name: base, id: UInt16(index))
            guard case .query(let query) = QueryDecoder.decode(packet: packet.span) else { fatalError("long fixture does not decode") }
            return query
        }
    }()
    static let list100k = Array(listed.prefix(100_000).joined(separator: "\n").utf8)

    /// 200,000 names never asked before, as decoded queries: 1,000 a turn
    /// for 200 turns, more than the name model's cache holds.
    static let unseenQueries: [DNSQuery] = names(count: 200_000, seed: 0xC01D).enumerated().map { index, name in
        let packet = packet(name: name, id: UInt16(truncatingIfNeeded: index))
        guard case .query(let query) = QueryDecoder.decode(packet: packet.span) else { fatalError("fixture does not decode") }
        return query
    }

    /// 1,000,000 lines of an address list: 70% IPv4 hosts, 18% /24s, 2% /16s,
    /// 10% IPv6 (/128, /64, /48 under 2000::/3), one a line, no comments.
    static let addressList1M: [UInt8] = {
        var rng = SeededGenerator(state: 0xADD2_0001)
        var text = ""
        text.reserveCapacity(24_000_000)
        for _ in 0..<1_000_000 {
            let octets = (0..<4).map { _ in String(UInt8.random(in: 0...255, using: &rng)) }
            switch Int.random(in: 0..<100, using: &rng) {
            case 0..<70: text += octets.joined(separator: ".")
            case 70..<88: text += octets[0] + "." + octets[1] + "." + octets[2] + ".0/24"
            case 88..<90: text += octets[0] + "." + octets[1] + ".0.0/16"
            default:
                let words = (0..<8).map { _ in String(UInt16.random(in: 0...UInt16.max, using: &rng), radix: 16) }
                let first = String(0x2000 | UInt16.random(in: 0...0x1fff, using: &rng), radix: 16)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: text += first + ":" + words[1...7].joined(separator: ":")
                case 1: text += first + ":" + words[1...3].joined(separator: ":") + "::/64"
                default: text += first + ":" + words[1...2].joined(separator: ":") + "::/48"
                }
            }
            text += "\n"
        }
        return Array(text.utf8)
    }()

    static let addressTable1M: AddressTable = {
        var entries: [AddressTable.Entry] = []
        _ = AddressListParser.read(addressList1M.span, format: .addresses, file: "/ip.txt") { prefix, line, _ in
            entries.append(AddressTable.Entry(prefix: prefix, line: Int32(truncatingIfNeeded: line), outcome: -1))
        }
        return AddressTable(entries)
    }()

    /// 1,000 addresses of DNS answers: a third listed hosts, a third inside
    /// listed prefixes, a third random (mostly not listed); a tenth IPv6 and
    /// a few IPv4-mapped.
    static let answerAddresses: [IPAddress] = {
        var rng = SeededGenerator(state: 0xA45E)
        var listed: [IPNetwork] = []
        _ = AddressListParser.read(addressList1M.span, format: .addresses, file: "/ip.txt") { prefix, line, _ in
            if line % 997 == 0 { listed.append(prefix) }
        }
        return (0..<1000).map { index in
            let prefix = listed[index * 7 % listed.count]
            switch (index % 3, prefix.address) {
            case (0, let address): return address
            case (1, .v4(let value)):
                let host = UInt32.random(in: 0...UInt32.max, using: &rng) >> prefix.prefixLength  // 0 for a /32
                return index % 50 == 1 ? .v6(high: 0, low: 0xffff_0000_0000 | UInt64(value | host)) : .v4(value | host)
            case (1, .v6(let high, _)): return .v6(high: high, low: UInt64.random(in: 0...UInt64.max, using: &rng))
            default:
                return index % 10 == 2
                    ? .v6(high: 0x2000_0000_0000_0000 | UInt64.random(in: 0...UInt64.max, using: &rng) >> 3, low: 1)
                    : .v4(UInt32.random(in: 0...UInt32.max, using: &rng))
            }
        }
    }()

    /// The 1M-name policy with a rule for each threat after the list rule
    /// (every query is assessed), the detectors' data read from the checkout.
    /// 1,000 responses from 198.51.100.53:53 to 192.0.2.10:40000, to the
    /// queries of `packets`: seven in ten answer with an address, three with
    /// a CNAME to a CDN name and its address (every tenth of those a listed
    /// name), each with the resolver's EDNS OPT record.
    static let responses: [[UInt8]] = {
        let unlisted = names(count: 1000, seed: 0xBEEF)
        return (0..<1000).map { index in
            let question = unlisted[index % unlisted.count]
            var dns: [UInt8] = [UInt8(index >> 8), UInt8(index & 0xff), 0x81, 0x80, 0, 1, 0, index % 10 < 3 ? 2 : 1, 0, 0, 0, 1]
            for label in question.split(separator: ".") { dns += [UInt8(label.utf8.count)] + Array(label.utf8) }
            dns += [0, 0, 1, 0, 1]
            var owner: [UInt8] = [0xc0, 12]
            if index % 10 < 3 {
                let target = index % 30 == 0 ? listed[index * 97 % listed.count] : "e\(index).dscb.cdn-edge.example"
                var wire: [UInt8] = []
                for label in target.split(separator: ".") { wire += [UInt8(label.utf8.count)] + Array(label.utf8) }
                wire += [0]
                owner = [0xc0, UInt8(dns.count + 12)]
                dns += [0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, UInt8(wire.count)] + wire
            }
            dns += owner + [0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, UInt8(index % 250)]
            dns += [0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]
            return ipv4UDP(dns, toResolver: false)
        }
    }()

    /// `policy1M` with answer rules after it: a 100,000-prefix ip list
    /// (none holding the responses' addresses) and rebinding protection.
    static let policy1MAnswers: CompiledPolicy = {
        let list = Array(listed.joined(separator: "\n").utf8)
        var rng = SeededGenerator(state: 0xADD7)
        var prefixes: [String] = []
        for index in 0..<100_000 {
            let first = [1, 5, 23, 45, 62, 77, 91, 104, 151, 185][index % 10]
            let text = "\(first).\(Int.random(in: 0..<256, using: &rng)).\(Int.random(in: 0..<256, using: &rng))"
            prefixes.append(index % 2 == 0 ? text + ".0/24" : text + ".\(Int.random(in: 0..<256, using: &rng))")
        }
        let config = Array("""
        domain_lists: [{name: big, file: /big.txt}]
        ip_lists: [{name: nets, file: /nets.txt}]
        rule_groups:
          - name: g
            priority: 1
            rules:
              - {name: block, priority: 1, domain_list: big, action: BLOCK}
              - {name: nets, priority: 2, ip_list: nets, action: BLOCK}
              - {name: rebinding, priority: 3, rebinding_protection: true, action: BLOCK}
        """.utf8)
        let files = ["/big.txt": list, "/nets.txt": Array(prefixes.joined(separator: "\n").utf8), "/etc/dnsgate.yaml": config]
        let compiler = PolicyCompiler(keepLines: false) { path in files[path] ?? [] }
        let result = compiler.load(configPath: "/etc/dnsgate.yaml", generation: 1).1
        guard let policy = result.policy else { fatalError("answer fixture: \(result.diagnostics)") }
        return policy
    }()

    static let policy1MThreats: CompiledPolicy = {
        let detect = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../../detect").standardized.path
        let list = Array(listed.joined(separator: "\n").utf8)
        let config = Array("""
        threat_detection: {model: /model.txt, public_suffix_list: /psl.dat}
        domain_lists: [{name: big, file: /big.txt}]
        rule_groups:
          - name: g
            priority: 1
            rules:
              - {name: block, priority: 1, domain_list: big, action: BLOCK}
              - {name: dga, priority: 2, threat: DGA, confidence: HIGH, action: BLOCK}
              - {name: dict, priority: 3, threat: DICT_DGA, confidence: HIGH, action: BLOCK}
              - {name: tunnel, priority: 4, threat: DNS_TUNNELING, confidence: HIGH, action: BLOCK}
        """.utf8)
        let files = ["/big.txt": list, "/etc/dnsgate.yaml": config,
                     "/model.txt": FileManager.default.contents(atPath: detect + "/threat-model.txt").map { [UInt8]($0) } ?? [],
                     "/psl.dat": FileManager.default.contents(atPath: detect + "/public_suffix_list.dat").map { [UInt8]($0) } ?? []]
        let compiler = PolicyCompiler(keepLines: false) { path in files[path] ?? [] }
        let result = compiler.load(configPath: "/etc/dnsgate.yaml", generation: 1).1
        guard let policy = result.policy else { fatalError("threat fixture: \(result.diagnostics)") }
        return policy
    }()
}
