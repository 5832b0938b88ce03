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

/// Everything about a list entry but its name.
public struct EntryInfo: Sendable, Equatable {
    public var kind: EntryKind
    /// 1-based line in the list's file (or the config file, for inline lists).
    public var line: Int
    /// An adblock `@@` exception: names it matches are not in the list.
    public var exception = false
    /// An RPZ entry's own action.
    public var action: EntryAction? = nil
}

/// One entry of a domain list, with its name as an array (tests, previews).
public struct ListEntry: Sendable, Equatable {
    public var key: [UInt8]
    public var info: EntryInfo
    public var kind: EntryKind { info.kind }
    public var line: Int { info.line }
    public var exception: Bool { info.exception }
    public var action: EntryAction? { info.action }
}

/// What reading a list found besides its entries: what was skipped and why.
public struct ListReport: Sendable {
    public var format: ListFormat
    public var entries = 0
    public var skippedLines = 0
    /// Skipped lines by reason, e.g. "modifiers": 12.
    public var skipReasons: [String: Int] = [:]
    public var diagnostics: [Diagnostic] = []
    /// Lines (RPZ: records) that were neither blank nor comments.
    public var lines = 0
    /// Skipped lines that are not of the list's syntax at all (as opposed to
    /// well-formed rules a DNS firewall cannot honour, such as adblock
    /// cosmetic rules): many of them mean the file is not a list.
    public var unreadableLines = 0
    /// The first of them, 0 when there is none.
    public var firstUnreadableLine = 0
}

/// A list read into memory entry by entry (for tests and small lists).
public struct ParsedList: Sendable {
    public var report: ListReport
    public var entries: [ListEntry] = []
    public var format: ListFormat { report.format }
    public var skippedLines: Int { report.skippedLines }
    public var skipReasons: [String: Int] { report.skipReasons }
    public var diagnostics: [Diagnostic] { report.diagnostics }
}

/// Parsers for the list syntaxes of SPEC §2. They work on bytes and hand each
/// entry to the caller as an inline `NameKey`, so that reading a list of a
/// million names does not allocate per name. Bad lines are reported with file
/// and line and skipped; the rest of the list still loads.
public enum ListParser {
    /// Most diagnostics kept per list; the rest are only counted.
    static let maximumDiagnostics = 50
    /// Names that hosts files map to themselves and that must never be blocked.
    static let hostsSelfNames: Set<String> = [
        "localhost", "localhost.localdomain", "local", "broadcasthost", "ip6-localhost", "ip6-loopback",
        "ip6-localnet", "ip6-mcastprefix", "ip6-allnodes", "ip6-allrouters", "ip6-allhosts", "0.0.0.0",
    ]
    /// Modifiers that change nothing for a DNS firewall and so can be honoured.
    static let harmlessAdblockModifiers: Set<Substring> = ["important", "all", "document", "doc"]

    public typealias Sink = (borrowing NameKey, EntryInfo) -> Void

    /// Reads a list, calling `add` for every entry in file order.
    public static func read(_ bytes: Span<UInt8>, format requested: ListFormat, file: String, matchSubdomains: Bool,
                            add: Sink) -> ListReport {
        let format = requested == .auto ? detectFormat(bytes) : requested
        var report = ListReport(format: format)
        withoutActuallyEscaping(add) { add in
            let sink: Sink = { key, info in
                var info = info
                if matchSubdomains { info.kind = .subtree }
                add(key, info)
            }
            readFormat(bytes, format: format, file: file, report: &report, sink: sink)
        }
        return report
    }

    static func readFormat(_ bytes: Span<UInt8>, format: ListFormat, file: String, report: inout ListReport, sink: Sink) {
        switch format {
        case .domains, .auto: readLines(bytes, file: file, report: &report) { domainsLine($0, $1, &$2, sink) }
        case .hosts: readLines(bytes, file: file, report: &report) { hostsLine($0, $1, &$2, sink) }
        case .adblock:
            readLines(bytes, file: file, commentBytes: [UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "[")],
                      report: &report) { adblockLine($0, $1, &$2, sink) }
        case .rpz:
            RPZParser.parse(String(decoding: bytes.bytesArray, as: UTF8.self), file: file, report: &report, add: sink)
        case .addresses:
            // Not a domain format (the config reader refuses it for domain
            // lists): every line is unreadable here, so the list collapses
            // loudly instead of loading empty.
            readLines(bytes, file: file, report: &report) { _, _, _ in
                SkipReason("address list", "format 'addresses' is read by ip_lists, not by a domain list")
            }
        }
    }

    /// Reads a list into memory.
    public static func parse(text: String, format: ListFormat, file: String, matchSubdomains: Bool) -> ParsedList {
        let bytes = Array(text.utf8)
        var entries: [ListEntry] = []
        let report = read(bytes.span, format: format, file: file, matchSubdomains: matchSubdomains) { key, info in
            entries.append(ListEntry(key: key.array, info: info))
        }
        return ParsedList(report: report, entries: entries)
    }

    /// Reads inline `domains:` of the config; `line` is where the list stands.
    /// A bad name there is an error of the config.
    public static func readInline(_ names: [String], file: String, line: Int, matchSubdomains: Bool,
                                  add: Sink) -> ListReport {
        var report = ListReport(format: .domains)
        for name in names {
            let bytes = Array(name.utf8)
            let reason = domainsLine(bytes.span, line, &report) { key, info in
                var info = info
                if matchSubdomains { info.kind = .subtree }
                add(key, info)
            }
            if let reason { report.diagnostics.append(Diagnostic(.error, file: file, line: line, reason.message)) }
        }
        return report
    }

    /// Looks at the first meaningful lines: hosts files start with an address,
    /// adblock lists with `||`, `@@` or `!`, RPZ zones with `$ORIGIN`/`$TTL` or SOA.
    public static func detectFormat(_ bytes: Span<UInt8>) -> ListFormat {
        var examined = 0
        var start = 0
        while start < bytes.count, examined < 100 {
            var end = start
            while end < bytes.count, bytes[end] != UInt8(ascii: "\n") { end += 1 }
            let line = String(decoding: bytes.extracting(start..<end).bytesArray, as: UTF8.self).trimmingSpaces
            start = end + 1
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
        }
        return .domains
    }

    public static func detectFormat(_ text: String) -> ListFormat {
        let bytes = Array(text.utf8)
        return detectFormat(bytes.span)
    }

    /// Why a line was skipped: a category for the summary and a message for the diagnostic.
    public struct SkipReason: Error {
        var category: String
        var message: String
        /// A well-formed rule of the format that a DNS firewall cannot honour;
        /// otherwise the line is unreadable in this format.
        var unsupported: Bool
        init(_ category: String, _ message: String, unsupported: Bool = false) {
            self.category = category
            self.message = message
            self.unsupported = unsupported
        }
    }

    /// Parses one meaningful line (trimmed, comment removed); returns why it was skipped, or nil.
    typealias LineParser = (Span<UInt8>, Int, inout ListReport) -> SkipReason?

    /// Calls `parseLine` for every line that is not blank or a comment. With no
    /// comment bytes given, any of `trailingCommentBytes` starts a comment
    /// anywhere on the line; otherwise a line starting with one of them is a comment.
    static func readLines(_ bytes: Span<UInt8>, file: String, commentBytes: [UInt8] = [],
                          trailingCommentBytes: [UInt8] = [UInt8(ascii: "#")], report: inout ListReport,
                          _ parseLine: LineParser) {
        var lineNumber = 0
        var start = 0
        while start <= bytes.count {  // each turn consumes a line and its "\n"
            var end = start
            while end < bytes.count, bytes[end] != UInt8(ascii: "\n") { end += 1 }
            lineNumber += 1
            var lineEnd = end
            if commentBytes.isEmpty {
                var index = start
                while index < lineEnd, !trailingCommentBytes.contains(bytes[index]) { index += 1 }
                lineEnd = index
            }
            var lineStart = start
            while lineStart < lineEnd, isSpace(bytes[lineStart]) { lineStart += 1 }
            while lineEnd > lineStart, isSpace(bytes[lineEnd - 1]) { lineEnd -= 1 }
            let next = end + 1
            defer { start = next }
            if lineStart == lineEnd { continue }
            if !commentBytes.isEmpty, commentBytes.contains(bytes[lineStart]) { continue }
            report.lines += 1
            if let reason = parseLine(bytes.extracting(lineStart..<lineEnd), lineNumber, &report) {
                skip(&report, reason, file: file, line: lineNumber)
            }
        }
    }

    @inline(__always)
    static func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0d || byte == 0x0b || byte == 0x0c }

    static func skip(_ report: inout ListReport, _ reason: SkipReason, file: String, line: Int) {
        report.skippedLines += 1
        report.skipReasons[reason.category, default: 0] += 1
        if !reason.unsupported {
            report.unreadableLines += 1
            if report.firstUnreadableLine == 0 { report.firstUnreadableLine = line }
        }
        if report.diagnostics.count < maximumDiagnostics {
            report.diagnostics.append(Diagnostic(.warning, file: file, line: line, reason.message))
        }
    }

    /// The next whitespace-separated field at or after `from`.
    @inline(__always)
    static func nextField(_ line: Span<UInt8>, from: Int) -> Range<Int>? {
        var start = from
        while start < line.count, isSpace(line[start]) { start += 1 }
        guard start < line.count else { return nil }
        var end = start
        while end < line.count, !isSpace(line[end]) { end += 1 }
        return start..<end
    }

    static func text(_ bytes: Span<UInt8>) -> String { String(decoding: bytes.bytesArray, as: UTF8.self) }

    /// `name`, `*.name` or `*`.
    static func domainsLine(_ line: Span<UInt8>, _ number: Int, _ report: inout ListReport, _ add: Sink) -> SkipReason? {
        guard let field = nextField(line, from: 0) else { return nil }
        if nextField(line, from: field.upperBound) != nil {
            return SkipReason("not one name", "expected one domain name, found several fields: '\(text(line))'")
        }
        var name = line.extracting(field)
        if name.count == 1, name[0] == UInt8(ascii: "*") {
            add(NameKey(), EntryInfo(kind: .wildcard, line: number))
            report.entries += 1
            return nil
        }
        var kind = EntryKind.exact
        if name.count > 2, name[0] == UInt8(ascii: "*"), name[1] == UInt8(ascii: ".") {
            kind = .wildcard
            name = name.extracting(2...)
        }
        guard let key = NameKey(text: name) else {
            return SkipReason("invalid name", "'\(text(line.extracting(field)))' is not a valid domain name")
        }
        add(key, EntryInfo(kind: kind, line: number))
        report.entries += 1
        return nil
    }

    /// `address name [name …]`.
    static func hostsLine(_ line: Span<UInt8>, _ number: Int, _ report: inout ListReport, _ add: Sink) -> SkipReason? {
        guard let addressField = nextField(line, from: 0), isAddress(line.extracting(addressField)),
              nextField(line, from: addressField.upperBound) != nil else {
            return SkipReason("not a hosts line", "expected 'address name [name …]': '\(text(line))'")
        }
        var invalid: [String] = []
        var cursor = addressField.upperBound
        while let field = nextField(line, from: cursor) {  // each turn consumes a field
            cursor = field.upperBound
            let name = line.extracting(field)
            guard let key = NameKey(text: name) else {
                invalid.append(text(name))
                continue
            }
            if key.count <= 24, hostsSelfNames.contains(text(name).lowercased()) { continue }
            add(key, EntryInfo(kind: .exact, line: number))
            report.entries += 1
        }
        return invalid.isEmpty
            ? nil : SkipReason("invalid name", "'\(invalid.joined(separator: "', '"))' is not a valid host name")
    }

    /// The addresses hosts files use, compared as bytes; anything else is parsed.
    static func isAddress(_ field: Span<UInt8>) -> Bool {
        for common in commonHostsAddresses where common.count == field.count {
            var same = true
            for index in 0..<field.count where field[index] != common[index] {
                same = false
                break
            }
            if same { return true }
        }
        return IPAddress(text(field)) != nil
    }
    static let commonHostsAddresses: [[UInt8]] = ["0.0.0.0", "127.0.0.1", "::", "::1"].map { Array($0.utf8) }

    /// `||name^` (the name and everything below), `@@||name^` (an exception),
    /// optionally with harmless modifiers. Everything else a DNS firewall
    /// cannot honour (paths, regexes, cosmetic rules, wildcards inside a name,
    /// content-type modifiers) is skipped and counted, never guessed at.
    static func adblockLine(_ line: Span<UInt8>, _ number: Int, _ report: inout ListReport, _ add: Sink) -> SkipReason? {
        // The common case, `||name^`, needs no string at all.
        var start = 0
        let exception = line.count > 2 && line[0] == UInt8(ascii: "@") && line[1] == UInt8(ascii: "@")
        if exception { start = 2 }
        if line.count >= start + 4, line[start] == UInt8(ascii: "|"), line[start + 1] == UInt8(ascii: "|"),
           line[line.count - 1] == UInt8(ascii: "^") {
            let name = line.extracting((start + 2)..<(line.count - 1))
            if let key = NameKey(text: name) {
                add(key, EntryInfo(kind: .subtree, line: number, exception: exception))
                report.entries += 1
                return nil
            }
        }
        var rule = Substring(text(line.extracting(start...)))
        if rule.contains("##") || rule.contains("#@#") || rule.contains("#?#") || rule.contains("#$#") {
            return SkipReason("cosmetic rule", "cosmetic (element hiding) rule: no meaning for DNS", unsupported: true)
        }
        if rule.hasPrefix("/") {
            return SkipReason("regular expression", "regular-expression rule is not supported", unsupported: true)
        }
        if let dollar = rule.firstIndex(of: "$") {
            let modifiers = rule[rule.index(after: dollar)...].split(separator: ",")
            guard modifiers.allSatisfy({ harmlessAdblockModifiers.contains($0) }) else {
                return SkipReason("modifiers", "rule with modifiers a DNS firewall cannot honour: $\(modifiers.joined(separator: ","))",
                                  unsupported: true)
            }
            rule = rule[..<dollar]
        }
        guard rule.hasPrefix("||"), rule.hasSuffix("^") else {
            return SkipReason("not a ||name^ rule", "only '||name^' and '@@||name^' rules are supported")
        }
        let name = rule.dropFirst(2).dropLast()
        if name.contains("/") || name.contains(":") { return SkipReason("path", "rule with a path or port", unsupported: true) }
        if name.contains("*") {
            return SkipReason("wildcard inside a name", "a '*' inside a name cannot be matched by suffix", unsupported: true)
        }
        guard let key = NameKey(text: name) else { return SkipReason("invalid name", "'\(name)' is not a valid domain name") }
        add(key, EntryInfo(kind: .subtree, line: number, exception: exception))
        report.entries += 1
        return nil
    }

    /// Lowercase wire form of a presentation name, or nil when it is not a name.
    public static func key(for text: some StringProtocol) -> [UInt8]? {
        NameKey(text: text)?.array
    }
}

extension Span where Element == UInt8 {
    /// A copy, for the rare paths that need a String.
    var bytesArray: [UInt8] { (0..<count).map { self[$0] } }
}
