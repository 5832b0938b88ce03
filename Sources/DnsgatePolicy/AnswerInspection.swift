// SPDX-License-Identifier: GPL-2.0-or-later
public import DNSWire
public import ThreatDetection

/// One rule that matched something in an answer.
public struct AnswerFinding: Sendable {
    /// What in the answer the rule matched.
    public enum Subject: Sendable {
        /// The question the response answers (decided again: it may have
        /// reached the resolver another way, or the policy changed since).
        case question(DomainName)
        /// A name the answer redirects to: a CNAME or DNAME target, or the
        /// owner of a record that is not the question.
        case redirection(DomainName)
        /// An A or AAAA address of the answer.
        case address(IPAddress)
    }
    public var subject: Subject
    public var decision: Decision
    public var outcome: Outcome
    /// What a threat rule's detector found for the name.
    public var threat: ThreatFinding
}

/// What the answer stage makes of a response.
public enum AnswerVerdict: Sendable {
    /// An ALLOW rule with `redirection: TRUST` took the question: the whole
    /// answer goes through, uninspected.
    case trusted(Decision)
    /// Nothing in the answer is blocked; `matched` when some rule (ALLOW or
    /// ALERT) matched a name or an address of it.
    case passed(matched: Bool)
    /// The first blocked name or address.
    case blocked(AnswerFinding)
    /// The answer section cannot be read.
    case malformed(NotDNSReason)
}

extension CompiledPolicy {
    /// Decides a response (QR=1, decoded into `response`) on what it answers:
    /// its questions as the question stage would (silently: they were decided
    /// and logged then), each name its answer redirects to with the rules
    /// that inspect redirections, and each address with the rules on
    /// addresses. `observe` sees every rule that matches a redirection or an
    /// address, and a blocked question, in answer order; the first BLOCK ends
    /// the inspection. Allocation-free; bounded by the message length.
    ///
    /// `client` is the response's destination (the client asked), `mac` its
    /// hardware address when known.
    public func inspect(response: DNSQuery, message: Span<UInt8>, client: IPAddress, mac: MACAddress?,
                        observe: (borrowing AnswerFinding) -> Void) -> AnswerVerdict {
        guard !rules.isEmpty else { return .passed(matched: false) }
        // The questions, as the question stage decided them.
        var trusted: Decision? = nil
        var blockedQuestion: AnswerFinding? = nil
        // Only the one question there is speaks for the answer (trust, exemptions):
        // stubs that match an answer on its ID alone (musl) take one whatever
        // other questions it carries.
        let singleQuestion = response.questionCount == 1
        response.forEachQuestion(in: message) { question in
            let threats = assessWithoutTunnels(question.name, type: question.type, client: client)
            guard let decision = decide(name: question.name, type: question.type, client: client, mac: mac,
                                        threats: threats) else { return true }
            let outcome = outcome(of: decision)
            if singleQuestion, outcome.action == .allow, rules[decision.ruleIndex].trustsRedirection {
                trusted = decision
                return false
            }
            guard outcome.action == .block else { return true }
            blockedQuestion = AnswerFinding(subject: .question(question.name), decision: decision, outcome: outcome,
                                            threat: threatFinding(decision, threats))
            return false
        }
        if let trusted { return .trusted(trusted) }
        if let blockedQuestion {
            observe(blockedQuestion)
            return .blocked(blockedQuestion)
        }
        let type = response.type
        var walk = AnswerWalk(question: response.name, type: type, client: client, mac: mac,
                              exemptable: singleQuestion)
        let malformed = AnswerSection.forEach(in: message, from: response.answersStart) { record in
            walk.consider(record, message: message, policy: self, observe: observe)
        }
        if let blocked = walk.blocked { return .blocked(blocked) }
        if let malformed { return .malformed(malformed) }
        return .passed(matched: walk.matched)
    }

    /// The first rule on addresses that `address` (of an answer to
    /// `question`) matches, or nil. An IPv4-mapped IPv6 address is matched
    /// as its IPv4 address, and so is one inside a NAT64 prefix
    /// (`translated`, from `nat64Translation`) when the IPv6 address itself
    /// is not. Rebinding rules match a local-use address (`isLocalUse`)
    /// unless the question is exempt: by its name (`exemptByName`), or by
    /// being in one of the rule's exempt lists (`questionLists`, the domain
    /// lists holding it; nil when it may not exempt the answer).
    @inline(__always)
    func decide(address: IPAddress, translated: IPAddress?, isLocalUse: Bool, exemptByName: Bool,
                questionLists: ListMatches?, type: QueryType, client: IPAddress, mac: MACAddress?) -> Decision? {
        for candidate in addressRules {
            let index = Int(candidate)
            // Fields read in place: a copy of the rule would retain each of its strings and arrays.
            guard rules[index].applies(to: type), groups[Int(groupOfRule[index])].applies(to: client, mac: mac) else {
                continue
            }
            let list = rules[index].addressListIndex
            if list >= 0 {
                guard let entry = addressEntry(in: list, address, translated: translated) else { continue }
                return Decision(ruleIndex: index, entryOutcome: rules[index].usesEntryActions ? Int(entry.outcome) : -1)
            }
            if isLocalUse, let exemptions = rules[index].rebindingExemptions, !exemptByName,
               !(questionLists.map { $0.intersects(exemptions) } ?? false) {
                return Decision(ruleIndex: index, entryOutcome: -1)
            }
        }
        return nil
    }

    /// The local-use class of an answer's address: that of the IPv4 address
    /// it stands for when it is a NAT64 address (`translated`; a network's
    /// own NAT64 prefix may itself be unique-local), else its own.
    @inline(__always)
    public static func localUseClass(_ address: IPAddress, translated: IPAddress?) -> LocalAddressClass? {
        translated.map { $0.localUseClass } ?? address.localUseClass
    }

    /// The IPv4 address a NAT64 translator reaches for `address`, when it is
    /// inside one of `nat64Prefixes` (the longest that holds it).
    @inline(__always)
    public func nat64Translation(_ address: IPAddress) -> IPAddress? {
        guard !address.isIPv4 else { return nil }
        for prefix in nat64Prefixes {
            if let embedded = prefix.embeddedIPv4(address) { return embedded }
        }
        return nil
    }

    /// The entry of address list `list` that holds `address`, or else the
    /// IPv4 address it stands for.
    @inline(__always)
    func addressEntry(in list: Int, _ address: IPAddress, translated: IPAddress?) -> AddressTable.Entry? {
        addressTables[list].lookup(address) ?? translated.flatMap { addressTables[list].lookup($0) }
    }

    /// Names that are the local network's own, whose answers may carry
    /// local-use addresses whatever the exempt lists say: single-label names,
    /// and names under `localhost`, `local` (mDNS), `home.arpa` (RFC 8375),
    /// `internal`, `lan` and `localdomain` (common home-router domains).
    static func isLocalName(_ name: DomainName) -> Bool {
        // No name at all (a response without a question) is no local name.
        guard name.labelCount != 1 else { return true }
        guard name.labelCount > 1 else { return false }
        let last = name.labelCount - 1
        return name.label(last, is: "localhost") || name.label(last, is: "local") || name.label(last, is: "internal")
            || name.label(last, is: "lan") || name.label(last, is: "localdomain")
            || (name.label(last, is: "arpa") && name.label(last - 1, is: "home"))
    }

    @inline(__always)
    func assessWithoutTunnels(_ name: DomainName, type: QueryType, client: IPAddress) -> ThreatAssessment {
        // A response is no query for the tunnel table to count: the per-name detectors only.
        threatModels == nil ? ThreatAssessment() : assess(name: name, type: type, client: client, now: 0, tunnels: nil)
    }

    @inline(__always)
    func threatFinding(_ decision: Decision, _ threats: ThreatAssessment) -> ThreatFinding {
        rules[decision.ruleIndex].threat.map { threats[$0.threat] } ?? .benign
    }
}

extension DomainName {
    /// Whether label `index` is `text` (ASCII, compared without case).
    func label(_ index: Int, is text: StaticString) -> Bool {
        guard index >= 0, index < labelCount else { return false }
        let start = labelStart(index)
        let length = Int(wireByte(start))
        guard length == text.utf8CodeUnitCount else { return false }
        return text.withUTF8Buffer { wanted in
            for offset in 0..<length where wireByte(start + 1 + offset) | 0x20 != wanted[offset] | 0x20 { return false }
            return true
        }
    }
}

/// One record of an answer as `dnsgate explain --answer` takes it.
public struct ExplainedRecord: Sendable {
    public enum Data: Sendable {
        case cname(DomainName)
        case dname(DomainName)
        case address(IPAddress)
    }
    public var data: Data

    public init(_ data: Data) { self.data = data }

    /// `CNAME:name`, `DNAME:name`, `A:address` or `AAAA:address`.
    public init?(text: String) {
        let parts = text.split(separator: ":", maxSplits: 1)
        guard parts.count == 2 else { return nil }
        let value = String(parts[1])
        switch parts[0].uppercased() {
        case "CNAME": guard let name = DomainName(text: value) else { return nil }; data = .cname(name)
        case "DNAME": guard let name = DomainName(text: value) else { return nil }; data = .dname(name)
        case "A": guard let address = IPAddress(value), address.isIPv4 else { return nil }; data = .address(address)
        case "AAAA": guard let address = IPAddress(value), !address.isIPv4 else { return nil }; data = .address(address)
        default: return nil
        }
    }
}

extension CompiledPolicy {
    /// How the answer stage would decide a response to `name` carrying
    /// `records` (each CNAME's owner the name before it, as a resolver writes
    /// a chain): the verdict and every rule that matched, in order. Runs the
    /// packet path's code on a response built from them.
    public func explainAnswer(name: DomainName, type: QueryType, client: IPAddress, mac: MACAddress?,
                              records: [ExplainedRecord]) -> (AnswerVerdict, [AnswerFinding]) {
        var message: [UInt8] = [0x12, 0x34, 0x81, 0x80, 0, 1, UInt8(records.count >> 8), UInt8(records.count & 0xff), 0, 0, 0, 0]
        func append(_ name: DomainName) {
            for offset in 0..<name.length { message.append(name.wireByte(offset)) }
            message.append(0)
        }
        func append16(_ value: Int) { message += [UInt8(value >> 8 & 0xff), UInt8(value & 0xff)] }
        append(name)
        append16(Int(type.rawValue))
        append16(1)
        var owner = name
        for record in records {
            append(owner)
            var data: [UInt8] = []
            var recordType = QueryType.a
            switch record.data {
            case .cname(let target), .dname(let target):
                if case .cname = record.data { recordType = .cname } else { recordType = .dname }
                for offset in 0..<target.length { data.append(target.wireByte(offset)) }
                data.append(0)
                owner = target
            case .address(let address):
                recordType = address.isIPv4 ? .a : .aaaa
                data = address.bytes
            }
            append16(Int(recordType.rawValue))
            append16(1)
            message += [0, 0, 0, 60]
            append16(data.count)
            message += data
        }
        var response = DNSQuery(source: .v4(0), sourcePort: 53, destination: client, destinationPort: 1024,
                                message: 0..<message.count, packetLength: message.count)
        var findings: [AnswerFinding] = []
        if let reason = QueryDecoder.decodeMessage(message.span, into: &response) { return (.malformed(reason), []) }
        let verdict = inspect(response: response, message: message.span, client: client, mac: mac) { findings.append(copy $0) }
        return (verdict, findings)
    }

    /// The list entry behind a finding: the domain-list entry that matched
    /// the name, or the ip-list prefix that holds the address.
    public func entry(of finding: AnswerFinding) -> Explanation.Entry? {
        let rule = rules[finding.decision.ruleIndex]
        switch finding.subject {
        case .question(let name), .redirection(let name):
            return rule.listIndex >= 0 ? entry(in: rule.listIndex, matching: name) : nil
        case .address(let address):
            guard rule.addressListIndex >= 0,
                  let found = addressEntry(in: rule.addressListIndex, address, translated: nat64Translation(address)) else {
                return nil
            }
            return Explanation.Entry(text: found.prefix.description, kind: .exact,
                                     file: addressLists[rule.addressListIndex].file, line: Int(found.line))
        }
    }
}

/// The state of one answer's inspection, record by record. A struct with
/// mutating methods, not local functions capturing variables: those made the
/// compiler box what they captured, three allocations per response.
struct AnswerWalk {
    let question: DomainName
    let type: QueryType
    let client: IPAddress
    let mac: MACAddress?
    /// Whether the question may exempt the answer from rebinding rules.
    let exemptable: Bool
    /// Whether it does so by its name (the local network's own names): found
    /// out, with `questionLists`, when an answer first carries a local-use
    /// address, and not before (most answers carry none).
    var exemptByName = false
    /// The name decided last: a chain names each link twice (as a target,
    /// then as the next record's owner).
    var lastName: DomainName
    /// Which lists hold the question, for rebinding rules' exemptions: looked
    /// up once, when an answer first carries a local-use address (nil when
    /// the question may not exempt it, or its name does already).
    var questionLists: ListMatches? = nil
    var lookedUpExemptions = false
    var matched = false
    var blocked: AnswerFinding? = nil

    init(question: DomainName, type: QueryType, client: IPAddress, mac: MACAddress?, exemptable: Bool) {
        self.question = question
        self.exemptable = exemptable
        self.type = type
        self.client = client
        self.mac = mac
        lastName = question
    }

    /// Decides what `record` names or carries; false once something is blocked.
    mutating func consider(_ record: borrowing AnswerRecord, message: Span<UInt8>, policy: CompiledPolicy,
                           observe: (borrowing AnswerFinding) -> Void) -> Bool {
        if record.owner != question, !redirection(record.owner, policy: policy, observe: observe) { return false }
        switch record.data {
        case .redirection(let target):
            return redirection(target, policy: policy, observe: observe)
        case .address(let address):
            return self.address(address, policy: policy, observe: observe)
        case .service(let target, let parameters):
            // An HTTPS or SVCB record sends clients to its TargetName, and some
            // connect to its address hints before asking for addresses.
            if target.labelCount > 0, !redirection(target, policy: policy, observe: observe) { return false }
            var goOn = true
            AnswerSection.forEachHint(in: message, parameters: parameters) { hint in
                goOn = address(hint, policy: policy, observe: observe)
                return goOn
            }
            return goOn
        case .other:
            return true
        }
    }

    /// Decides an address the answer carries.
    private mutating func address(_ address: IPAddress, policy: CompiledPolicy,
                                  observe: (borrowing AnswerFinding) -> Void) -> Bool {
        guard !policy.addressRules.isEmpty else { return true }  // no rule looks at addresses
        let translated = policy.nat64Translation(address)
        let isLocalUse = policy.hasRebindingRules && CompiledPolicy.localUseClass(address, translated: translated) != nil
        if isLocalUse, exemptable, !lookedUpExemptions {
            lookedUpExemptions = true
            exemptByName = CompiledPolicy.isLocalName(question)
            if !exemptByName { questionLists = policy.matchingLists(question) }
        }
        guard let decision = policy.decide(address: address, translated: translated, isLocalUse: isLocalUse,
                                           exemptByName: exemptByName, questionLists: questionLists, type: type,
                                           client: client, mac: mac) else { return true }
        return report(AnswerFinding(subject: .address(address), decision: decision,
                                    outcome: policy.outcome(of: decision), threat: .benign), observe: observe)
    }

    /// Decides a name the answer redirects to, once per run of records naming it.
    private mutating func redirection(_ name: DomainName, policy: CompiledPolicy,
                                      observe: (borrowing AnswerFinding) -> Void) -> Bool {
        guard name != lastName else { return true }
        lastName = name
        let threats = policy.assessWithoutTunnels(name, type: type, client: client)
        guard let decision = policy.decide(name: name, type: type, client: client, mac: mac, threats: threats,
                                           redirected: true) else { return true }
        return report(AnswerFinding(subject: .redirection(name), decision: decision,
                                    outcome: policy.outcome(of: decision),
                                    threat: policy.threatFinding(decision, threats)), observe: observe)
    }

    private mutating func report(_ finding: AnswerFinding, observe: (borrowing AnswerFinding) -> Void) -> Bool {
        matched = true
        observe(finding)
        guard finding.outcome.action == .block else { return true }
        blocked = finding
        return false
    }
}
