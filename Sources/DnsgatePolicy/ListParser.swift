// SPDX-License-Identifier: GPL-2.0-or-later
public import DNSWire

/// How a list entry matches a query name.
public enum EntryKind: UInt8, Sendable {
    /// `name`: that name only.
    case exact = 0
    /// `*.name`: every name below it, not the name itself.
    case wildcard = 1
    /// `||name^` or `match_subdomains: true`: the name and every name below it.
    case subtree = 2
}

/// What an RPZ entry itself says to do ("policy given": the entry decides).
public enum EntryAction: Sendable, Hashable {
    case nxdomain
    case nodata
    case passthru
    case drop
    case override(OverrideRecord)
}

/// One entry of a domain list: a lowercase wire-form name and how it matches.
public struct ListEntry: Sendable, Equatable {
    public var key: [UInt8]
    public var kind: EntryKind
    /// 1-based line in the list's file (or the config file, for inline lists).
    public var line: Int
    /// An adblock `@@` exception: names it matches are not in the list.
    public var exception = false
    /// An RPZ entry's own action.
    public var action: EntryAction? = nil
}

/// A list read from text: what loaded, what was skipped and why.
public struct ParsedList: Sendable {
    public var format: ListFormat
    public var entries: [ListEntry] = []
    public var skippedLines = 0
    /// Skipped lines by reason, e.g. "adblock rule with modifiers": 12.
    public var skipReasons: [String: Int] = [:]
    public var diagnostics: [Diagnostic] = []
}

/// Parsers for the list syntaxes of SPEC §2. Bad lines are reported with file
/// and line and skipped; the rest of the list still loads.
public enum ListParser {
    /// Most diagnostics kept per list; the rest are only counted.
    static let maximumDiagnostics = 50
    /// Names that hosts files map to themselves and that must never be blocked.
    static let hostsSelfNames: Set<String> = [
        "localhost", "localhost.localdomain", "local", "broadcasthost", "ip6-localhost", "ip6-loopback",
        "ip6-localnet", "ip6-mcastprefix", "ip6-allnodes", "ip6-allrouters", "ip6-allhosts", "0.0.0.0",
    ]

    public static func parse(text: String, format requested: ListFormat, file: String, matchSubdomains: Bool) -> ParsedList {
        let format = requested == .auto ? detectFormat(text) : requested
        var list = ParsedList(format: format)
        switch format {
        case .domains, .auto: parseLines(text, file: file, into: &list, domainsLine)
        case .hosts: parseLines(text, file: file, into: &list, hostsLine)
        case .adblock: parseLines(text, file: file, commentPrefixes: ["!", "#", "["], into: &list, adblockLine)
        case .rpz: RPZParser.parse(text, file: file, into: &list)
        }
        if matchSubdomains {
            for index in list.entries.indices { list.entries[index].kind = .subtree }
        }
        return list
    }

    /// Parses inline `domains:` of the config; `line` is where the list stands.
    public static func parseInline(_ names: [String], file: String, line: Int, matchSubdomains: Bool) -> ParsedList {
        var list = ParsedList(format: .domains)
        for name in names {
            if let reason = domainsLine(Substring(name), line, &list) {
                report(&list, Diagnostic(.error, file: file, line: line, reason.message))
            }
        }
        if matchSubdomains {
            for index in list.entries.indices { list.entries[index].kind = .subtree }
        }
        return list
    }

    /// Looks at the first meaningful lines: hosts files start with an address,
    /// adblock lists with `||`, `@@` or `!`, RPZ zones with `$ORIGIN`/`$TTL` or SOA.
    public static func detectFormat(_ text: String) -> ListFormat {
        var examined = 0
        for rawLine in text.split(whereSeparator: \.isNewline) {
            let line = rawLine.trimmingSpaces
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("!") || line.hasPrefix("||") || line.hasPrefix("@@") || line.hasPrefix("[Adblock") {
                return .adblock
            }
            if line.hasPrefix("$ORIGIN") || line.hasPrefix("$TTL") || line.contains(" SOA ") || line.contains("\tSOA\t") {
                return .rpz
            }
            if let first = line.split(whereSeparator: \.isWhitespace).first, IPAddress(first) != nil {
                return .hosts
            }
            examined += 1
            if examined >= 100 { break }
        }
        return .domains
    }

    /// Parses one meaningful line; returns why it was skipped, or nil.
    typealias LineParser = (Substring, Int, inout ParsedList) -> SkipReason?

    /// Why a line was skipped: a category for the summary and a message for the diagnostic.
    struct SkipReason {
        var category: String
        var message: String
        init(_ category: String, _ message: String) {
            self.category = category
            self.message = message
        }
    }

    /// Calls `parseLine` for every line that is not blank or a comment. With no
    /// comment prefixes, `#` starts a comment anywhere on the line.
    static func parseLines(_ text: String, file: String, commentPrefixes: [String] = [], into list: inout ParsedList,
                           _ parseLine: LineParser) {
        var lineNumber = 0
        // Count "\n"-terminated lines, so line numbers match editors for CRLF files too.
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            var line = rawLine
            if commentPrefixes.isEmpty, let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            line = line.trimmingSpaces
            if line.isEmpty || commentPrefixes.contains(where: { line.hasPrefix($0) }) { continue }
            if let reason = parseLine(line, lineNumber, &list) {
                skip(&list, reason, file: file, line: lineNumber)
            }
        }
    }

    static func skip(_ list: inout ParsedList, _ reason: SkipReason, file: String, line: Int) {
        list.skippedLines += 1
        list.skipReasons[reason.category, default: 0] += 1
        report(&list, Diagnostic(.warning, file: file, line: line, reason.message))
    }

    static func report(_ list: inout ParsedList, _ diagnostic: Diagnostic) {
        if list.diagnostics.count < maximumDiagnostics { list.diagnostics.append(diagnostic) }
    }

    /// `name`, `*.name` or `*`.
    static func domainsLine(_ line: Substring, _ number: Int, _ list: inout ParsedList) -> SkipReason? {
        let fields = line.split(whereSeparator: \.isWhitespace)
        guard fields.count == 1 else {
            return SkipReason("not one name", "expected one domain name, found \(fields.count) fields")
        }
        var text = fields[0]
        var kind = EntryKind.exact
        if text == "*" {
            list.entries.append(ListEntry(key: [], kind: .wildcard, line: number))
            return nil
        }
        if text.hasPrefix("*.") {
            kind = .wildcard
            text = text.dropFirst(2)
        }
        guard let key = key(for: text) else { return SkipReason("invalid name", "'\(fields[0])' is not a valid domain name") }
        list.entries.append(ListEntry(key: key, kind: kind, line: number))
        return nil
    }

    /// `address name [name …]`.
    static func hostsLine(_ line: Substring, _ number: Int, _ list: inout ParsedList) -> SkipReason? {
        let fields = line.split(whereSeparator: \.isWhitespace)
        guard fields.count >= 2, IPAddress(fields[0]) != nil else {
            return SkipReason("not a hosts line", "expected 'address name [name …]'")
        }
        var invalid: [Substring] = []
        for name in fields.dropFirst() where !hostsSelfNames.contains(name.lowercased()) {
            if let key = key(for: name) {
                list.entries.append(ListEntry(key: key, kind: .exact, line: number))
            } else {
                invalid.append(name)
            }
        }
        return invalid.isEmpty
            ? nil : SkipReason("invalid name", "'\(invalid.joined(separator: "', '"))' is not a valid host name")
    }

    /// Modifiers that change nothing for a DNS firewall and so can be honoured.
    static let harmlessAdblockModifiers: Set<Substring> = ["important", "all", "document", "doc"]

    /// `||name^` (the name and everything below), `@@||name^` (an exception),
    /// optionally with harmless modifiers. Everything else a DNS firewall
    /// cannot honour (paths, regexes, cosmetic rules, wildcards inside a name,
    /// content-type modifiers) is skipped and counted, never guessed at.
    static func adblockLine(_ line: Substring, _ number: Int, _ list: inout ParsedList) -> SkipReason? {
        var rule = line
        let exception = rule.hasPrefix("@@")
        if exception { rule = rule.dropFirst(2) }
        if rule.contains("##") || rule.contains("#@#") || rule.contains("#?#") || rule.contains("#$#") {
            return SkipReason("cosmetic rule", "cosmetic (element hiding) rule: no meaning for DNS")
        }
        if rule.hasPrefix("/") { return SkipReason("regular expression", "regular-expression rule is not supported") }
        if let dollar = rule.firstIndex(of: "$") {
            let modifiers = rule[rule.index(after: dollar)...].split(separator: ",")
            guard modifiers.allSatisfy({ harmlessAdblockModifiers.contains($0) }) else {
                return SkipReason("modifiers", "rule with modifiers a DNS firewall cannot honour: $\(modifiers.joined(separator: ","))")
            }
            rule = rule[..<dollar]
        }
        guard rule.hasPrefix("||"), rule.hasSuffix("^") else {
            return SkipReason("not a ||name^ rule", "only '||name^' and '@@||name^' rules are supported")
        }
        let name = rule.dropFirst(2).dropLast()
        if name.contains("/") || name.contains(":") { return SkipReason("path", "rule with a path or port") }
        if name.contains("*") { return SkipReason("wildcard inside a name", "a '*' inside a name cannot be matched by suffix") }
        guard let key = key(for: name) else { return SkipReason("invalid name", "'\(name)' is not a valid domain name") }
        list.entries.append(ListEntry(key: key, kind: .subtree, line: number, exception: exception))
        return nil
    }

    /// Lowercase wire form of a presentation name; nil when it is not a name
    /// (empty labels, a label over 63 bytes, over 255 bytes, a `*` inside).
    public static func key(for text: some StringProtocol) -> [UInt8]? {
        guard !text.isEmpty, !text.contains("*"), let name = DomainName(text: text), name.labelCount > 0 else {
            return nil
        }
        return name.lowercasedWire
    }
}
