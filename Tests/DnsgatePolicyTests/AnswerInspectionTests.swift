// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
@testable import DnsgatePolicy
import Testing

/// The answer stage: chains, answer addresses and rebinding, decided by the
/// same code the packet path runs (`explainAnswer` builds a response and
/// inspects it).
@Suite("Answer inspection")
struct AnswerInspectionTests {
    static let config = """
        domain_lists:
          - {name: blocked, domains: ["blocked.test", "*.blocked.test"]}
          - {name: trusted, domains: ["*.trusted.test"]}
          - {name: inspected, domains: ["*.inspected.test"]}
          - {name: corp, domains: ["corp.test", "*.corp.test"]}
          - {name: watched, domains: ["*.watched.test"]}
        ip_lists:
          - {name: bad-nets, addresses: ["203.0.113.96/28", "2001:db8:bad::/48"]}
          - {name: good-nets, addresses: ["203.0.113.100/32"]}
        rule_groups:
          - name: first
            priority: 1
            rules:
              - {name: allow-trusted, priority: 1, domain_list: trusted, action: ALLOW, redirection: TRUST}
              - {name: allow-inspected, priority: 2, domain_list: inspected, action: ALLOW}
              - {name: good, priority: 3, ip_list: good-nets, action: ALLOW}
              - {name: block-listed, priority: 4, domain_list: blocked, action: BLOCK, qtypes: [A, AAAA]}
              - {name: watch, priority: 5, domain_list: watched, action: ALERT}
              - {name: bad, priority: 6, ip_list: bad-nets, action: BLOCK, block_response: REFUSED}
              - {name: rebinding, priority: 7, rebinding_protection: true, exempt_domain_lists: [corp], action: BLOCK}
        """

    static func policy(_ config: String = config) throws -> CompiledPolicy {
        let result = Files(contents: [:]).compile(config)
        #expect(!result.hasErrors, "\(result.diagnostics)")
        return try #require(result.policy)
    }

    /// "BLOCK group/rule", "trusted", "passed" or "passed, matched"; and the findings as "subject:rule".
    static func verdict(_ policy: CompiledPolicy, _ question: String, _ records: [String], type: QueryType = .a,
                        client: String = "192.0.2.10") -> (String, [String]) {
        let (verdict, findings) = policy.explainAnswer(name: name(question), type: type, client: address(client),
                                                       mac: nil, records: records.map { ExplainedRecord(text: $0)! })
        let seen = findings.map { finding -> String in
            let subject: String
            switch finding.subject {
            case .question(let name): subject = "question \(name.text)"
            case .redirection(let name): subject = name.text
            case .address(let address): subject = address.description
            }
            return "\(subject):\(policy.rules[finding.decision.ruleIndex].name)"
        }
        switch verdict {
        case .trusted: return ("trusted", seen)
        case .passed(let matched): return (matched ? "passed, matched" : "passed", seen)
        case .blocked(let finding):
            return ("\(finding.outcome.action.rawValue) \(policy.rules[finding.decision.ruleIndex].name)", seen)
        case .malformed(let reason): return ("malformed \(reason)", seen)
        }
    }

    @Test func aChainIntoABlockedNameIsBlockedWhereverItIs() throws {
        let policy = try Self.policy()
        #expect(Self.verdict(policy, "www.cloaked.example", ["CNAME:tracker.blocked.test", "A:203.0.113.66"]).0
                == "BLOCK block-listed")
        #expect(Self.verdict(policy, "hop1.example", ["CNAME:hop2.example", "CNAME:deep.blocked.test", "A:203.0.113.67"]).0
                == "BLOCK block-listed")
        #expect(Self.verdict(policy, "x.alias.example", ["DNAME:blocked.test", "CNAME:x.blocked.test"]).0
                == "BLOCK block-listed", "a DNAME's target is a redirection")
        #expect(Self.verdict(policy, "clean.example", ["CNAME:cdn.example", "A:203.0.113.10"]) == ("passed", []))
    }

    @Test func trustLetsTheWholeAnswerThroughInspectDoesNot() throws {
        let policy = try Self.policy()
        #expect(Self.verdict(policy, "x.trusted.test", ["CNAME:t.blocked.test", "A:203.0.113.99", "A:10.0.0.1"]).0
                == "trusted")
        #expect(Self.verdict(policy, "x.inspected.test", ["CNAME:t.blocked.test"]).0 == "BLOCK block-listed",
                "ALLOW without TRUST allows the question only")
        // A TRUST rule looks at the question only: it does not match a name the answer redirects to.
        #expect(Self.verdict(policy, "www.example", ["CNAME:x.trusted.test", "CNAME:t.blocked.test"]).0
                == "BLOCK block-listed")
    }

    @Test func routeFiftyThreesNamesForRedirectionAreTaken() throws {
        let policy = try Self.policy(Self.config.replacingOccurrences(of: "redirection: TRUST",
                                                                      with: "redirection: TRUST_REDIRECTION_DOMAIN"))
        #expect(Self.verdict(policy, "x.trusted.test", ["CNAME:t.blocked.test"]).0 == "trusted")
    }

    @Test func theOriginalQuestionsTypeAndClientDecide() throws {
        let policy = try Self.policy()
        #expect(Self.verdict(policy, "www.example", ["CNAME:t.blocked.test"], type: .txt).0 == "passed",
                "the blocking rule is limited to A and AAAA questions")
        #expect(Self.verdict(policy, "www.example", ["CNAME:t.blocked.test"], type: .aaaa).0 == "BLOCK block-listed")
    }

    @Test func alertsAreReportedAndInspectionGoesOn() throws {
        let policy = try Self.policy()
        let (verdict, findings) = Self.verdict(policy, "www.example", ["CNAME:a.watched.test", "CNAME:b.blocked.test"])
        #expect(verdict == "BLOCK block-listed")
        #expect(findings == ["a.watched.test:watch", "b.blocked.test:block-listed"])
        #expect(Self.verdict(policy, "www.example", ["CNAME:a.watched.test", "A:203.0.113.10"]).0 == "passed, matched")
    }

    @Test func answerAddressesInAnIPList() throws {
        let policy = try Self.policy()
        #expect(Self.verdict(policy, "a.example", ["A:203.0.113.99"]) == ("BLOCK bad", ["203.0.113.99:bad"]))
        #expect(Self.verdict(policy, "a.example", ["AAAA:2001:db8:bad::1"]).0 == "BLOCK bad")
        #expect(Self.verdict(policy, "a.example", ["AAAA:::ffff:203.0.113.97"]).0 == "BLOCK bad",
                "an IPv4-mapped address is its IPv4 address")
        #expect(Self.verdict(policy, "a.example", ["A:203.0.113.95", "A:203.0.113.112"]).0 == "passed",
                "just outside the /28 on both sides")
        #expect(Self.verdict(policy, "a.example", ["A:203.0.113.100"]).0 == "passed, matched",
                "an ALLOW rule of a list before the BLOCK takes the address")
        #expect(Self.verdict(policy, "a.example", ["A:203.0.113.100", "A:203.0.113.101"]).0 == "BLOCK bad",
                "any address of the answer in the list blocks it")
    }

    @Test(arguments: ["A:192.168.1.10", "AAAA:fd00::10", "A:127.0.0.1", "A:100.64.0.1", "A:169.254.1.1",
                      "AAAA:::ffff:10.0.0.1", "A:10.1.2.3", "A:172.16.5.4", "AAAA:fe80::1", "AAAA:::1", "A:0.0.0.0"])
    func rebindingIsBlockedForPublicNames(record: String) throws {
        let policy = try Self.policy()
        #expect(Self.verdict(policy, "rebind.attacker.example", [record]).0 == "BLOCK rebinding")
        #expect(Self.verdict(policy, "printer.corp.test", [record]).0 == "passed", "an exempt list's name")
        #expect(Self.verdict(policy, "nas.home.arpa", [record]).0 == "passed", "the local network's own names")
        #expect(Self.verdict(policy, "printer", [record]).0 == "passed", "a single-label name")
        #expect(Self.verdict(policy, "router.lan", [record]).0 == "passed")
    }

    /// RFC 6052 section 2.4's table: 192.0.2.33 in each prefix length.
    @Test(arguments: [("2001:db8::/32", "2001:db8:c000:221::"), ("2001:db8:100::/40", "2001:db8:1c0:2:21::"),
                      ("2001:db8:122::/48", "2001:db8:122:c000:2:2100::"), ("2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"),
                      ("2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"),
                      ("2001:db8:122:344::/96", "2001:db8:122:344::192.0.2.33"), ("64:ff9b::/96", "64:ff9b::192.0.2.33")])
    func nat64PrefixesEmbedIPv4AsRFC6052Says(prefix: String, address: String) throws {
        let nat64 = try #require(IPNetwork(prefix).flatMap(NAT64Prefix.init))
        #expect(nat64.embeddedIPv4(try #require(IPAddress(address))) == IPAddress("192.0.2.33"))
        #expect(nat64.embeddedIPv4(try #require(IPAddress("2001:db9::1"))) == nil, "outside the prefix")
        #expect(nat64.embeddedIPv4(try #require(IPAddress("192.0.2.33"))) == nil)
    }

    @Test func dns64AnswersAreTheIPv4AddressTheyStandFor() throws {
        // The well-known prefix always; an operator's own prefixes from dns64_prefixes.
        let policy = try Self.policy("dns64_prefixes: [\"2001:db8:64::/96\", \"64:ff9b:1::/48\"]\n" + Self.config)
        #expect(Self.verdict(policy, "a.example", ["AAAA:64:ff9b::203.0.113.99"]) == ("BLOCK bad", ["64:ff9b::cb00:7163:bad"]),
                "a DNS64 AAAA made from a listed A record")
        #expect(Self.verdict(policy, "a.example", ["AAAA:2001:db8:64::203.0.113.99"]).0 == "BLOCK bad")
        #expect(Self.verdict(policy, "a.example", ["AAAA:64:ff9b:1:cb00:71:6300::"]).0 == "BLOCK bad", "a /48 prefix")
        #expect(Self.verdict(policy, "a.example", ["AAAA:2001:db8:64::192.168.1.10"]).0 == "BLOCK rebinding",
                "the network's own prefix holding a private address")
        #expect(Self.verdict(policy, "a.example", ["AAAA:2001:db8:64::203.0.113.7"]).0 == "passed")
        #expect(Self.verdict(policy, "printer.corp.test", ["AAAA:2001:db8:64::192.168.1.10"]).0 == "passed",
                "an exempt name keeps its address")
        let without = try Self.policy()
        #expect(Self.verdict(without, "a.example", ["AAAA:64:ff9b::203.0.113.99"]).0 == "BLOCK bad")
        #expect(Self.verdict(without, "a.example", ["AAAA:2001:db8:64::192.168.1.10"]).0 == "passed",
                "a prefix nobody named is an IPv6 address like any other")
        // A network's own prefix may be unique-local itself: its addresses are the IPv4 addresses they stand for.
        let ula = try Self.policy("dns64_prefixes: [\"fd00:64::/96\"]\n" + Self.config)
        #expect(Self.verdict(ula, "a.example", ["AAAA:fd00:64::203.0.113.7"]).0 == "passed")
        #expect(Self.verdict(ula, "a.example", ["AAAA:fd00:64::192.168.1.10"]).0 == "BLOCK rebinding")
        #expect(Self.verdict(ula, "a.example", ["AAAA:fd00:65::1"]).0 == "BLOCK rebinding", "outside it, unique-local")
        let bad = Files(contents: [:]).compile("dns64_prefixes: [\"2001:db8:64::/95\", 10.0.0.0/8, nonsense]\n" + Self.config)
        #expect(bad.diagnostics.filter { $0.message.contains("is not an IPv6 prefix of length 32, 40, 48, 56, 64 or 96") && $0.line == 1 }.count == 3,
                "\(bad.diagnostics)")
    }

    @Test func rebindingIsDecidedOnTheQuestionNotTheChain() throws {
        let policy = try Self.policy()
        // An attacker's name aliased to an exempt name still gets no private address.
        #expect(Self.verdict(policy, "evil.example", ["CNAME:intranet.corp.test", "A:10.0.0.5"]).0 == "BLOCK rebinding")
        #expect(Self.verdict(policy, "evil.example", ["A:203.0.113.7"]).0 == "passed")
    }

    @Test func aResponseWithoutAQuestionIsNotExemptFromRebinding() throws {
        let policy = try Self.policy()
        var message: [UInt8] = [0x12, 0x34, 0x81, 0x80, 0, 0, 0, 1, 0, 0, 0, 0]
        message += [1, UInt8(ascii: "x"), 7] + Array("example".utf8) + [0, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1]
        var response = DNSQuery(source: address("198.51.100.53"), sourcePort: 53, destination: address("192.0.2.10"),
                                destinationPort: 40000, message: 0..<message.count, packetLength: message.count)
        #expect(QueryDecoder.decodeMessage(message.span, into: &response) == nil)
        guard case .blocked(let finding) = policy.inspect(response: response, message: message.span,
                                                          client: address("192.0.2.10"), mac: nil, observe: { _ in }) else {
            Issue.record("a private address without a question passed")
            return
        }
        #expect(policy.rules[finding.decision.ruleIndex].name == "rebinding")
    }

    @Test func aBlockedQuestionInAResponseIsBlocked() throws {
        let policy = try Self.policy()
        let (verdict, findings) = Self.verdict(policy, "x.blocked.test", ["A:203.0.113.7"])
        #expect(verdict == "BLOCK block-listed")
        #expect(findings == ["question x.blocked.test:block-listed"])
    }

    @Test func rpzResponseIPTriggersCarryTheirOwnActions() throws {
        let zone = """
            $TTL 60
            @ SOA localhost. root.localhost. 1 3600 600 86400 60
              NS localhost.
            32.66.113.0.203.rpz-ip CNAME .
            24.0.2.0.192.rpz-ip CNAME rpz-drop.
            32.7.113.0.203.rpz-ip CNAME rpz-passthru.
            """
        let files = Files(contents: ["/etc/dnsgate/policy.rpz": zone])
        let result = files.compile("""
            ip_lists: [{name: rpz, file: policy.rpz, format: rpz}]
            rule_groups: [{name: g, priority: 1, rules: [{name: r, priority: 1, ip_list: rpz, action: BLOCK}]}]
            """)
        let policy = try #require(result.policy, "\(result.diagnostics)")
        func response(_ record: String) -> String? {
            let (verdict, _) = policy.explainAnswer(name: name("a.example"), type: .a, client: address("192.0.2.10"),
                                                    mac: nil, records: [ExplainedRecord(text: record)!])
            switch verdict {
            case .blocked(let finding): return finding.outcome.blockResponse.rawValue
            case .passed(let matched): return matched ? "matched" : nil
            default: return "?"
            }
        }
        #expect(response("A:203.0.113.66") == "NXDOMAIN")
        #expect(response("A:192.0.2.200") == "DROP")
        #expect(response("A:203.0.113.7") == "matched", "rpz-passthru allows")
        #expect(response("A:198.51.100.1") == nil)
    }

    @Test(arguments: [
        ("{name: r, priority: 1, ip_list: nowhere, action: BLOCK}", "ip list 'nowhere'"),
        ("{name: r, priority: 1, ip_list: blocked, action: BLOCK}", "a domain list by that name"),
        ("{name: r, priority: 1, domain_list: nets, action: BLOCK}", "an ip list by that name"),
        ("{name: r, priority: 1, rebinding_protection: true, action: ALLOW}", "can only BLOCK or ALERT"),
        ("{name: r, priority: 1, rebinding_protection: false, action: BLOCK}", "either true or left out"),
        ("{name: r, priority: 1, rebinding_protection: true, exempt_domain_lists: [nope], action: BLOCK}", "domain list 'nope'"),
        ("{name: r, priority: 1, domain_list: blocked, exempt_domain_lists: [blocked], action: BLOCK}", "only applies to a rule with 'rebinding_protection'"),
        ("{name: r, priority: 1, ip_list: nets, redirection: TRUST, action: ALLOW}", "applies to rules on names"),
        ("{name: r, priority: 1, domain_list: blocked, redirection: MAYBE, action: ALLOW}", "redirection"),
        ("{name: r, priority: 1, domain_list: blocked, ip_list: nets, action: BLOCK}", "not domain_list and ip_list"),
    ])
    func configErrorsNameTheRule(rule: String, message: String) {
        let result = Files(contents: [:]).compile("""
            domain_lists: [{name: blocked, domains: [blocked.test]}]
            ip_lists: [{name: nets, addresses: [203.0.113.0/24]}]
            rule_groups: [{name: g, priority: 1, rules: [\(rule)]}]
            """)
        #expect(result.hasErrors)
        #expect(result.diagnostics.contains { $0.message.contains(message) && $0.line > 0 }, "\(result.diagnostics)")
    }

    @Test func listConfigErrors() {
        for (config, message) in [
            ("ip_lists: [{name: n, addresses: [1.2.3.4], match_subdomains: true}]", "match_subdomains"),
            ("ip_lists: [{name: n, file: x.txt, format: hosts}]", "format must be one of auto, addresses, rpz"),
            ("domain_lists: [{name: n, file: x.txt, format: addresses}]", "format must be one of"),
            ("domain_lists: [{name: n, domains: [a.test]}]\nip_lists: [{name: n, addresses: [1.2.3.4]}]", "defined twice"),
        ] {
            let result = Files(contents: ["/etc/dnsgate/x.txt": "1.2.3.4\n"]).compile(config)
            #expect(result.diagnostics.contains { $0.message.contains(message) }, "\(config): \(result.diagnostics)")
        }
    }

    /// The verdict on a response to `a.example` of `type` whose answer
    /// records are given as (type, RDATA), each owned by the question.
    /// `questions` are the response's question names (each of `type`); every record is owned by the first.
    static func verdict(_ policy: CompiledPolicy, type: UInt16, records: [(UInt16, [UInt8])],
                        questions: [String] = ["a.example"]) -> String {
        func u16(_ value: Int) -> [UInt8] { [UInt8(value >> 8 & 0xff), UInt8(value & 0xff)] }
        var message: [UInt8] = [0x12, 0x34, 0x81, 0x80] + u16(questions.count) + u16(records.count) + [0, 0, 0, 0]
        for question in questions {
            for label in question.split(separator: ".") { message += [UInt8(label.utf8.count)] + Array(label.utf8) }
            message += [0] + u16(Int(type)) + [0, 1]
        }
        for (recordType, data) in records {
            message += [0xc0, 12] + u16(Int(recordType)) + [0, 1, 0, 0, 0, 60] + u16(data.count) + data
        }
        var response = DNSQuery(source: address("198.51.100.53"), sourcePort: 53, destination: address("192.0.2.10"),
                                destinationPort: 40000, message: 0..<message.count, packetLength: message.count)
        guard QueryDecoder.decodeMessage(message.span, into: &response) == nil else { return "undecodable" }
        switch policy.inspect(response: response, message: message.span, client: address("192.0.2.10"), mac: nil,
                              observe: { _ in }) {
        case .trusted: return "trusted"
        case .passed: return "passed"
        case .blocked(let finding): return "BLOCK \(policy.rules[finding.decision.ruleIndex].name)"
        case .malformed(let reason): return "malformed \(reason)"
        }
    }

    @Test func aBrokenRecordHidesNoneOfTheRecordsAfterIt() throws {
        let policy = try Self.policy()
        // HTTPS 1 . ipv4hint of 6 bytes, which Unbound and Knot Resolver pass as they got it, then an A record.
        let broken: (UInt16, [UInt8]) = (65, [0, 1, 0, 0, 4, 0, 6, 1, 2, 3, 4, 5, 6])
        #expect(Self.verdict(policy, type: 255, records: [broken, (1, [192, 168, 1, 40])]) == "BLOCK rebinding")
        #expect(Self.verdict(policy, type: 255, records: [broken, (1, [203, 0, 113, 99])]) == "BLOCK bad")
        #expect(Self.verdict(policy, type: 65, records: [(65, [0, 1, 0, 0, 4, 0, 6, 192, 168, 1, 30, 5, 6])]) == "BLOCK rebinding",
                "the whole address of a broken hint list")
        #expect(Self.verdict(policy, type: 255, records: [broken, (1, [203, 0, 113, 7])]) == "malformed badRecord",
                "nothing blocked: the fail mode decides")
    }

    /// musl reads a type by its low byte and matches an answer on its ID
    /// alone: a hostile resolver could answer its A question with a "CAA"
    /// question and 4-byte CAA records. So they are addresses whatever the
    /// question (a real 4-byte CAA record, `0 i "x"`, is the price).
    @Test func aTypeMuslReadsAsAnAddressIsOneWhateverTheQuestion() throws {
        let policy = try Self.policy()
        let caa: (UInt16, [UInt8]) = (257, [192, 168, 1, 10])
        #expect(Self.verdict(policy, type: 257, records: [caa]) == "BLOCK rebinding")
        #expect(Self.verdict(policy, type: 1, records: [caa]) == "BLOCK rebinding")
        #expect(Self.verdict(policy, type: 257, records: [(257, [203, 0, 113, 99])]) == "BLOCK bad")
    }

    /// musl takes an answer on its ID alone, whatever questions it carries: a
    /// hostile resolver could add a trusted or exempt question to its answer.
    @Test func withTwoQuestionsNoneTrustsOrExemptsTheAnswer() throws {
        let policy = try Self.policy()
        let listed: (UInt16, [UInt8]) = (1, [203, 0, 113, 99]), local: (UInt16, [UInt8]) = (1, [192, 168, 1, 10])
        #expect(Self.verdict(policy, type: 1, records: [listed], questions: ["x.trusted.test"]) == "trusted")
        #expect(Self.verdict(policy, type: 1, records: [listed], questions: ["x.trusted.test", "a.example"]) == "BLOCK bad")
        #expect(Self.verdict(policy, type: 1, records: [local], questions: ["printer.corp.test"]) == "passed")
        #expect(Self.verdict(policy, type: 1, records: [local], questions: ["printer.corp.test", "a.example"])
                == "BLOCK rebinding")
        #expect(Self.verdict(policy, type: 1, records: [local], questions: ["printer", "a.example"]) == "BLOCK rebinding")
    }

    @Test func questionOnlyDecisionsAreUnchanged() throws {
        let policy = try Self.policy()
        #expect(policy.decision("x.blocked.test") == "first/block-listed")
        #expect(policy.decision("x.trusted.test") == "first/allow-trusted")
        #expect(policy.decision("a.example") == nil, "rules on addresses never match a question")
    }
}
