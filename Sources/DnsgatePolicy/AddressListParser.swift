// SPDX-License-Identifier: GPL-2.0-or-later
public import DNSWire

/// Reads an address list. Formats: `.addresses` — one IPv4/IPv6 address or CIDR prefix per line;
/// blank lines; `#` and `;` comments (whole-line and trailing); surrounding spaces/tabs; CRLF.
/// A CIDR with host bits set is accepted as its network (iptables does the same). `.rpz` — an RPZ
/// zone file whose `rpz-ip` triggers are read (owner `<prefixlen>.<reversed address>.rpz-ip`
/// below the zone origin, e.g. `32.1.2.0.192.rpz-ip` = 192.0.2.1/32, `24.0.2.0.192.rpz-ip` =
/// 192.0.2.0/24, IPv6 `48.zz.db8.2001.rpz-ip` = 2001:db8::/48 with reversed 16-bit words and `zz`
/// standing for the run of zero words), each with its own action (`CNAME .` NXDOMAIN, `CNAME *.`
/// NODATA, `CNAME rpz-passthru.` passthru, `CNAME rpz-drop.` drop, A/AAAA/CNAME name → override) —
/// exactly as the RPZ domain parser reads QNAME triggers (one shared record walk). QNAME triggers
/// in that file are ignored silently (they belong to a domain list read from the same file); other
/// triggers (rpz-client-ip, rpz-nsdname, rpz-nsip) are skipped and reported like the domain parser
/// does. As BIND does, an rpz-ip trigger needs a prefix length of 1–32 (IPv4) or 1–128 (IPv6) and
/// no address bits past it.
/// `.auto` picks `.rpz` when the file looks like a zone ($ORIGIN/$TTL, an SOA, or `rpz-ip` owners),
/// else `.addresses`; the domain formats (`domains`, `hosts`, `adblock`) read nothing and leave
/// every line unreadable, so that the list collapses loudly.
/// Every bad line is skipped with a Diagnostic naming the file and 1-based line (the first 50 of
/// them kept, the rest counted, as for domain lists); the rest loads.
///
/// `.addresses` is read from the bytes with no allocation per line (no String, no Foundation):
/// a million lines take tens of milliseconds. Every loop is bounded by the input's length.
public enum AddressListParser {
    /// Called for every entry in file order: the prefix (host bits cleared, an
    /// IPv4-mapped one left as IPv6: `AddressTable` normalises), its 1-based
    /// line, and its RPZ action (nil for `.addresses`).
    public typealias Sink = (_ prefix: IPNetwork, _ line: Int, _ action: EntryAction?) -> Void

    /// Reads a list file, calling `add` for every entry in file order; the
    /// report's `format` is the one read (`.auto` resolved).
    public static func read(_ bytes: Span<UInt8>, format requested: ListFormat, file: String, add: Sink) -> ListReport {
        let format = requested == .auto ? detectFormat(bytes) : requested
        var report = ListReport(format: format)
        switch format {
        case .addresses, .auto:
            readAddresses(bytes, file: file, report: &report, add: add)
        case .rpz:
            readZone(String(decoding: bytes.bytesArray, as: UTF8.self), file: file, report: &report, add: add)
        case .domains, .hosts, .adblock:
            ListParser.readLines(bytes, file: file, report: &report) { _, _, _ in
                ListParser.SkipReason("domain list format", "format '\(format.rawValue)' is a domain-list format; an ip_list reads 'addresses' or 'rpz'")
            }
        }
        return report
    }

    /// Reads the inline addresses of the config; `line` is where the list
    /// stands. A bad entry there is an error of the config.
    public static func readInline(_ entries: [String], file: String, line: Int, add: Sink) -> ListReport {
        var report = ListReport(format: .addresses)
        for entry in entries {
            let bytes = Array(entry.utf8)
            let span = bytes.span
            report.lines += 1
            do throws(ListParser.SkipReason) {
                add(try prefix(span.extracting(trimmed(span, 0..<span.count, stoppingAtComment: false))), line, nil)
                report.entries += 1
            } catch {
                report.skippedLines += 1
                report.skipReasons[error.category, default: 0] += 1
                report.unreadableLines += 1
                if report.firstUnreadableLine == 0 { report.firstUnreadableLine = line }
                report.diagnostics.append(Diagnostic(.error, file: file, line: line, error.message))
            }
        }
        return report
    }

    // MARK: format detection

    /// Looks at the first 100 meaningful lines: `$ORIGIN`/`$TTL`, an SOA record
    /// or an owner with an `rpz-ip` label make a zone; an address or prefix
    /// first, or nothing of either, an address list.
    static func detectFormat(_ bytes: Span<UInt8>) -> ListFormat {
        var examined = 0
        var start = 0
        while start < bytes.count, examined < 100 {  // each turn consumes a line
            var end = start
            while end < bytes.count, bytes[end] != UInt8(ascii: "\n") { end += 1 }
            // `#` and `;` comments are no sign of either format.
            let line = trimmed(bytes, start..<end, stoppingAtComment: true)
            start = end + 1
            if line.isEmpty { continue }
            examined += 1
            if hasPrefix(bytes, line, "$ORIGIN") || hasPrefix(bytes, line, "$TTL") { return .rpz }
            var first = true
            var cursor = line.lowerBound
            while let field = ListParser.nextField(bytes.extracting(cursor..<line.upperBound), from: 0) {  // a field a turn
                let range = (cursor + field.lowerBound)..<(cursor + field.upperBound)
                cursor = range.upperBound
                if isSOA(bytes, range) { return .rpz }
                if first, hasResponseIPLabel(bytes, range) { return .rpz }
                first = false
            }
            if (try? prefix(bytes.extracting(line))) != nil { return .addresses }
        }
        return .addresses
    }

    static func hasPrefix(_ bytes: Span<UInt8>, _ range: Range<Int>, _ text: String) -> Bool {
        let wanted = Array(text.utf8)
        guard range.count >= wanted.count else { return false }
        for offset in 0..<wanted.count where bytes[range.lowerBound + offset] != wanted[offset] { return false }
        return true
    }

    static func isSOA(_ bytes: Span<UInt8>, _ range: Range<Int>) -> Bool {
        range.count == 3 && bytes[range.lowerBound] | 0x20 == UInt8(ascii: "s")
            && bytes[range.lowerBound + 1] | 0x20 == UInt8(ascii: "o") && bytes[range.lowerBound + 2] | 0x20 == UInt8(ascii: "a")
    }

    /// Whether a name has a label `rpz-ip` (any case).
    static func hasResponseIPLabel(_ bytes: Span<UInt8>, _ range: Range<Int>) -> Bool {
        let label = Array("rpz-ip".utf8)
        var labelStart = range.lowerBound
        for index in range.lowerBound...range.upperBound {
            guard index == range.upperBound || bytes[index] == UInt8(ascii: ".") else { continue }
            if index - labelStart == label.count {
                var same = true
                for offset in 0..<label.count where bytes[labelStart + offset] | 0x20 != label[offset] { same = false }
                if same { return true }
            }
            labelStart = index + 1
        }
        return false
    }

    // MARK: .addresses

    /// One prefix a line, read straight from the bytes; `#` and `;` start a comment.
    static func readAddresses(_ bytes: Span<UInt8>, file: String, report: inout ListReport, add: Sink) {
        ListParser.readLines(bytes, file: file, trailingCommentBytes: [UInt8(ascii: "#"), UInt8(ascii: ";")],
                             report: &report) { line, number, report in
            do throws(ListParser.SkipReason) {
                add(try prefix(line), number, nil)
                report.entries += 1
                return nil
            } catch {
                return error
            }
        }
    }

    /// `range` without surrounding blanks (spaces, tabs, CR) and, when asked,
    /// without a `#` or `;` comment.
    @inline(__always)
    static func trimmed(_ bytes: Span<UInt8>, _ range: Range<Int>, stoppingAtComment: Bool) -> Range<Int> {
        var end = range.upperBound
        if stoppingAtComment {
            end = range.lowerBound
            while end < range.upperBound, bytes[end] != UInt8(ascii: "#"), bytes[end] != UInt8(ascii: ";") { end += 1 }
        }
        var start = range.lowerBound
        while start < end, ListParser.isSpace(bytes[start]) { start += 1 }
        while end > start, ListParser.isSpace(bytes[end - 1]) { end -= 1 }
        return start..<end
    }

    /// An IPv4 or IPv6 address, optionally with `/length`: the whole of `text`.
    static func prefix(_ text: Span<UInt8>) throws(ListParser.SkipReason) -> IPNetwork {
        var cursor = 0
        let parsed = looksLikeIPv6(text) ? ipv6(text, from: &cursor) : ipv4(text, from: &cursor).map { IPAddress.v4($0) }
        guard let address = parsed else { throw notAnAddress(text) }
        let maximum = address.isIPv4 ? 32 : 128
        var length = maximum
        if cursor < text.count {
            guard text[cursor] == UInt8(ascii: "/") else { throw notAnAddress(text) }
            cursor += 1
            guard cursor < text.count else { throw notAnAddress(text) }
            length = 0
            while cursor < text.count {  // a digit a turn
                let digit = text[cursor] &- UInt8(ascii: "0")
                guard digit < 10 else { throw notAnAddress(text) }
                length = min(length * 10 + Int(digit), 1000)  // capped: a run of digits cannot overflow
                cursor += 1
            }
            guard length <= maximum else {
                throw ListParser.SkipReason("prefix length", "'\(shown(text))': prefix length \(length < 1000 ? String(length) : "≥1000") is out of range (0–\(maximum) for \(address.isIPv4 ? "IPv4" : "IPv6"))")
            }
        }
        return IPNetwork(address: address, prefixLength: length)
    }

    @inline(never)
    static func notAnAddress(_ text: Span<UInt8>) -> ListParser.SkipReason {
        for index in 0..<text.count where ListParser.isSpace(text[index]) {
            return ListParser.SkipReason("several fields", "expected one address or prefix per line, found several fields: '\(shown(text))'")
        }
        return ListParser.SkipReason("not an address", "'\(shown(text))' is not an IPv4 or IPv6 address or prefix")
    }

    /// The text for a diagnostic, cut at 100 bytes.
    static func shown(_ text: Span<UInt8>) -> String {
        let cut = min(text.count, 100)
        return String(decoding: text.extracting(0..<cut).bytesArray, as: UTF8.self) + (cut < text.count ? "…" : "")
    }

    /// IPv6 when a `:` comes before the first `.` or `/` (an IPv4 tail comes after one).
    @inline(__always)
    static func looksLikeIPv6(_ text: Span<UInt8>) -> Bool {
        var index = 0
        while index < text.count {  // a byte a turn, stops at the first separator
            switch text[index] {
            case UInt8(ascii: ":"): return true
            case UInt8(ascii: "."), UInt8(ascii: "/"): return false
            default: index += 1
            }
        }
        return false
    }

    /// Dotted-quad IPv4 at `cursor`: four decimal octets of 1–3 digits, each at
    /// most 255. Moves `cursor` past it; nil (cursor anywhere) when it is not one.
    @inline(__always)
    static func ipv4(_ text: Span<UInt8>, from cursor: inout Int) -> UInt32? {
        var value: UInt32 = 0
        for octetIndex in 0..<4 {
            if octetIndex > 0 {
                guard cursor < text.count, text[cursor] == UInt8(ascii: ".") else { return nil }
                cursor += 1
            }
            var octet: UInt32 = 0
            var digits = 0
            while cursor < text.count, digits < 4 {  // at most 4 digits looked at
                let digit = text[cursor] &- UInt8(ascii: "0")
                guard digit < 10 else { break }
                octet = octet * 10 + UInt32(digit)
                digits += 1
                cursor += 1
            }
            guard digits >= 1, digits <= 3, octet <= 255 else { return nil }
            value = value << 8 | octet
        }
        return value
    }

    /// RFC 4291 text IPv6 at `cursor`: up to 8 groups of 1–4 hex digits, one
    /// `::` for a run of zero groups, an IPv4 tail for the last two. Stops at
    /// the end or a `/`; nil when it is not one.
    static func ipv6(_ text: Span<UInt8>, from cursor: inout Int) -> IPAddress? {
        var head: UInt128 = 0, headGroups = 0  // groups before `::` (all of them without one)
        var tail: UInt128 = 0, tailGroups = 0  // groups after it
        var gap = false
        @inline(__always) func atEnd() -> Bool { cursor == text.count || text[cursor] == UInt8(ascii: "/") }
        if cursor + 1 < text.count, text[cursor] == UInt8(ascii: ":"), text[cursor + 1] == UInt8(ascii: ":") {
            gap = true
            cursor += 2
        }
        if !(gap && atEnd()) {
            while headGroups + tailGroups < 8 {  // a group a turn, at most 8
                var group: UInt128 = 0
                var digits = 0
                var scan = cursor
                while scan < text.count, digits < 5, let nibble = hexValue(text[scan]) {  // at most 5 digits looked at
                    group = group << 4 | UInt128(nibble)
                    digits += 1
                    scan += 1
                }
                if scan < text.count, text[scan] == UInt8(ascii: ".") {
                    // An IPv4 tail: the last two groups.
                    guard headGroups + tailGroups <= 6, let v4 = ipv4(text, from: &cursor), atEnd() else { return nil }
                    if gap { tail = tail << 32 | UInt128(v4); tailGroups += 2 } else { head = head << 32 | UInt128(v4); headGroups += 2 }
                    break
                }
                guard digits >= 1, digits <= 4 else { return nil }
                cursor = scan
                if gap { tail = tail << 16 | group; tailGroups += 1 } else { head = head << 16 | group; headGroups += 1 }
                if atEnd() { break }
                guard text[cursor] == UInt8(ascii: ":") else { return nil }
                cursor += 1
                if cursor < text.count, text[cursor] == UInt8(ascii: ":") {
                    guard !gap else { return nil }
                    gap = true
                    cursor += 1
                    if atEnd() { break }
                } else if headGroups + tailGroups == 8 {
                    return nil  // a `:` after the eighth group
                }
            }
        }
        guard atEnd() else { return nil }
        let value: UInt128
        if gap {
            guard headGroups + tailGroups <= 7 else { return nil }
            value = head << (16 * (8 - headGroups)) | tail
        } else {
            guard headGroups == 8 else { return nil }
            value = head
        }
        return .v6(high: UInt64(truncatingIfNeeded: value >> 64), low: UInt64(truncatingIfNeeded: value))
    }

    @inline(__always)
    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    // MARK: .rpz

    /// The rpz-ip triggers of a zone, through the record walk the domain parser uses.
    static func readZone(_ text: String, file: String, report: inout ListReport, add: Sink) {
        RPZParser.walk(text, file: file, reading: .responseIP, report: &report) { (record) throws(ListParser.SkipReason) in
            add(try responseIPPrefix(record), record.line, try record.action())
        }
    }

    /// The prefix of an rpz-ip trigger: `<length>.<reversed address>`, IPv4 as
    /// four decimal octets, IPv6 as reversed 16-bit hex words where one `zz`
    /// stands for the run of zero words.
    static func responseIPPrefix(_ record: RPZParser.PolicyRecord) throws(ListParser.SkipReason) -> IPNetwork {
        let labels = record.trigger
        let owner = (labels + ["rpz-ip"] + record.labelsAfterMark).joined(separator: ".")
        func bad(_ why: String) -> ListParser.SkipReason {
            ListParser.SkipReason("bad rpz-ip trigger", "rpz-ip trigger '\(owner.prefix(100))': \(why)")
        }
        guard record.labelsAfterMark.isEmpty else { throw bad("the rpz-ip label must come right below the zone's origin") }
        guard labels.count >= 2 else { throw bad("expected <prefix length>.<reversed address>.rpz-ip") }
        guard labels.count <= 9 else { throw bad("\(labels.count - 1) address labels: an address has at most 8 (IPv6 words)") }
        guard !labels.contains("") else { throw bad("an empty label") }
        guard let length = number(labels[0], radix: 10, digits: 3) else {
            throw bad("prefix length '\(labels[0].prefix(20))' is not a number")
        }
        let words = labels.dropFirst()
        let address: IPAddress
        if words.count == 4, !words.contains("zz") {
            guard (1...32).contains(length) else { throw bad("prefix length \(length) is out of range (1–32 for IPv4)") }
            var value: UInt32 = 0
            for label in words.reversed() {
                guard let octet = number(label, radix: 10, digits: 3), octet <= 255 else {
                    throw bad("'\(label.prefix(20))' is not an IPv4 octet (0–255)")
                }
                value = value << 8 | UInt32(octet)
            }
            address = .v4(value)
        } else {
            guard (1...128).contains(length) else { throw bad("prefix length \(length) is out of range (1–128 for IPv6)") }
            var head: UInt128 = 0, headWords = 0, tail: UInt128 = 0, tailWords = 0
            var gap = false
            for label in words.reversed() {  // at most 8
                if label == "zz" {
                    guard !gap else { throw bad("two 'zz': one run of zero words at most") }
                    gap = true
                    continue
                }
                guard let word = number(label, radix: 16, digits: 4) else {
                    throw bad("'\(label.prefix(20))' is not a 16-bit hex word")
                }
                if gap { tail = tail << 16 | UInt128(word); tailWords += 1 } else { head = head << 16 | UInt128(word); headWords += 1 }
            }
            guard gap ? headWords + tailWords <= 7 : headWords == 8 else {
                throw bad("\(headWords + tailWords) words: an IPv6 address has 8, or fewer with one 'zz'")
            }
            let value = gap ? head << (16 * (8 - headWords)) | tail : head
            address = .v6(high: UInt64(truncatingIfNeeded: value >> 64), low: UInt64(truncatingIfNeeded: value))
        }
        let network = IPNetwork(address: address, prefixLength: length)
        guard network.address == address else {
            throw bad("address bits set past the prefix length \(length) (BIND refuses such a trigger too)")
        }
        return network
    }

    /// A label of 1 to `digits` digits in `radix` (10 or 16), nil otherwise.
    static func number(_ label: String, radix: Int, digits: Int) -> Int? {
        guard !label.isEmpty, label.utf8.count <= digits else { return nil }
        var value = 0
        for byte in label.utf8 {  // at most `digits`
            guard let digit = hexValue(byte), Int(digit) < radix else { return nil }
            value = value * radix + Int(digit)
        }
        return value
    }
}
