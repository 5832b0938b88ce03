// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire

/// Reads an RPZ zone file (RFC 1035 master-file syntax). One walk over its
/// records (origin, owners, TTL and class, the trigger below the origin, its
/// action) serves two readers: QNAME triggers for a domain list (`parse`) and
/// rpz-ip triggers for an ip_list (`AddressListParser`). SOA and NS records
/// are ignored; triggers dnsgate cannot evaluate (client IP, NSDNAME, NSIP)
/// are reported with their count.
enum RPZParser {
    /// The kind of a trigger, named by the label that marks it (none: QNAME).
    enum TriggerKind: String {
        case qname = "QNAME"
        case clientIP = "rpz-client-ip"
        case responseIP = "rpz-ip"
        case nsdname = "rpz-nsdname"
        case nsip = "rpz-nsip"

        static let marked: [TriggerKind] = [.clientIP, .responseIP, .nsdname, .nsip]
    }

    /// One policy record of the kind a reader asked for.
    struct PolicyRecord {
        /// First line of the record (1-based).
        var line: Int
        /// The owner's labels below the origin, lowercased, before the label
        /// marking the trigger's kind. Empty labels (`a..b`) are kept so that
        /// a reader can refuse them.
        var trigger: [String]
        /// Labels between the kind's label and the origin (an rpz-ip trigger has none).
        var labelsAfterMark: [String]
        var type: String
        var data: [String]

        /// The action the record gives its trigger, or why it cannot be taken.
        func action() throws(ListParser.SkipReason) -> EntryAction {
            guard let action = RPZParser.action(type: type, data: data) else {
                let what = type == "CNAME" ? "CNAME \(data.first ?? "")" : type
                throw ListParser.SkipReason("unsupported action", "RPZ action \(what) is not supported", unsupported: true)
            }
            return action
        }
    }

    /// QNAME triggers, each with its own action: a domain list.
    static func parse(_ text: String, file: String, report list: inout ListReport, add: ListParser.Sink) {
        walk(text, file: file, reading: .qname, report: &list) { (record) throws(ListParser.SkipReason) in
            // An empty label is dropped, as it always was for domain lists.
            var trigger = record.trigger.filter { !$0.isEmpty }
            var kind = EntryKind.exact
            if trigger.first == "*" {
                kind = .wildcard
                trigger.removeFirst()
            }
            guard let key = NameKey(text: trigger.joined(separator: ".")) else {
                throw ListParser.SkipReason("invalid name", "'\(trigger.joined(separator: "."))' is not a valid domain name")
            }
            add(key, EntryInfo(kind: kind, line: record.line, action: try record.action()))
        }
    }

    /// Walks the zone's records in file order (each counted in `lines`) and
    /// hands every trigger of kind `reading` to `visit`: an entry when it
    /// returns, a skipped line when it throws. Apex records are no triggers.
    /// QNAME triggers are ignored when reading another kind (they are a domain
    /// list's, read from the same file); the other kinds are skipped and
    /// reported as unsupported. Bounded by the text's lines.
    static func walk(_ text: String, file: String, reading: TriggerKind, report list: inout ListReport,
                     _ visit: (PolicyRecord) throws(ListParser.SkipReason) -> Void) {
        var origin: [String] = []
        var previousOwner: [String]? = nil
        for (number, record) in records(text) {
            list.lines += 1
            var fields = record.fields
            if fields.first == "$ORIGIN" {
                guard fields.count >= 2 else { skip(&list, "bad directive", "$ORIGIN needs a name", file, number); continue }
                origin = labels(fields[1], origin: origin).filter { !$0.isEmpty }
                continue
            }
            if fields.first?.hasPrefix("$") == true { continue }  // $TTL, $INCLUDE (not followed)
            let owner: [String]
            if record.startsWithBlank {
                guard let previous = previousOwner else { skip(&list, "bad record", "record without an owner", file, number); continue }
                owner = previous
            } else {
                owner = labels(fields.removeFirst(), origin: origin)
            }
            previousOwner = owner
            // Optional TTL and class, in either order.
            for _ in 0..<2 {
                if let first = fields.first, first.allSatisfy(\.isNumber) || ttlPattern(first) || ["IN", "CH", "HS"].contains(first.uppercased()) {
                    fields.removeFirst()
                }
            }
            guard let type = fields.first?.uppercased() else { skip(&list, "bad record", "record without a type", file, number); continue }
            let data = Array(fields.dropFirst())
            if type == "SOA" || type == "NS" { continue }
            // The trigger is the owner below the zone's origin.
            guard let trigger = labels(of: owner, below: origin) else {
                skip(&list, "outside the zone", "owner \(owner.joined(separator: ".")) is outside the zone", file, number)
                continue
            }
            let mark = trigger.lastIndex { label in TriggerKind.marked.contains { $0.rawValue == label } }
            let kind = mark.flatMap { TriggerKind(rawValue: trigger[$0]) } ?? .qname
            if kind == .qname, trigger.allSatisfy(\.isEmpty) { continue }  // other apex records
            guard kind == reading else {
                if kind == .qname { continue }
                skip(&list, "\(kind.rawValue) trigger (unsupported)", unsupportedMessage(kind, reading: reading), file, number,
                     unsupported: true)
                continue
            }
            let policyRecord = PolicyRecord(
                line: number, trigger: Array(trigger[..<(mark ?? trigger.endIndex)]),
                labelsAfterMark: mark.map { Array(trigger[($0 + 1)...]) } ?? [], type: type, data: data)
            do throws(ListParser.SkipReason) {
                try visit(policyRecord)
                list.entries += 1
            } catch {
                ListParser.skip(&list, error, file: file, line: number)
            }
        }
    }

    /// Why a trigger of `kind` is skipped by the reader of `reading`.
    static func unsupportedMessage(_ kind: TriggerKind, reading: TriggerKind) -> String {
        switch (kind, reading) {
        case (.responseIP, .qname):
            return "rpz-ip trigger: read when the file is used as an ip_list (answer addresses), not as a domain list"
        case (_, .qname):
            return "\(kind.rawValue) trigger: only QNAME triggers can be decided on a query"
        default:
            return "\(kind.rawValue) trigger: an ip_list reads only rpz-ip triggers (QNAME triggers make a domain list)"
        }
    }

    /// The owner's labels below `origin`, or nil when it is outside the zone.
    /// Empty labels match nothing and stay in the result.
    static func labels(of owner: [String], below origin: [String]) -> [String]? {
        var end = owner.count
        for label in origin.reversed() {  // each turn matches one label of the origin
            while end > 0, owner[end - 1].isEmpty { end -= 1 }
            guard end > 0, owner[end - 1] == label else { return nil }
            end -= 1
        }
        return Array(owner[..<end])
    }

    /// The action an RPZ record gives its trigger.
    static func action(type: String, data: [String]) -> EntryAction? {
        guard let target = data.first else { return nil }
        switch type {
        case "CNAME":
            switch target.lowercased() {
            case ".": return .nxdomain
            case "*.": return .nodata
            case "rpz-passthru.": return .passthru
            case "rpz-drop.": return .drop
            case "rpz-tcp-only.": return nil
            default:
                guard target.hasSuffix("."), let name = DomainName(text: target), name.labelCount > 0 else { return nil }
                return .override(OverrideRecord(type: .cname, ttl: 300, data: name.lowercasedWire + [0]))
            }
        case "A":
            guard let address = IPAddress(target), address.isIPv4 else { return nil }
            return .override(OverrideRecord(type: .a, ttl: 300, data: address.bytes))
        case "AAAA":
            guard let address = IPAddress(target), !address.isIPv4 else { return nil }
            return .override(OverrideRecord(type: .aaaa, ttl: 300, data: address.bytes))
        default:
            return nil
        }
    }

    static func ttlPattern(_ field: String) -> Bool {
        // 2h, 15m, 1w3d…
        !field.isEmpty && field.first!.isNumber && field.allSatisfy { $0.isNumber || "smhdwSMHDW".contains($0) }
    }

    /// Absolute names end with a dot; `@` is the origin; others are relative
    /// to it. Empty labels (`a..b`) are kept: `.` alone is the root.
    static func labels(_ name: String, origin: [String]) -> [String] {
        if name == "@" { return origin }
        if name.hasSuffix(".") {
            let body = name.dropLast()
            return body.isEmpty ? [] : body.split(separator: ".", omittingEmptySubsequences: false).map { $0.lowercased() }
        }
        return name.split(separator: ".", omittingEmptySubsequences: false).map { $0.lowercased() } + origin
    }

    static func skip(_ list: inout ListReport, _ category: String, _ message: String, _ file: String, _ line: Int,
                     unsupported: Bool = false) {
        ListParser.skip(&list, ListParser.SkipReason(category, message, unsupported: unsupported), file: file, line: line)
    }

    struct Record {
        var fields: [String]
        var startsWithBlank: Bool
    }

    /// Logical records with their first line: comments (`;`) removed, and
    /// parenthesised continuations joined.
    static func records(_ text: String) -> [(Int, Record)] {
        var result: [(Int, Record)] = []
        var pending: Record? = nil
        var pendingLine = 0
        var depth = 0
        var number = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            number += 1
            var line = rawLine
            if let semicolon = line.firstIndex(of: ";") { line = line[..<semicolon] }
            let opens = line.filter { $0 == "(" }.count, closes = line.filter { $0 == ")" }.count
            let fields = line.split(whereSeparator: { $0.isWhitespace || $0 == "(" || $0 == ")" }).map(String.init)
            if depth > 0, var record = pending {
                record.fields += fields
                pending = record
            } else if !fields.isEmpty {
                pending = Record(fields: fields, startsWithBlank: line.first?.isWhitespace == true)
                pendingLine = number
            }
            depth = max(0, depth + opens - closes)
            if depth == 0, let record = pending {
                result.append((pendingLine, record))
                pending = nil
            }
        }
        if let record = pending { result.append((pendingLine, record)) }
        return result
    }
}
