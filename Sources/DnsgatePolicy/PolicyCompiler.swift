// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire

/// Reads every list a config names and compiles the policy. File access is
/// injected, so this stays pure and testable.
public struct PolicyCompiler {
    /// Reads a whole file; throws with a message on failure.
    public typealias ReadFile = (String) throws -> [UInt8]

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
    /// Keep each entry's source line, for `explain` (4 bytes a name the daemon does without).
    let keepLines: Bool

    public init(keepLines: Bool = true, readFile: @escaping ReadFile) {
        self.keepLines = keepLines
        self.readFile = readFile
    }

    /// Reads the config at `path` and everything it names.
    public func load(configPath path: String, generation: Int) -> (DnsgateConfig?, Result) {
        let (config, diagnostics) = readConfig(path)
        guard let config else { return (nil, Result(policy: nil, lists: [], diagnostics: diagnostics)) }
        return (config, compile(config, configDiagnostics: diagnostics, generation: generation))
    }

    /// Reads the config file alone (lists are read by `compile`).
    public func readConfig(_ path: String) -> (DnsgateConfig?, [Diagnostic]) {
        do {
            return ConfigReader.read(yaml: String(decoding: try readFile(path), as: UTF8.self), path: path)
        } catch {
            return (nil, [Diagnostic(.error, file: path, line: 0, "cannot read the config: \(error)")])
        }
    }

    /// Compiles a config read by `readConfig`; its diagnostics are reported
    /// first and, if any is an error, there is no policy.
    public func compile(_ config: DnsgateConfig, configDiagnostics: [Diagnostic], generation: Int) -> Result {
        var result = compile(config, generation: generation)
        result.diagnostics = configDiagnostics + result.diagnostics
        if result.hasErrors { result.policy = nil }
        return result
    }

    public func compile(_ config: DnsgateConfig, generation: Int) -> Result {
        var diagnostics: [Diagnostic] = []
        var summaries: [ParsedListSummary] = []
        var outcomeIndex: [EntryAction: Int] = [:]
        var entryOutcomes: [Outcome] = []
        var infos: [ListInfo] = []
        if config.domainLists.count > min(ListMatches.capacity, NameTable.maximumLists) {
            diagnostics.append(Diagnostic(.error, file: config.path, line: 0,
                "\(config.domainLists.count) domain lists; at most \(ListMatches.capacity) are supported"))
            return Result(policy: nil, lists: [], diagnostics: diagnostics)
        }
        // Read every list first, so that the table is sized once from their lengths.
        var sources: [(file: String, bytes: [UInt8]?)] = []
        for list in config.domainLists {
            switch list.source {
            case .inline:
                sources.append((config.path, nil))
            case .file(let file):
                do {
                    sources.append((file, try readFile(file)))
                } catch {
                    diagnostics.append(Diagnostic(.error, file: config.path, line: list.line,
                        "domain list '\(list.name)': cannot read \(file): \(error)"))
                    sources.append((file, []))
                }
            case .url(let remote):
                // The last good copy; a list never fetched yet loads empty, so one
                // feed outage cannot keep the rest of the policy from loading.
                let file = list.cachePath(in: config.cacheDirectory)
                if let bytes = try? readFile(file) {
                    sources.append((file, bytes))
                } else {
                    diagnostics.append(Diagnostic(.warning, file: config.path, line: list.line,
                        "domain list '\(list.name)': no copy of \(remote.url) yet; it is empty until a download succeeds"))
                    sources.append((file, []))
                }
            }
        }
        let totalBytes = sources.reduce(0) { $0 + ($1.bytes?.count ?? 0) }
        let totalLines = sources.reduce(0) { total, source in
            total + (source.bytes.map { $0.reduce(0) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 } + 1 } ?? 0)
        }
        var table = NameTable(expectedKeys: totalLines + config.domainLists.count, expectedArenaBytes: totalBytes,
                              keepLines: keepLines)
        for (listIndex, list) in config.domainLists.enumerated() {
            var loaded = 0
            var hasEntryActions = false
            let add: ListParser.Sink = { key, info in
                var outcome = -1
                if let action = info.action {
                    hasEntryActions = true
                    if let known = outcomeIndex[action] {
                        outcome = known
                    } else if entryOutcomes.count < NameTable.maximumOutcomes {
                        outcome = entryOutcomes.count
                        outcomeIndex[action] = outcome
                        entryOutcomes.append(Outcome(action))
                    }
                }
                let member = NameTable.Member(list: listIndex, kind: info.kind, exception: info.exception,
                                              outcome: outcome, line: info.line)
                if table.insert(key, member) { loaded += 1 }
            }
            let report: ListReport
            let file = sources[listIndex].file
            if case .inline(let names) = list.source {
                report = ListParser.readInline(names, file: file, line: list.line, matchSubdomains: list.matchSubdomains,
                                               add: add)
            } else {
                let bytes = sources[listIndex].bytes ?? []
                report = ListParser.read(bytes.span, format: list.format, file: file, matchSubdomains: list.matchSubdomains,
                                         add: add)
            }
            let info = ListInfo(name: list.name, file: file, inline: { if case .inline = list.source { true } else { false } }(),
                                url: { if case .url(let remote) = list.source { remote.url } else { nil } }(),
                                format: report.format, entries: loaded, skippedLines: report.skippedLines,
                                skipReasons: report.skipReasons, hasEntryActions: hasEntryActions)
            infos.append(info)
            summaries.append(ParsedListSummary(info: info, diagnostics: report.diagnostics))
            diagnostics += report.diagnostics
        }
        sources.removeAll()
        table.shrinkToFit()
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
        let settings = ForgedAnswerSettings(negativeTTL: config.blockTTL, extendedError: config.extendedError, serialNumber: UInt32(truncatingIfNeeded: generation))
        let policy = CompiledPolicy(generation: generation, groups: groups, rules: rules, lists: infos,
                                    entryOutcomes: entryOutcomes, answerSettings: settings, table: table)
        return Result(policy: policy, lists: summaries, diagnostics: diagnostics)
    }
}
