// SPDX-License-Identifier: GPL-2.0-or-later

/// A domain name as a list of labels, for the zone-transfer path (off the
/// packet path: it may allocate). Compared without regard to ASCII case.
public struct WireName: Hashable, Sendable, CustomStringConvertible {
    public private(set) var labels: [[UInt8]]

    public static let root = WireName(labels: [])

    init(labels: [[UInt8]]) { self.labels = labels }

    /// Reads presentation text (`rpz.example.` or `rpz.example`: always
    /// absolute here). `\.` and `\DDD` escapes are understood.
    public init?(_ text: String) {
        if text == "." {
            labels = []
            return
        }
        var labels: [[UInt8]] = []
        var label: [UInt8] = []
        let bytes = Array(text.utf8)
        var index = 0
        while index < bytes.count {  // each turn consumes at least one byte
            let byte = bytes[index]
            if byte == UInt8(ascii: "\\") {
                guard index + 1 < bytes.count else { return nil }
                if index + 3 < bytes.count, let value = UInt16(String(decoding: bytes[(index + 1)...(index + 3)], as: UTF8.self)),
                   value <= 255, bytes[(index + 1)...(index + 3)].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
                    label.append(UInt8(value))
                    index += 4
                } else {
                    label.append(bytes[index + 1])
                    index += 2
                }
                continue
            }
            if byte == UInt8(ascii: ".") {
                guard !label.isEmpty else { return nil }
                labels.append(label)
                label = []
            } else {
                label.append(byte)
            }
            index += 1
        }
        if !label.isEmpty { labels.append(label) }
        guard labels.allSatisfy({ $0.count <= 63 }), labels.reduce(1, { $0 + $1.count + 1 }) <= 255 else { return nil }
        self.labels = labels
    }

    /// Wire form, uncompressed, with the case as given.
    public var wire: [UInt8] {
        var bytes: [UInt8] = []
        for label in labels {
            bytes.append(UInt8(label.count))
            bytes += label
        }
        bytes.append(0)
        return bytes
    }

    /// Wire form in lowercase: what TSIG digests and comparisons use.
    public var canonicalWire: [UInt8] { lowercased.wire }

    public var lowercased: WireName {
        WireName(labels: labels.map { $0.map { $0 >= 0x41 && $0 <= 0x5a ? $0 | 0x20 : $0 } })
    }

    /// Presentation form, absolute (trailing dot), with RFC 1035 escapes.
    public var description: String {
        if labels.isEmpty { return "." }
        var text = ""
        for label in labels {
            for byte in label {
                switch byte {
                case UInt8(ascii: "."), UInt8(ascii: "\\"):
                    text += "\\" + String(UnicodeScalar(byte))
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                     UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "*"),
                     UInt8(ascii: "/"), UInt8(ascii: "+"), UInt8(ascii: "="):
                    text.unicodeScalars.append(UnicodeScalar(byte))
                default:
                    // Anything a zone-file reader could take for syntax (`;`, `(`, quotes, blanks).
                    let digits = String(byte)
                    text += "\\" + String(repeating: "0", count: 3 - digits.count) + digits
                }
            }
            text += "."
        }
        return text
    }

    public static func == (lhs: WireName, rhs: WireName) -> Bool { lhs.lowercased.labels == rhs.lowercased.labels }
    public func hash(into hasher: inout Hasher) { hasher.combine(lowercased.labels) }

    /// Whether this name is `other` or below it.
    public func isSubdomain(of other: WireName) -> Bool {
        guard labels.count >= other.labels.count else { return false }
        return WireName(labels: Array(labels.suffix(other.labels.count))) == other
    }
}
