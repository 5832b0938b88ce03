// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import Foundation
import Testing
import ThreatDetection
@testable import DnsgatePolicy

/// The shipped model and suffix list, in the compiler's in-memory files.
private let detectionFiles: Files = {
    let detect = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../detect")
        .standardized.path
    var contents: [String: String] = [:]
    for file in ["threat-model.txt", "public_suffix_list.dat"] {
        contents["/d/" + file] = (try? String(contentsOfFile: detect + "/" + file, encoding: .utf8)) ?? ""
    }
    return Files(contents: contents)
}()

private let detectionSettings = "threat_detection: {model: /d/threat-model.txt, public_suffix_list: /d/public_suffix_list.dat}\n"

private func finding(_ threat: Threat, _ level: ConfidenceLevel) -> ThreatAssessment {
    var assessment = ThreatAssessment()
    assessment[threat] = ThreatFinding(level: level, score: 0.5)
    return assessment
}

@Suite("Threat rules")
struct ThreatRuleTests {
    @Test("a rule names a threat and a confidence level instead of a list")
    func reads() throws {
        let (config, diagnostics) = ConfigReader.read(yaml: """
        rule_groups:
          - name: g
            priority: 1
            rules:
              - {name: dga, priority: 1, threat: DGA, confidence: HIGH, action: BLOCK}
              - {name: tunnel, priority: 2, threat: DNS_TUNNELING, confidence: LOW, action: ALERT, qtypes: [TXT]}
        """, path: "c.yaml")
        #expect(diagnostics.isEmpty, "\(diagnostics)")
        let rules = try #require(config?.ruleGroups.first?.rules)
        #expect(rules.map(\.match) == [.threat(.dga, .high), .threat(.tunneling, .low)])
    }

    @Test("ALLOW with a threat, both or neither of list and threat, and bad levels are errors with their line",
          arguments: [
              ("{name: r, priority: 1, threat: DGA, confidence: LOW, action: ALLOW}", "can only BLOCK or ALERT"),
              ("{name: r, priority: 1, threat: DGA, domain_list: l, confidence: LOW, action: BLOCK}", "one of 'domain_list', 'threat'"),
              ("{name: r, priority: 1, action: BLOCK}", "one of 'domain_list', 'threat'"),
              ("{name: r, priority: 1, threat: DGA, action: BLOCK}", "needs 'confidence"),
              ("{name: r, priority: 1, threat: DGA, confidence: SURE, action: BLOCK}", "LOW, MEDIUM or HIGH"),
              ("{name: r, priority: 1, threat: MALWARE, confidence: LOW, action: BLOCK}", "DGA, DICT_DGA, DNS_TUNNELING"),
              ("{name: r, priority: 1, domain_list: l, confidence: LOW, action: BLOCK}", "only applies to a rule with 'threat'"),
          ])
    func errors(rule: String, message: String) throws {
        let (_, diagnostics) = ConfigReader.read(yaml: """
        domain_lists: [{name: l, domains: [a.example]}]
        rule_groups:
          - name: g
            priority: 1
            rules:
              - \(rule)
        """, path: "c.yaml")
        let error = try #require(diagnostics.first { $0.severity == .error }, "no error for \(rule)")
        #expect(error.message.contains(message), "\(error)")
        #expect(error.line == 6 && error.file == "c.yaml", "\(error)")
    }

    @Test("without a model or suffix list to read, a threat rule is an error naming what was tried")
    func missingModel() throws {
        let result = Files(contents: [:]).compile("""
        threat_detection: {model: /nowhere/model.txt, public_suffix_list: /nowhere/psl.dat}
        rule_groups: [{name: g, priority: 1, rules: [{name: r, priority: 1, threat: DGA, confidence: HIGH, action: BLOCK}]}]
        """)
        #expect(result.policy == nil)
        let error = try #require(result.diagnostics.first { $0.severity == .error })
        #expect(error.message.contains("/nowhere/psl.dat"), "\(error)")
    }

    @Test("threat rules take their place among list rules by priority, level, query type and client")
    func decisions() throws {
        let result = detectionFiles.compile(detectionSettings + """
        domain_lists: [{name: trusted, domains: [trusted.example]}, {name: bad, domains: [bad.example]}]
        rule_groups:
          - name: allow
            priority: 1
            rules: [{name: trusted, priority: 1, domain_list: trusted, action: ALLOW}]
          - name: threats
            priority: 2
            clients: ["192.0.2.0/24"]
            rules:
              - {name: dga-high, priority: 1, threat: DGA, confidence: HIGH, action: BLOCK}
              - {name: tunnel-txt, priority: 2, threat: DNS_TUNNELING, confidence: MEDIUM, action: BLOCK, qtypes: [TXT]}
              - {name: dga-low, priority: 3, threat: DGA, confidence: LOW, action: ALERT}
              - {name: bad, priority: 4, domain_list: bad, action: BLOCK}
        """)
        let policy = try #require(result.policy, "\(result.diagnostics)")
        func rule(_ query: String, _ threats: ThreatAssessment, type: QueryType = .a, client: String = "192.0.2.7") -> String? {
            policy.decide(name: name(query), type: type, client: address(client), threats: threats)
                .map { policy.rules[$0.ruleIndex].name }
        }
        #expect(rule("x.example", finding(.dga, .high)) == "dga-high")
        #expect(rule("x.example", finding(.dga, .medium)) == "dga-low", "a HIGH rule skips a MEDIUM finding")
        #expect(rule("x.example", finding(.dga, .low)) == "dga-low")
        #expect(rule("x.example", ThreatAssessment()) == nil)
        #expect(rule("trusted.example", finding(.dga, .high)) == "trusted", "an ALLOW list rule before it wins")
        #expect(rule("bad.example", finding(.dga, .high)) == "dga-high", "the lower priority number wins")
        #expect(rule("bad.example", ThreatAssessment()) == "bad")
        #expect(rule("x.example", finding(.tunneling, .high), type: .txt) == "tunnel-txt")
        #expect(rule("x.example", finding(.tunneling, .high), type: .a) == nil, "qtypes limit a threat rule")
        #expect(rule("x.example", finding(.tunneling, .low), type: .txt) == nil)
        #expect(rule("x.example", finding(.dga, .high), client: "198.51.100.7") == nil, "clients limit a threat rule")
        #expect(rule("x.example", finding(.dictionaryDGA, .high)) == nil, "DICT_DGA is a threat of its own")
        #expect(policy.threatsInUse == [.dga, .tunneling])
    }

    @Test("the shipped model and suffix list load and score names end to end")
    func shippedModel() throws {
        let result = detectionFiles.compile(detectionSettings + """
        rule_groups: [{name: g, priority: 1, rules: [{name: r, priority: 1, threat: DGA, confidence: LOW, action: BLOCK}]}]
        """)
        let policy = try #require(result.policy, "\(result.diagnostics)")
        let models = try #require(policy.threatModels)
        #expect(models.suffixes.registrableDomainStart(name("www.example.co.uk")) == 1)
        let benign = policy.assess(name: name("www.wikipedia.org"), type: .a, client: address("192.0.2.1"), now: 0, tunnels: nil)
        #expect(benign.dga.level == .none)
        let generated = policy.assess(name: name("xjw4kq9vzt2pl8rb7yhc.com"), type: .a, client: address("192.0.2.1"), now: 0,
                                      tunnels: nil)
        #expect(generated.dga.level >= .low, "\(generated)")
        #expect(policy.decide(name: name("xjw4kq9vzt2pl8rb7yhc.com"), type: .a, client: address("192.0.2.1"),
                              threats: generated) != nil)
    }

    @Test("the name model scores the ICANN registrable domain; the tunnel detector counts per tenant")
    func platformTenants() throws {
        let result = detectionFiles.compile(detectionSettings + """
        rule_groups: [{name: g, priority: 1, rules: [{name: r, priority: 1, threat: DGA, confidence: LOW, action: BLOCK}]}]
        """)
        let policy = try #require(result.policy, "\(result.diagnostics)")
        // CloudFront's tenant IDs: `d` and 13 random characters (deterministic here).
        var state: UInt64 = 1
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        var flagged: [String] = []
        for _ in 0..<2000 {
            let id = (0..<13).map { _ in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return alphabet[Int(state >> 33) % alphabet.count]
            }
            let text = "d" + String(id) + ".cloudfront.net"
            let assessment = policy.assess(name: name(text), type: .a, client: address("192.0.2.1"), now: 0, tunnels: nil)
            if assessment.dga.level > .none || assessment.dictionaryDGA.level > .none { flagged.append(text) }
        }
        #expect(flagged.isEmpty, "\(flagged.count) of 2000 flagged, e.g. \(flagged.prefix(3))")
        let explanation = policy.explain(name: name("a.d2908q01vomqb2.cloudfront.net"), type: .a, client: address("192.0.2.1"))
        #expect(explanation.registrableDomain == "cloudfront.net")
        #expect(explanation.tunnelRegistrableDomain == "d2908q01vomqb2.cloudfront.net")
        // The tunnel detector still sees a tenant: each is its own registrable domain.
        let models = try #require(policy.threatModels)
        let starts = models.suffixes.registrableDomainStarts(name("a.d2908q01vomqb2.cloudfront.net"))
        #expect(starts.icann == 2 && starts.all == 1)
    }
}
