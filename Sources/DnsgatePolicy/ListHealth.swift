// SPDX-License-Identifier: GPL-2.0-or-later

/// Signs that a list file or download is no longer a list: binary content, no
/// entry at all, or mostly lines of no list syntax. Each is an error, so that
/// `check` fails and a reload keeps the running policy, where loading it would
/// quietly empty the list (a truncated file, an error page, a disk full of
/// garbage) and let everything it blocked through. `allow_empty: true` says an
/// empty list is meant. Used by the compiler (files and cached copies) and by
/// the feed thread (a download that collapsed never replaces the cached copy).
public enum ListHealth {
    /// The first line of `bytes` holding a NUL byte or bytes that are not
    /// UTF-8, and which of the two; nil for text.
    public static func firstBinaryLine(_ bytes: Span<UInt8>) -> (line: Int, found: String)? {
        var line = 1
        var lineStart = 0
        var lineHasHighBytes = false
        var index = 0
        while index < bytes.count {  // one byte a turn
            let byte = bytes[index]
            if byte == 0 { return (line, "a NUL byte") }
            if byte >= 0x80 { lineHasHighBytes = true }
            if byte == UInt8(ascii: "\n") {
                if lineHasHighBytes, !isUTF8(bytes.extracting(lineStart..<index)) { return (line, "bytes that are not UTF-8") }
                line += 1
                lineStart = index + 1
                lineHasHighBytes = false
            }
            index += 1
        }
        if lineHasHighBytes, !isUTF8(bytes.extracting(lineStart..<bytes.count)) { return (line, "bytes that are not UTF-8") }
        return nil
    }

    /// The error for a list file (or copy of a download) with binary content.
    /// `kind` names the list in the message ("ip list" for an address list).
    public static func binaryContent(_ bytes: Span<UInt8>, list: String, file: String,
                                     kind: String = "domain list") -> Diagnostic? {
        guard let (line, found) = firstBinaryLine(bytes) else { return nil }
        return Diagnostic(.error, file: file, line: line,
                          "\(kind) '\(list)': binary content (\(found)): this is not a text list; refused")
    }

    /// Why a list that was read collapsed, or nil when it did not: no entry at
    /// all, or more than half of its lines unreadable in its format. Rules a
    /// DNS firewall cannot honour (adblock cosmetic rules, RPZ IP triggers)
    /// are not unreadable: a list may hold many of them. Address lists are
    /// judged alike (`kind` names the list in the message: "ip list").
    public static func collapse(_ report: ListReport, list: String, file: String, allowEmpty: Bool,
                                kind: String = "domain list") -> Diagnostic? {
        guard !allowEmpty else { return nil }
        let hint = "set allow_empty: true on the list if this is meant"
        if report.entries == 0 {
            if report.lines == 0 {
                return Diagnostic(.error, file: file, line: 0,
                                  "\(kind) '\(list)': no entries (the file is empty or only comments); \(hint)")
            }
            return Diagnostic(.error, file: file, line: report.firstUnreadableLine,
                              "\(kind) '\(list)': no usable entries in \(report.lines) lines (\(report.skippedLines) skipped); \(hint)")
        }
        if report.unreadableLines * 2 > report.lines {
            return Diagnostic(.error, file: file, line: report.firstUnreadableLine,
                              "\(kind) '\(list)': \(report.unreadableLines) of its \(report.lines) lines are not \(report.format.rawValue) syntax, this one first: is it still a list?; \(hint)")
        }
        return nil
    }

    /// Whether `bytes` are well-formed UTF-8 (the standard library's validator).
    static func isUTF8(_ bytes: Span<UInt8>) -> Bool {
        bytes.withUnsafeBufferPointer { String(validating: $0, as: UTF8.self) != nil }
    }
}
