// SPDX-License-Identifier: GPL-2.0-or-later

/// A domain name in uncompressed wire form, for the zone-transfer path (off
/// the packet path: it may allocate, once per name). Compared without regard
/// to ASCII case.
public struct WireName: Hashable, Sendable, CustomStringConvertible {
    /// Length-prefixed labels and the root's zero byte. A length byte is at
    /// most 63, below every ASCII letter, so lowercasing the whole is safe.
    public private(set) var wire: [UInt8]

    init(wire: [UInt8]) { self.wire = wire }

    /// Reads presentation text (`rpz.example.` or `rpz.example`: always
    /// absolute here). `\.` and `\DDD` escapes are understood.
    public init?(_ text: String) {
        if text == "." {
            wire = [0]
            return
        }
        var wire: [UInt8] = []
        var label: [UInt8] = []
        func close() -> Bool {
            guard !label.isEmpty, label.count <= 63 else { return false }
            wire.append(UInt8(label.count))
            wire += label
            label = []
            return true
        }
        let bytes = Array(text.utf8)
        var index = 0
        while index < bytes.count {  // each turn consumes at least one byte
            let byte = bytes[index]
            if byte == UInt8(ascii: "\\") {
                guard index + 1 < bytes.count else { return nil }
                let digits = bytes[(index + 1)..<min(index + 4, bytes.count)]
                if digits.count == 3, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                   let value = UInt16(String(decoding: digits, as: UTF8.self)), value <= 255 {
                    label.append(UInt8(value))
                    index += 4
                } else {
                    label.append(bytes[index + 1])
                    index += 2
                }
                continue
            }
            if byte == UInt8(ascii: ".") {
                guard close() else { return nil }
            } else {
                label.append(byte)
            }
            index += 1
        }
        if !label.isEmpty, !close() { return nil }
        wire.append(0)
        guard wire.count <= 255 else { return nil }
        self.wire = wire
    }

    /// Wire form in lowercase: what TSIG digests and comparisons use.
    public var canonicalWire: [UInt8] { wire.map { $0 >= 0x41 && $0 <= 0x5a ? $0 | 0x20 : $0 } }

    public var lowercased: WireName { WireName(wire: canonicalWire) }

    /// Where each label starts, in order.
    private var labelStarts: [Int] {
        var starts: [Int] = []
        var offset = 0
        while offset < wire.count, wire[offset] != 0 {  // each turn moves past one label
            starts.append(offset)
            offset += 1 + Int(wire[offset])
        }
        return starts
    }

    public var labelCount: Int { labelStarts.count }

    /// Presentation form, absolute (trailing dot), with RFC 1035 escapes for
    /// anything a zone-file reader could take for syntax (`;`, `(`, quotes, blanks).
    public var description: String {
        if wire.count <= 1 { return "." }
        var text = ""
        for start in labelStarts {
            for byte in wire[(start + 1)...(start + Int(wire[start]))] {
                switch byte {
                case UInt8(ascii: "."), UInt8(ascii: "\\"):
                    text += "\\" + String(UnicodeScalar(byte))
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                     UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "*"),
                     UInt8(ascii: "/"), UInt8(ascii: "+"), UInt8(ascii: "="):
                    text.unicodeScalars.append(UnicodeScalar(byte))
                default:
                    text += "\\" + String(format3: byte)
                }
            }
            text += "."
        }
        return text
    }

    public static func == (lhs: WireName, rhs: WireName) -> Bool { lhs.canonicalWire == rhs.canonicalWire }
    public func hash(into hasher: inout Hasher) { hasher.combine(canonicalWire) }

    /// Whether this name is `other` or below it.
    public func isSubdomain(of other: WireName) -> Bool {
        let starts = labelStarts
        let depth = other.labelCount
        guard starts.count >= depth else { return false }
        let suffix = depth == starts.count ? 0 : starts[starts.count - depth]
        return WireName(wire: Array(wire[suffix...])) == other
    }
}
