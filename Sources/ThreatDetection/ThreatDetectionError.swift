// SPDX-License-Identifier: GPL-2.0-or-later
/// The one error type of this module: a model or suffix list that cannot be read.
public struct ThreatDetectionError: Error, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var message: String
    public init(file: String, line: Int, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }
    public var description: String { line > 0 ? "\(file):\(line): \(message)" : "\(file): \(message)" }
}

/// The lines of a model or suffix list, split on its bytes: splitting a large
/// String by Characters cost more than everything else a load does. A
/// trailing "\r" (a CRLF file) is dropped.
func textLines(_ text: String) -> [Substring] {
    text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { line in
        Substring(line.last == UInt8(ascii: "\r") ? line.dropLast() : line)
    }
}

/// A line's fields, separated by spaces, tabs or carriage returns (split on
/// bytes, for the same reason).
func textFields(_ line: Substring) -> [Substring] {
    line.utf8.split(whereSeparator: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") || $0 == UInt8(ascii: "\r") })
        .map { Substring($0) }
}
