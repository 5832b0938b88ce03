// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire

/// Reads an RPZ zone file (RFC 1035 master-file syntax) into list entries:
/// QNAME triggers with their own actions. Other triggers (client IP, response
/// IP, NSDNAME, NSIP) cannot be evaluated on a query and are reported with
/// their count; SOA and NS records are ignored.
enum RPZParser {
    static func parse(_ text: String, file: String, report list: inout ListReport, add: ListParser.Sink) {
        var origin: [String] = []
        var previousOwner: [String]? = nil
        for (number, record) in records(text) {
            list.lines += 1
            var fields = record.fields
            if fields.first == "$ORIGIN" {
                guard fields.count >= 2 else { skip(&list, "bad directive", "$ORIGIN needs a name", file, number); continue }
                origin = labels(fields[1], origin: origin)
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
            guard owner.count >= origin.count, Array(owner.suffix(origin.count)) == origin else {
                skip(&list, "outside the zone", "owner \(owner.joined(separator: ".")) is outside the zone", file, number)
                continue
            }
            var trigger = Array(owner.dropLast(origin.count))
            if let special = trigger.last(where: { ["rpz-client-ip", "rpz-ip", "rpz-nsdname", "rpz-nsip"].contains($0) }) {
                skip(&list, "\(special) trigger (unsupported)",
                     "\(special) trigger: only QNAME triggers can be decided on a query", file, number, unsupported: true)
                continue
            }
            if trigger.isEmpty { continue }  // other apex records
            var kind = EntryKind.exact
            if trigger.first == "*" {
                kind = .wildcard
                trigger.removeFirst()
            }
            guard let key = NameKey(text: trigger.joined(separator: ".")) else {
                skip(&list, "invalid name", "'\(trigger.joined(separator: "."))' is not a valid domain name", file, number)
                continue
            }
            guard let action = action(type: type, data: data) else {
                let what = type == "CNAME" ? "CNAME \(data.first ?? "")" : type
                skip(&list, "unsupported action", "RPZ action \(what) is not supported", file, number, unsupported: true)
                continue
            }
            add(key, EntryInfo(kind: kind, line: number, action: action))
            list.entries += 1
        }
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

    /// Absolute names end with a dot; `@` is the origin; others are relative to it.
    static func labels(_ name: String, origin: [String]) -> [String] {
        if name == "@" { return origin }
        if name.hasSuffix(".") { return name.dropLast().split(separator: ".").map { $0.lowercased() } }
        return name.split(separator: ".").map { $0.lowercased() } + origin
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
