// SPDX-License-Identifier: GPL-2.0-or-later
public import DNSWire
public import ThreatDetection

/// What happens to a query: the action, and for BLOCK how it is answered.
public struct Outcome: Sendable, Hashable {
    public var action: RuleAction
    public var blockResponse: BlockResponse
    /// The forged answer, for BLOCK other than DROP.
    public var forgedAnswer: ForgedAnswerKind?

    public init(action: RuleAction, blockResponse: BlockResponse, override: OverrideRecord? = nil) {
        self.action = action
        self.blockResponse = blockResponse
        guard action == .block else { return }
        switch blockResponse {
        case .nxdomain: forgedAnswer = .nxdomain
        case .nodata: forgedAnswer = .nodata
        case .refused: forgedAnswer = .refused
        case .drop: forgedAnswer = nil
        case .override: forgedAnswer = override.map(ForgedAnswerKind.override)
        }
    }

    /// An RPZ entry's own action, under a BLOCK rule.
    init(_ action: EntryAction) {
        switch action {
        case .nxdomain: self.init(action: .block, blockResponse: .nxdomain)
        case .nodata: self.init(action: .block, blockResponse: .nodata)
        case .passthru: self.init(action: .allow, blockResponse: .nxdomain)
        case .drop: self.init(action: .block, blockResponse: .drop)
        case .override(let record): self.init(action: .block, blockResponse: .override, override: record)
        }
    }
}

/// The rule that decided a query, and the outcome: the rule's own, or that of
/// the RPZ entry that matched.
public struct Decision: Sendable {
    public var ruleIndex: Int
    /// Index into `CompiledPolicy.entryOutcomes`, or -1 for the rule's own outcome.
    public var entryOutcome: Int
}

/// A rule ready for the packet path: everything a decision and a forged answer
/// need is computed here, once.
public struct CompiledRule: Sendable {
    public var group: String
    public var name: String
    /// The rule's domain list, or -1 for a rule of another kind.
    public var listIndex: Int
    /// The list's name (domain or ip list), or "" for a threat or rebinding rule.
    public var listName: String
    /// The rule's ip list (an index into `CompiledPolicy.addressTables`), or -1.
    public var addressListIndex = -1
    /// For a rebinding rule, the domain lists whose names may be answered
    /// with local-use addresses; nil for a rule of another kind.
    public var rebindingExemptions: ListMatches? = nil
    /// `redirection: TRUST`: the rule looks at the question only.
    public var trustsRedirection = false
    /// What a threat rule looks for, and from which confidence level on.
    public var threat: (threat: Threat, level: ConfidenceLevel)?
    /// The rule's action as configured (counters are kept per rule by it).
    public var action: RuleAction
    public var outcome: Outcome
    /// BLOCK with a list whose entries carry their own actions (RPZ).
    public var usesEntryActions: Bool
    /// Query types this rule is limited to; empty means every type.
    public var queryTypes: [QueryType]
    /// EDE EXTRA-TEXT naming the rule.
    public var extraText: [UInt8]

    @inline(__always)
    func applies(to type: QueryType) -> Bool {
        queryTypes.isEmpty || queryTypes.contains(type)
    }

    /// Whether the rule matches addresses of answers (an ip list or rebinding).
    public var matchesAddresses: Bool { addressListIndex >= 0 || rebindingExemptions != nil }
}

public struct CompiledGroup: Sendable {
    public var name: String
    public var priority: Int
    public var clients: [ClientSelector]
    /// Indices into `CompiledPolicy.rules`, in ascending rule priority.
    public var ruleIndices: Range<Int>

    @inline(__always)
    func applies(to client: IPAddress, mac: MACAddress?) -> Bool {
        clients.isEmpty || clients.contains { $0.matches(client, mac: mac) }
    }
}

/// What a list holds and where it came from.
public struct ListInfo: Sendable {
    public var name: String
    /// The list file, or the config file for an inline list.
    public var file: String
    public var inline: Bool
    /// For a remote list, where it comes from (`file` is its cached copy).
    public var url: String?
    public var format: ListFormat
    public var entries: Int
    public var skippedLines: Int
    public var skipReasons: [String: Int]
    /// Entries carry their own actions (RPZ).
    public var hasEntryActions: Bool
    /// A remote list with no usable copy on disk yet: empty until its first
    /// download succeeds.
    public var awaitingFirstCopy = false
}

/// An immutable, compiled policy (SPEC §2). Built off the packet path, read by
/// every worker at once.
public final class CompiledPolicy: Sendable {
    public let generation: Int
    public let groups: [CompiledGroup]
    /// All rules in evaluation order (group priority, then rule priority).
    public let rules: [CompiledRule]
    public let lists: [ListInfo]
    /// Outcomes of RPZ entries, shared by every entry with the same action.
    public let entryOutcomes: [Outcome]
    public let answerSettings: ForgedAnswerSettings
    /// Queries no rule matches are dropped, not passed: in fail_mode closed
    /// while a remote list has no copy yet, since the missing list might hold
    /// them (nothing passes undecided at start-up).
    public let dropsUnmatched: Bool
    let table: NameTable
    /// For each list, the rules that use it, in evaluation order: a query
    /// looks only at the rules of the lists its name is in, so its cost does
    /// not grow with the number of rules.
    let rulesByList: [[Int32]]
    /// The group of each rule.
    let groupOfRule: [Int32]
    /// Threat rules in evaluation order.
    let threatRules: [ThreatRule]
    /// The detectors' data; nil when no rule names a threat.
    public let threatModels: ThreatModels?
    /// Address lists (`ip_lists`), in config order, and their tables.
    public let addressLists: [ListInfo]
    let addressTables: [AddressTable]
    /// Rules on answer addresses (ip lists, rebinding), in evaluation order.
    let addressRules: [Int32]
    let hasRebindingRules: Bool
    /// NAT64 prefixes whose addresses rules on addresses also see as the IPv4
    /// address they stand for: the well-known one and `dns64_prefixes`.
    public let nat64Prefixes: [NAT64Prefix]
    /// Whether some rule looks for DGA names, and for tunnels.
    let scoresNames: Bool
    let tracksTunnels: Bool

    struct ThreatRule: Sendable {
        var index: Int
        var threat: Threat
        var level: ConfidenceLevel
    }

    init(generation: Int, groups: [CompiledGroup], rules: [CompiledRule], lists: [ListInfo],
         entryOutcomes: [Outcome], answerSettings: ForgedAnswerSettings, table: NameTable, dropsUnmatched: Bool = false,
         threatModels: ThreatModels? = nil, addressLists: [ListInfo] = [], addressTables: [AddressTable] = [],
         nat64Prefixes: [NAT64Prefix] = []) {
        // Longest first: of two that hold an address, the more specific says where its IPv4 address is.
        self.nat64Prefixes = ([NAT64Prefix.wellKnown] + nat64Prefixes.filter { $0 != .wellKnown })
            .sorted { $0.network.prefixLength > $1.network.prefixLength }
        self.threatModels = threatModels
        self.addressLists = addressLists
        self.addressTables = addressTables
        self.dropsUnmatched = dropsUnmatched
        self.generation = generation
        self.groups = groups
        self.rules = rules
        self.lists = lists
        self.entryOutcomes = entryOutcomes
        self.answerSettings = answerSettings
        self.table = table
        var rulesByList = [[Int32]](repeating: [], count: lists.count)
        var threatRules: [ThreatRule] = []
        var addressRules: [Int32] = []
        for (index, rule) in rules.enumerated() {
            if let (threat, level) = rule.threat {
                threatRules.append(ThreatRule(index: index, threat: threat, level: level))
            } else if rule.matchesAddresses {
                addressRules.append(Int32(index))
            } else {
                rulesByList[rule.listIndex].append(Int32(index))
            }
        }
        self.addressRules = addressRules
        hasRebindingRules = rules.contains { $0.rebindingExemptions != nil }
        self.rulesByList = rulesByList
        self.threatRules = threatRules
        scoresNames = threatRules.contains { $0.threat != .tunneling }
        tracksTunnels = threatRules.contains { $0.threat == .tunneling }
        var groupOfRule = [Int32](repeating: 0, count: rules.count)
        for (groupIndex, group) in groups.enumerated() {
            for index in group.ruleIndices { groupOfRule[index] = Int32(groupIndex) }
        }
        self.groupOfRule = groupOfRule
    }

    /// The outcome a decision stands for.
    @inline(__always)
    public func outcome(of decision: Decision) -> Outcome {
        decision.entryOutcome < 0 ? rules[decision.ruleIndex].outcome : entryOutcomes[decision.entryOutcome]
    }

    /// What the lists hold, for summaries: "7 names in 2 lists", and the ip lists' prefixes when there are any.
    public var listSummary: String {
        var text = "\(domainCount) names in \(lists.count) lists"
        if !addressLists.isEmpty {
            text += ", \(addressTables.reduce(0) { $0 + $1.count }) prefixes in \(addressLists.count) ip lists"
        }
        return text
    }

    /// Distinct names in all lists.
    public var domainCount: Int { table.keyCount }

    /// Remote lists with no copy yet, by name.
    public var listsAwaitingFirstCopy: [String] { lists.filter(\.awaitingFirstCopy).map(\.name) }

    /// Whether some rule group names a MAC address (deciding then needs the client's MAC).
    public var namesMACAddresses: Bool { groups.contains { $0.clients.contains(where: \.isMAC) } }

    /// The first label whose suffix is short enough to be a key.
    @inline(__always)
    func firstProbedLabel(_ name: DomainName) -> Int {
        max(0, name.labelCount - table.maximumKeyLabels)
    }

    /// Which lists contain `name`: one table probe per label boundary, from
    /// the longest suffix any list could hold. A list with an exception (`@@`)
    /// matching the name does not contain it.
    @inline(__always)
    public func matchingLists(_ name: DomainName) -> ListMatches {
        var matches = ListMatches()
        var exceptions = ListMatches()
        // From the root towards the first label, each suffix's hash continuing
        // the previous one: no name byte is hashed twice.
        var hash = NameHash()
        var label = name.labelCount
        let first = firstProbedLabel(name)
        while label >= first {  // labelCount ≤ 127
            defer {
                label -= 1
                if label >= first { name.extendSuffixHash(&hash, withLabel: label) }
            }
            guard let key = table.find(name, fromLabel: label, hash: hash.value) else { continue }
            table.forEachMembership(ofKey: key) { packed in
                let kind = EntryKind(rawValue: UInt8(packed & 3)) ?? .exact
                guard NameTable.matches(kind, atLabel: label) else { return true }
                let list = Int((packed >> 3) & 0x3ff)
                if packed & 4 != 0 { exceptions.insert(list) } else { matches.insert(list) }
                return true
            }
        }
        matches.subtract(exceptions)
        return matches
    }

    /// Which threats some rule looks for.
    public var threatsInUse: Set<Threat> { Set(threatRules.map(\.threat)) }

    /// What the detectors make of a query, for the threats some rule looks
    /// for; the tunnelling detector also records it. Allocation-free.
    /// `now` is monotonic nanoseconds.
    @inline(__always)
    public func assess(name: DomainName, type: QueryType, client: IPAddress, now: UInt64,
                       tunnels: TunnelTracker?) -> ThreatAssessment {
        guard let threatModels else { return ThreatAssessment() }
        return threatModels.assess(name: name, type: type, client: client, now: now, names: scoresNames,
                                   tunnels: tracksTunnels ? tunnels : nil)
    }

    /// The rule that decides this query, or nil when none matches. Allocation-free.
    /// `mac` is the client's hardware address when the packet showed it;
    /// `threats` what `assess` found (threat rules match nothing without it).
    /// A name an answer `redirected` to is decided by the rules that inspect
    /// redirections only (not `redirection: TRUST`).
    @inline(__always)
    public func decide(name: DomainName, type: QueryType, client: IPAddress, mac: MACAddress? = nil,
                       threats: ThreatAssessment = ThreatAssessment(), redirected: Bool = false) -> Decision? {
        if rules.isEmpty { return nil }
        let matches = matchingLists(name)
        // Rules are numbered in evaluation order (group priority, then rule
        // priority): the first rule that applies is the one with the lowest
        // number among the rules of the matching lists.
        var first = Int.max
        matches.forEach { list in
            for candidate in rulesByList[list] {
                let index = Int(candidate)
                if index >= first { break }
                if rules[index].applies(to: type), !(redirected && rules[index].trustsRedirection),
                   groups[Int(groupOfRule[index])].applies(to: client, mac: mac) {
                    first = index
                    break
                }
            }
        }
        for rule in threatRules {
            if rule.index >= first { break }
            if threats[rule.threat].level >= rule.level, rules[rule.index].applies(to: type),
               !(redirected && rules[rule.index].trustsRedirection),
               groups[Int(groupOfRule[rule.index])].applies(to: client, mac: mac) {
                first = rule.index
                break
            }
        }
        guard first != Int.max else { return nil }
        let outcome = rules[first].usesEntryActions ? entryOutcomeIndex(list: rules[first].listIndex, name: name) : -1
        return Decision(ruleIndex: first, entryOutcome: outcome)
    }

    /// The outcome of the most specific entry of `list` that matches `name`
    /// (RPZ precedence: the exact name, then the nearest wildcard).
    func entryOutcomeIndex(list: Int, name: DomainName) -> Int {
        let first = firstProbedLabel(name)
        let hashes = name.suffixHashes(from: first)
        for label in first...name.labelCount {
            guard let key = table.find(name, fromLabel: label, hashes: hashes) else { continue }
            var outcome: Int? = nil
            table.forEachMembership(ofKey: key) { packed in
                let member = NameTable.Member(packed: packed, line: 0)
                guard member.list == list, !member.exception, NameTable.matches(member.kind, atLabel: label) else { return true }
                outcome = member.outcome
                return false
            }
            if let outcome { return outcome }
        }
        return -1
    }
}

/// Why a query got its decision, for `dnsgate explain`.
public struct Explanation: Sendable {
    public struct Entry: Sendable {
        public var text: String
        public var kind: EntryKind
        public var file: String
        public var line: Int
    }
    public var decision: Decision?
    public var ruleIndex: Int? { decision?.ruleIndex }
    public var matchedEntry: Entry?
    /// Groups considered, in order, with whether their `clients` contained the client.
    public var groupsConsidered: [(name: String, applies: Bool)]
    /// Lists that contain the name, whatever the rules say.
    public var listsContainingName: [String]
    /// What the detectors make of the name (when some rule names a threat).
    public var threats: ThreatAssessment?
    /// The registrable domain the name model scored (ICANN section only).
    public var registrableDomain: String?
    /// The registrable domain the tunnelling detector counts per (both sections).
    public var tunnelRegistrableDomain: String?
}

extension CompiledPolicy {
    public func explain(name: DomainName, type: QueryType, client: IPAddress, mac: MACAddress? = nil,
                        threats: ThreatAssessment? = nil) -> Explanation {
        let decision = decide(name: name, type: type, client: client, mac: mac, threats: threats ?? ThreatAssessment())
        let ruleIndex = decision?.ruleIndex
        let matches = matchingLists(name)
        var explanation = Explanation(
            decision: decision, matchedEntry: nil,
            groupsConsidered: groups.map { ($0.name, $0.applies(to: client, mac: mac)) },
            listsContainingName: lists.indices.filter { matches.contains($0) }.map { lists[$0].name })
        explanation.threats = threats
        if let starts = threatModels?.suffixes.registrableDomainStarts(name) {
            explanation.registrableDomain = starts.icann.map { name.text(fromLabel: $0) }
            explanation.tunnelRegistrableDomain = starts.all.map { name.text(fromLabel: $0) }
        }
        if let ruleIndex, rules[ruleIndex].threat == nil {
            explanation.matchedEntry = entry(in: rules[ruleIndex].listIndex, matching: name)
        }
        return explanation
    }

    /// The most specific entry of list `list` that matches `name`.
    func entry(in list: Int, matching name: DomainName) -> Explanation.Entry? {
        let hashes = name.suffixHashes()
        for label in 0...name.labelCount {
            guard let key = table.find(name, fromLabel: label, hashes: hashes) else { continue }
            for member in table.members(ofKey: key) {
                guard member.list == list, !member.exception, NameTable.matches(member.kind, atLabel: label) else { continue }
                let kind = member.kind
                var text = table.keyText(key)
                if kind == .wildcard { text = text.isEmpty ? "*" : "*." + text }
                let info = lists[list]
                return Explanation.Entry(text: text, kind: kind, file: info.file, line: member.line)
            }
        }
        return nil
    }
}
