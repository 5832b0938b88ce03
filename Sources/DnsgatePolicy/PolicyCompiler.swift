// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import ThreatDetection

/// Reads every list a config names and compiles the policy. File access is
/// injected, so this stays pure and testable.
public struct PolicyCompiler {
    /// Reads a whole file; throws with a message on failure.
    public typealias ReadFile = (String) throws -> [UInt8]
    /// Reads a whole file of at most `maximumBytes`, refusing a larger one
    /// before reading it; throws with a message on failure.
    public typealias ReadBoundedFile = (_ path: String, _ maximumBytes: Int) throws -> [UInt8]

    /// The largest config file read. Inline lists of a few hundred thousand
    /// names fit; beyond that, lists belong in files.
    public static let maximumConfigBytes = 4 << 20

    public struct Result: Sendable {
        public var policy: CompiledPolicy?
        public var lists: [ParsedListSummary]
        public var diagnostics: [Diagnostic]
        public var hasErrors: Bool { diagnostics.contains { $0.severity == .error } }

        /// The policy, or every error that kept it from compiling.
        public func requirePolicy() throws(PolicyError) -> CompiledPolicy {
            guard let policy, !hasErrors else { throw PolicyError(diagnostics.filter { $0.severity == .error }) }
            return policy
        }

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

    let readFile: ReadBoundedFile
    /// Keep each entry's source line, for `explain` (4 bytes a name the daemon does without).
    let keepLines: Bool

    /// With a reader that checks sizes before reading (the daemon's and the CLI's).
    public init(keepLines: Bool = true, readBoundedFile: @escaping ReadBoundedFile) {
        self.keepLines = keepLines
        self.readFile = readBoundedFile
    }

    /// With an in-memory reader (tests, fuzzing): sizes are checked once read.
    public init(keepLines: Bool = true, readFile: @escaping ReadFile) {
        self.init(keepLines: keepLines, readBoundedFile: { path, _ in try readFile(path) })
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
            let bytes = try readFile(path, Self.maximumConfigBytes)
            guard bytes.count <= Self.maximumConfigBytes else {
                return (nil, [Diagnostic(.error, file: path, line: 0,
                                         "the config is \(bytes.count) bytes, more than \(Self.maximumConfigBytes)")])
            }
            return ConfigReader.read(yaml: String(decoding: bytes, as: UTF8.self), path: path)
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
        var sources: [ListSource] = []
        for list in config.domainLists {
            var source = read(list, of: config)
            diagnostics += source.diagnostics
            source.diagnostics = []
            sources.append(source)
        }
        let totalBytes = sources.reduce(0) { $0 + ($1.bytes?.count ?? 0) }
        let totalLines = sources.reduce(0) { total, source in
            total + (source.bytes.map { $0.reduce(0) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 } + 1 } ?? 0)
        }
        var table = NameTable(expectedKeys: totalLines + config.domainLists.count, expectedArenaBytes: totalBytes,
                              keepLines: keepLines)
        /// The number of an RPZ entry's own action among the policy's entry
        /// outcomes (shared by every entry with the same action), or -1 when
        /// there is no room for another.
        func outcomeNumber(_ action: EntryAction) -> Int {
            if let known = outcomeIndex[action] { return known }
            guard entryOutcomes.count < NameTable.maximumOutcomes else { return -1 }
            outcomeIndex[action] = entryOutcomes.count
            entryOutcomes.append(Outcome(action))
            return entryOutcomes.count - 1
        }
        for (listIndex, list) in config.domainLists.enumerated() {
            var loaded = 0
            var hasEntryActions = false
            let add: ListParser.Sink = { key, info in
                var outcome = -1
                if let action = info.action {
                    hasEntryActions = true
                    outcome = outcomeNumber(action)
                }
                let member = NameTable.Member(list: listIndex, kind: info.kind, exception: info.exception,
                                              outcome: outcome, line: info.line)
                if table.insert(key, member) { loaded += 1 }
            }
            let source = sources[listIndex]
            var (report, info) = parse(list, source: source,
                                       inline: { ListParser.readInline($0, file: source.file, line: list.line,
                                                                       matchSubdomains: list.matchSubdomains, add: add) },
                                       bytes: { ListParser.read($0, format: list.format, file: source.file,
                                                                matchSubdomains: list.matchSubdomains, add: add) })
            info.entries = loaded
            info.hasEntryActions = hasEntryActions
            infos.append(info)
            summaries.append(ParsedListSummary(info: info, diagnostics: report.diagnostics))
            diagnostics += report.diagnostics
        }
        sources.removeAll()
        table.shrinkToFit()
        var addressTables: [AddressTable] = []
        var addressInfos: [ListInfo] = []
        for list in config.ipLists {
            let (addresses, info, report) = loadAddressList(list, of: config, outcome: outcomeNumber)
            addressTables.append(addresses)
            addressInfos.append(info)
            summaries.append(ParsedListSummary(info: info, diagnostics: report.diagnostics))
            diagnostics += report.diagnostics
        }
        guard !diagnostics.contains(where: { $0.severity == .error }) else {
            return Result(policy: nil, lists: summaries, diagnostics: diagnostics)
        }
        // A name defined twice is already an error of the config; the first definition is used.
        let listIndex = Dictionary(config.domainLists.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { first, _ in first })
        let addressListIndex = Dictionary(config.ipLists.enumerated().map { ($1.name, $0) },
                                          uniquingKeysWith: { first, _ in first })
        var rules: [CompiledRule] = []
        var groups: [CompiledGroup] = []
        for group in config.ruleGroups.sorted(by: { $0.priority < $1.priority }) {
            let first = rules.count
            for rule in group.rules {
                var index = -1
                var addressIndex = -1
                var threat: (Threat, ConfidenceLevel)? = nil
                var exemptions: ListMatches? = nil
                var entryActions = false
                switch rule.match {
                case .domainList(let list):
                    guard let found = listIndex[list], found < infos.count else { continue }
                    index = found
                    entryActions = infos[found].hasEntryActions
                case .threat(let named, let level):
                    threat = (named, level)
                case .ipList(let list):
                    guard let found = addressListIndex[list], found < addressInfos.count else { continue }
                    addressIndex = found
                    entryActions = addressInfos[found].hasEntryActions
                case .rebinding(let exempt):
                    var lists = ListMatches()
                    for name in exempt { if let found = listIndex[name] { lists.insert(found) } }
                    exemptions = lists
                }
                let text = "blocked by dnsgate rule \(group.name)/\(rule.name)"
                rules.append(CompiledRule(
                    group: group.name, name: rule.name, listIndex: index, listName: rule.domainList ?? rule.ipList ?? "",
                    addressListIndex: addressIndex, rebindingExemptions: exemptions,
                    trustsRedirection: rule.redirection == .trust,
                    threat: threat, action: rule.action,
                    outcome: Outcome(action: rule.action, blockResponse: rule.blockResponse, override: rule.override),
                    usesEntryActions: rule.action == .block && entryActions,
                    queryTypes: rule.queryTypes ?? [],
                    extraText: Array(text.utf8.prefix(ForgedAnswerBuilder.maximumExtraTextLength))))
            }
            groups.append(CompiledGroup(name: group.name, priority: group.priority, clients: group.clients,
                                        ruleIndices: first..<rules.count))
        }
        var threatModels: ThreatModels? = nil
        if rules.contains(where: { $0.threat != nil }) {
            let (models, problems) = loadThreatModels(config.threatDetection, configPath: config.path)
            guard let models else { return Result(policy: nil, lists: summaries, diagnostics: diagnostics + problems) }
            threatModels = models
        }
        let settings = ForgedAnswerSettings(negativeTTL: config.blockTTL, extendedError: config.extendedError, serialNumber: UInt32(truncatingIfNeeded: generation))
        // Until every remote list has a copy, the policy is not whole: in
        // fail_mode closed, what no rule matches might be in a missing list.
        let awaiting = (infos + addressInfos).contains(where: \.awaitingFirstCopy)
        let policy = CompiledPolicy(generation: generation, groups: groups, rules: rules, lists: infos,
                                    entryOutcomes: entryOutcomes, answerSettings: settings, table: table,
                                    dropsUnmatched: awaiting && config.failMode == .closed, threatModels: threatModels,
                                    addressLists: addressInfos, addressTables: addressTables,
                                    nat64Prefixes: config.dns64Prefixes)
        return Result(policy: policy, lists: summaries, diagnostics: diagnostics)
    }

    /// Reads an address list into its table; `outcome` numbers an RPZ
    /// entry's own action (-1 when there is no room for another).
    func loadAddressList(_ list: DomainListConfig, of config: DnsgateConfig,
                         outcome: @escaping (EntryAction) -> Int) -> (AddressTable, ListInfo, ListReport) {
        let source = read(list, of: config)
        var entries: [AddressTable.Entry] = []
        var hasEntryActions = false
        let add: AddressListParser.Sink = { prefix, line, action in
            var index = -1
            if let action {
                hasEntryActions = true
                index = outcome(action)
            }
            entries.append(AddressTable.Entry(prefix: prefix, line: Int32(clamping: line), outcome: Int32(index)))
        }
        var (report, info) = parse(list, source: source,
                                   inline: { AddressListParser.readInline($0, file: source.file, line: list.line, add: add) },
                                   bytes: { AddressListParser.read($0, format: list.format, file: source.file, add: add) })
        let table = AddressTable(entries)
        info.entries = table.count
        info.hasEntryActions = hasEntryActions
        report.diagnostics = source.diagnostics + report.diagnostics
        return (table, info, report)
    }

    /// Parses a list (`inline` for one written in the config, `bytes` for
    /// its file or cached copy) and checks that a file did not collapse (a
    /// cached copy that did is as good as none: fetched anew); returns the
    /// report and what is known of the list (its entries and entry actions
    /// are the caller's to fill in).
    func parse(_ list: DomainListConfig, source: ListSource, inline: ([String]) -> ListReport,
               bytes parseBytes: (Span<UInt8>) -> ListReport) -> (ListReport, ListInfo) {
        var report: ListReport
        var collapsedCopy = false
        if case .inline(let names) = list.source {
            report = inline(names)
        } else if let bytes = source.bytes {
            report = parseBytes(bytes.span)
            if var collapse = ListHealth.collapse(report, list: list.name, file: source.file, allowEmpty: list.allowEmpty,
                                                  kind: list.kind.noun) {
                if list.remoteOrigin != nil {
                    collapse.severity = .warning
                    collapsedCopy = true
                }
                report.diagnostics.append(collapse)
            }
        } else {
            // Unreadable, refused, or a remote list with no copy yet: nothing to parse.
            report = ListReport(format: list.format)
        }
        let info = ListInfo(name: list.name, file: source.file, inline: { if case .inline = list.source { true } else { false } }(),
                            url: list.remoteOrigin,
                            format: report.format, entries: 0, skippedLines: report.skippedLines,
                            skipReasons: report.skipReasons, hasEntryActions: false,
                            awaitingFirstCopy: source.awaitingFirstCopy || collapsedCopy)
        return (report, info)
    }

    /// One list's bytes as read, before parsing.
    struct ListSource {
        /// The list file, the remote list's cached copy, or the config (inline lists).
        var file: String
        /// nil: nothing to parse (an inline list, or a file that could not be used).
        var bytes: [UInt8]?
        /// A remote list with no usable copy on disk yet.
        var awaitingFirstCopy = false
        var diagnostics: [Diagnostic] = []
    }

    /// Reads a list's file or cached copy, within its size limit, and refuses
    /// binary content.
    func read(_ list: DomainListConfig, of config: DnsgateConfig) -> ListSource {
        let limit = list.maximumBytes
        switch list.source {
        case .inline:
            return ListSource(file: config.path)
        case .file(let file):
            var source = ListSource(file: file)
            do {
                source.bytes = try readFile(file, limit)
            } catch {
                source.diagnostics.append(Diagnostic(.error, file: config.path, line: list.line,
                    "\(list.kind.noun) '\(list.name)': cannot read \(file): \(error)"))
                return source
            }
            source.bytes = checked(source.bytes!, limit: limit, list: list, file: file, diagnostics: &source.diagnostics)
            return source
        case .url, .zone:
            let origin = list.remoteOrigin ?? ""
            // The last good copy. A list with none yet loads empty, so that one
            // feed outage cannot keep the rest of the policy from loading; the
            // feed thread fetches it and reloads.
            var source = ListSource(file: list.cachePath(in: config.cacheDirectory))
            func awaitingCopy(_ why: String) -> ListSource {
                source.awaitingFirstCopy = true
                source.diagnostics.append(Diagnostic(.warning, file: config.path, line: list.line,
                    "\(list.kind.noun) '\(list.name)': no usable copy of \(origin) yet (\(source.file): \(why)); it is empty until a download succeeds"))
                return source
            }
            let bytes: [UInt8]
            do {
                bytes = try readFile(source.file, limit)
            } catch {
                return awaitingCopy("\(error)")
            }
            // A copy over a since lowered max_size is fetched again, not used; so
            // is one that is not text (a torn write, a changed format): the feed
            // fetches it anew, and it never keeps the daemon from starting.
            guard bytes.count <= limit else { return awaitingCopy(Self.tooLarge(bytes.count, limit: limit)) }
            if let binary = ListHealth.binaryContent(bytes.span, list: list.name, file: source.file, kind: list.kind.noun) {
                return awaitingCopy(binary.message)
            }
            // A zone's copy names its zone first: one left from another zone
            // (the list's `zone:` changed) is no copy of this one.
            if case .zone(let zone) = list.source, !bytes.starts(with: Array("; zone \(zone.zone) serial ".utf8)) {
                return awaitingCopy("a copy of another zone, or not written by dnsgate")
            }
            source.bytes = bytes
            return source
        }
    }

    /// `bytes`, or nil with an error when they exceed `limit` (an in-memory
    /// reader does not check) or are not text.
    func checked(_ bytes: [UInt8], limit: Int, list: DomainListConfig, file: String,
                 diagnostics: inout [Diagnostic]) -> [UInt8]? {
        if bytes.count > limit {
            diagnostics.append(Diagnostic(.error, file: file, line: 0,
                                          "\(list.kind.noun) '\(list.name)': \(Self.tooLarge(bytes.count, limit: limit))"))
            return nil
        }
        if let binary = ListHealth.binaryContent(bytes.span, list: list.name, file: file, kind: list.kind.noun) {
            diagnostics.append(binary)
            return nil
        }
        return bytes
    }

    /// Why a list larger than its `max_size` is refused.
    static func tooLarge(_ bytes: Int, limit: Int) -> String {
        "\(bytes) bytes, more than max_size (\(limit) bytes)"
    }
}
