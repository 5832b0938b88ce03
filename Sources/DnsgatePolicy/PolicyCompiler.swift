// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire

/// Reads every list a config names and compiles the policy. File access is
/// injected, so this stays pure and testable.
public struct PolicyCompiler {
    /// Reads a whole file as text; throws with a message on failure.
    public typealias ReadFile = (String) throws -> String

    public struct Result: Sendable {
        public var policy: CompiledPolicy?
        public var lists: [ParsedListSummary]
        public var diagnostics: [Diagnostic]
        public var hasErrors: Bool { diagnostics.contains { $0.severity == .error } }

        public init(policy: CompiledPolicy?, lists: [ParsedListSummary], diagnostics: [Diagnostic]) {
            self.policy = policy
            self.lists = lists
            self.diagnostics = diagnostics
        }
    }

    public struct ParsedListSummary: Sendable {
        public var info: ListInfo
        public var diagnostics: [Diagnostic]
    }

    let readFile: ReadFile

    public init(readFile: @escaping ReadFile) { self.readFile = readFile }

    /// Reads the config at `path` and everything it names.
    public func load(configPath path: String, generation: Int, cookieSecret: UInt64) -> (DnsgateConfig?, Result) {
        let (config, diagnostics) = readConfig(path)
        guard let config else { return (nil, Result(policy: nil, lists: [], diagnostics: diagnostics)) }
        return (config, compile(config, configDiagnostics: diagnostics, generation: generation, cookieSecret: cookieSecret))
    }

    /// Reads the config file alone (lists are read by `compile`).
    public func readConfig(_ path: String) -> (DnsgateConfig?, [Diagnostic]) {
        do {
            return ConfigReader.read(yaml: try readFile(path), path: path)
        } catch {
            return (nil, [Diagnostic(.error, file: path, line: 0, "cannot read the config: \(error)")])
        }
    }

    /// Compiles a config read by `readConfig`; its diagnostics are reported
    /// first and, if any is an error, there is no policy.
    public func compile(_ config: DnsgateConfig, configDiagnostics: [Diagnostic], generation: Int,
                        cookieSecret: UInt64) -> Result {
        var result = compile(config, generation: generation, cookieSecret: cookieSecret)
        result.diagnostics = configDiagnostics + result.diagnostics
        if result.hasErrors { result.policy = nil }
        return result
    }

    public func compile(_ config: DnsgateConfig, generation: Int, cookieSecret: UInt64) -> Result {
        var diagnostics: [Diagnostic] = []
        var summaries: [ParsedListSummary] = []
        var grouped: [[UInt8]: [NameTable.Member]] = [:]
        var outcomeIndex: [EntryAction: Int] = [:]
        var entryOutcomes: [Outcome] = []
        var infos: [ListInfo] = []
        if config.domainLists.count > min(ListMatches.capacity, NameTable.maximumLists) {
            diagnostics.append(Diagnostic(.error, file: config.path, line: 0,
                "\(config.domainLists.count) domain lists; at most \(ListMatches.capacity) are supported"))
            return Result(policy: nil, lists: [], diagnostics: diagnostics)
        }
        for (listIndex, list) in config.domainLists.enumerated() {
            let parsed: ParsedList
            let file: String
            switch list.source {
            case .inline(let names):
                file = config.path
                parsed = ListParser.parseInline(names, file: file, line: list.line, matchSubdomains: list.matchSubdomains)
            case .file(let listPath):
                file = resolve(listPath, relativeTo: config.path)
                do {
                    parsed = ListParser.parse(text: try readFile(file), format: list.format, file: file,
                                              matchSubdomains: list.matchSubdomains)
                } catch {
                    diagnostics.append(Diagnostic(.error, file: config.path, line: list.line,
                        "domain list '\(list.name)': cannot read \(file): \(error)"))
                    continue
                }
            case .url(let remote):
                // The last good copy; a list never fetched yet loads empty, so one
                // feed outage cannot keep the rest of the policy from loading.
                file = list.cachePath(in: resolve(config.cacheDirectory, relativeTo: config.path))
                if let text = try? readFile(file) {
                    parsed = ListParser.parse(text: text, format: list.format, file: file, matchSubdomains: list.matchSubdomains)
                } else {
                    parsed = ParsedList(format: list.format)
                    diagnostics.append(Diagnostic(.warning, file: config.path, line: list.line,
                        "domain list '\(list.name)': no copy of \(remote.url) yet; it is empty until a download succeeds"))
                }
            }
            var seen = Set<[UInt8]>()
            var loaded = 0
            for entry in parsed.entries {
                // One membership per (name, kind, exception) and list; the first line is kept.
                guard seen.insert(entry.key + [entry.kind.rawValue, entry.exception ? 1 : 0]).inserted else { continue }
                var outcome = -1
                if let action = entry.action {
                    if let known = outcomeIndex[action] {
                        outcome = known
                    } else if entryOutcomes.count < NameTable.maximumOutcomes {
                        outcome = entryOutcomes.count
                        outcomeIndex[action] = outcome
                        entryOutcomes.append(Outcome(action))
                    }
                }
                grouped[entry.key, default: []].append(
                    NameTable.Member(list: listIndex, kind: entry.kind, exception: entry.exception, outcome: outcome,
                                     line: entry.line))
                loaded += 1
            }
            let hasEntryActions = parsed.entries.contains { $0.action != nil }
            let info = ListInfo(name: list.name, file: file, inline: { if case .inline = list.source { true } else { false } }(),
                                url: { if case .url(let remote) = list.source { remote.url } else { nil } }(),
                                format: parsed.format, entries: loaded, skippedLines: parsed.skippedLines,
                                skipReasons: parsed.skipReasons, hasEntryActions: hasEntryActions)
            infos.append(info)
            summaries.append(ParsedListSummary(info: info, diagnostics: parsed.diagnostics))
            diagnostics += parsed.diagnostics
        }
        guard !diagnostics.contains(where: { $0.severity == .error }) else {
            return Result(policy: nil, lists: summaries, diagnostics: diagnostics)
        }
        // A name defined twice is already an error of the config; the first definition is used.
        let listIndex = Dictionary(config.domainLists.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { first, _ in first })
        var rules: [CompiledRule] = []
        var groups: [CompiledGroup] = []
        for group in config.ruleGroups.sorted(by: { $0.priority < $1.priority }) {
            let first = rules.count
            for rule in group.rules {
                guard let index = listIndex[rule.domainList], index < infos.count else { continue }
                let text = "blocked by dnsgate rule \(group.name)/\(rule.name)"
                rules.append(CompiledRule(
                    group: group.name, name: rule.name, listIndex: index, listName: rule.domainList,
                    action: rule.action,
                    outcome: Outcome(action: rule.action, blockResponse: rule.blockResponse, override: rule.override),
                    usesEntryActions: rule.action == .block && infos[index].hasEntryActions,
                    queryTypes: rule.queryTypes ?? [],
                    extraText: Array(text.utf8.prefix(ForgedAnswerBuilder.maximumExtraTextLength))))
            }
            groups.append(CompiledGroup(name: group.name, priority: group.priority, clients: group.clients,
                                        ruleIndices: first..<rules.count))
        }
        let settings = ForgedAnswerSettings(negativeTTL: config.blockTTL, extendedError: config.extendedError,
                                            cookieSecret: cookieSecret, serialNumber: UInt32(truncatingIfNeeded: generation))
        let policy = CompiledPolicy(generation: generation, groups: groups, rules: rules, lists: infos,
                                    entryOutcomes: entryOutcomes, answerSettings: settings, table: NameTable(grouped: grouped))
        return Result(policy: policy, lists: summaries, diagnostics: diagnostics)
    }

    /// A relative list path is relative to the config file's folder.
    func resolve(_ path: String, relativeTo configPath: String) -> String {
        if path.hasPrefix("/") { return path }
        guard let slash = configPath.lastIndex(of: "/") else { return path }
        return String(configPath[...slash]) + path
    }
}
