// SPDX-License-Identifier: GPL-2.0-or-later
public import DNSWire

/// A rule ready for the packet path: everything a decision and a forged answer
/// need is computed here, once.
public struct CompiledRule: Sendable {
    public var group: String
    public var name: String
    public var listIndex: Int
    public var listName: String
    public var action: RuleAction
    public var blockResponse: BlockResponse
    /// The forged answer, for BLOCK other than DROP.
    public var forgedAnswer: ForgedAnswerKind?
    /// Query types this rule is limited to; empty means every type.
    public var queryTypes: [QueryType]
    /// EDE EXTRA-TEXT naming the rule.
    public var extraText: [UInt8]

    @inline(__always)
    func applies(to type: QueryType) -> Bool {
        queryTypes.isEmpty || queryTypes.contains(type)
    }
}

public struct CompiledGroup: Sendable {
    public var name: String
    public var priority: Int
    public var clients: [IPNetwork]
    /// Indices into `CompiledPolicy.rules`, in ascending rule priority.
    public var ruleIndices: Range<Int>

    @inline(__always)
    func applies(to client: IPAddress) -> Bool {
        clients.isEmpty || clients.contains { $0.contains(client) }
    }
}

/// What a list holds and where it came from.
public struct ListInfo: Sendable {
    public var name: String
    /// The list file, or the config file for an inline list.
    public var file: String
    public var inline: Bool
    public var format: ListFormat
    public var entries: Int
    public var skippedLines: Int
}

/// An immutable, compiled policy (SPEC §2). Built off the packet path, read by
/// every worker at once.
public final class CompiledPolicy: Sendable {
    public let generation: Int
    public let groups: [CompiledGroup]
    /// All rules in evaluation order (group priority, then rule priority).
    public let rules: [CompiledRule]
    public let lists: [ListInfo]
    public let answerSettings: ForgedAnswerSettings
    let table: NameTable

    init(generation: Int, groups: [CompiledGroup], rules: [CompiledRule], lists: [ListInfo],
         answerSettings: ForgedAnswerSettings, table: NameTable) {
        self.generation = generation
        self.groups = groups
        self.rules = rules
        self.lists = lists
        self.answerSettings = answerSettings
        self.table = table
    }

    /// Distinct names in all lists.
    public var domainCount: Int { table.keyCount }
    public var memoryBytes: Int { table.memoryBytes }

    /// Which lists contain `name`: one table probe per label boundary.
    @inline(__always)
    public func matchingLists(_ name: DomainName) -> ListMatches {
        var matches = ListMatches()
        for label in 0...name.labelCount {  // labelCount ≤ 127
            guard let key = table.find(name, fromLabel: label) else { continue }
            for index in table.membershipRange(ofKey: key) {
                let (list, kind) = table.membership(index)
                let hit = label == 0 ? kind != .wildcard : kind != .exact
                if hit { matches.insert(list) }
            }
        }
        return matches
    }

    /// The index of the rule that decides this query, or nil when none matches.
    /// Allocation-free.
    @inline(__always)
    public func decide(name: DomainName, type: QueryType, client: IPAddress) -> Int? {
        if rules.isEmpty { return nil }
        let matches = matchingLists(name)
        for group in groups where group.applies(to: client) {
            for index in group.ruleIndices {
                let rule = rules[index]
                if matches.contains(rule.listIndex), rule.applies(to: type) { return index }
            }
        }
        return nil
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
    public var ruleIndex: Int?
    public var matchedEntry: Entry?
    /// Groups considered, in order, with whether their `clients` contained the client.
    public var groupsConsidered: [(name: String, applies: Bool)]
    /// Lists that contain the name, whatever the rules say.
    public var listsContainingName: [String]
}

extension CompiledPolicy {
    public func explain(name: DomainName, type: QueryType, client: IPAddress) -> Explanation {
        let ruleIndex = decide(name: name, type: type, client: client)
        let matches = matchingLists(name)
        var explanation = Explanation(
            ruleIndex: ruleIndex, matchedEntry: nil,
            groupsConsidered: groups.map { ($0.name, $0.applies(to: client)) },
            listsContainingName: lists.indices.filter { matches.contains($0) }.map { lists[$0].name })
        if let ruleIndex {
            explanation.matchedEntry = entry(in: rules[ruleIndex].listIndex, matching: name)
        }
        return explanation
    }

    /// The most specific entry of list `list` that matches `name`.
    func entry(in list: Int, matching name: DomainName) -> Explanation.Entry? {
        for label in 0...name.labelCount {
            guard let key = table.find(name, fromLabel: label) else { continue }
            for index in table.membershipRange(ofKey: key) {
                let (entryList, kind) = table.membership(index)
                guard entryList == list, label == 0 ? kind != .wildcard : kind != .exact else { continue }
                var text = table.keyText(key)
                if kind == .wildcard { text = text.isEmpty ? "*" : "*." + text }
                let info = lists[list]
                return Explanation.Entry(text: text, kind: kind, file: info.file, line: table.line(ofMembership: index))
            }
        }
        return nil
    }
}
