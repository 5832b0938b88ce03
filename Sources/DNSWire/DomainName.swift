// SPDX-License-Identifier: GPL-2.0-or-later

/// A domain name in uncompressed wire form (length-prefixed labels, without the
/// terminating root label), held inline: decoding one never touches the heap.
///
/// Case is kept as received; comparisons and hashes fold ASCII case.
public struct DomainName: Sendable {
    /// RFC 1035: 255 octets including the root label's zero byte.
    public static let maximumWireLength = 255
    public static let maximumLabelLength = 63
    static let maximumLabels = 127

    // Read by inlinable accessors: a call across modules for each byte (and
    // the copy of the storage it made) cost the detectors most of their time.
    @usableFromInline var storage = InlineArray<254, UInt8>(repeating: 0)
    @usableFromInline var starts = InlineArray<127, UInt8>(repeating: 0)
    /// Bytes used in `storage` (excludes the root label).
    public private(set) var length = 0
    public private(set) var labelCount = 0

    public init() {}

    /// The wire length including the root label's zero byte.
    public var wireLength: Int { length + 1 }

    /// Appends one label; false when it would break a bound of RFC 1035.
    mutating func appendLabel(_ bytes: Span<UInt8>) -> Bool {
        guard bytes.count >= 1, bytes.count <= Self.maximumLabelLength,
              length + 1 + bytes.count <= 254, labelCount < Self.maximumLabels else { return false }
        starts[labelCount] = UInt8(truncatingIfNeeded: length)
        labelCount += 1
        storage[length] = UInt8(bytes.count)
        for index in 0..<bytes.count { storage[length + 1 + index] = bytes[index] }
        length += 1 + bytes.count
        return true
    }

    /// Byte offset (in wire form) at which label `index` starts; `labelCount` gives `length`.
    @inlinable @inline(__always)
    public func labelStart(_ index: Int) -> Int {
        index < labelCount ? Int(starts[index]) : length
    }

    /// The byte at `offset` of the wire form (length octets included).
    @inlinable @inline(__always)
    public func wireByte(_ offset: Int) -> UInt8 { storage.span[offset] }

    /// Hash of the wire suffix beginning at label `index`, with ASCII case folded.
    /// `index == labelCount` is the root (empty suffix).
    @inlinable @inline(__always)
    public func suffixHash(fromLabel index: Int) -> UInt64 {
        var hash = NameHash()
        for offset in (labelStart(index)..<length).reversed() { hash.add(lowercased(storage[offset])) }
        return hash.value
    }

    /// The hash of every suffix that starts at label `first` or later, in one
    /// pass over the name from its end: a suffix's hash continues the hash of
    /// the suffix one label shorter (`NameHash` reads a name backwards), so the
    /// cost is linear in the bytes hashed, and a lookup that can skip a long
    /// name's first labels never reads them. Entries before `first` are 0.
    @inlinable @inline(__always)
    public func suffixHashes(from first: Int = 0) -> SuffixHashes {
        var result = SuffixHashes()
        var hash = NameHash()
        result.values[labelCount] = hash.value
        var label = labelCount - 1
        while label >= max(first, 0) {  // labelCount ≤ 127
            extendSuffixHash(&hash, withLabel: label)
            result.values[label] = hash.value
            label -= 1
        }
        return result
    }

    /// Turns the hash of the suffix after label `label` into the hash of the
    /// suffix from it, by hashing that label's bytes (length first, last byte
    /// first, case folded).
    @inlinable @inline(__always)
    public func extendSuffixHash(_ hash: inout NameHash, withLabel label: Int) {
        var offset = labelStart(label + 1) - 1
        while offset >= labelStart(label) {
            hash.add(lowercased(storage[offset]))
            offset -= 1
        }
    }

    /// True when the suffix from label `index` equals `key` (lowercase wire form).
    @inlinable @inline(__always)
    public func suffix(fromLabel index: Int, equals key: Span<UInt8>) -> Bool {
        let start = labelStart(index)
        guard length - start == key.count else { return false }
        for offset in 0..<key.count where lowercased(storage[start + offset]) != key[offset] { return false }
        return true
    }

    /// Lowercase wire form, for keys and for diagnostics.
    public var lowercasedWire: [UInt8] { (0..<length).map { lowercased(storage[$0]) } }

    /// `text` with ASCII letters lowercased.
    public var lowercasedText: String { text.lowercased() }

    /// Presentation form without the trailing dot, case as received; unusual
    /// bytes are escaped as in RFC 4343 (`\.`, `\DDD`).
    public var text: String { text(fromLabel: 0) }

    /// `text` of the suffix that starts at label `first` (the root: `.`).
    public func text(fromLabel first: Int) -> String {
        if labelCount <= first { return "." }
        var result = ""
        for label in max(first, 0)..<labelCount {
            if label > first { result.append(".") }
            let start = labelStart(label) + 1
            for offset in start..<labelStart(label + 1) {
                let byte = storage[offset]
                switch byte {
                case UInt8(ascii: "."), UInt8(ascii: "\\"):
                    result.append("\\")
                    result.append(Character(Unicode.Scalar(byte)))
                case 0x21...0x7e:
                    result.append(Character(Unicode.Scalar(byte)))
                default:
                    result.append("\\" + String(repeating: "0", count: byte < 10 ? 2 : (byte < 100 ? 1 : 0)) + String(byte))
                }
            }
        }
        return result
    }

    /// Parses presentation text (`www.Example.com`, trailing dot optional).
    /// Accepts any printable label byte except `.`; the root is `.` or empty.
    public init?(text: some StringProtocol) {
        self.init()
        var trimmed = Substring(text)
        if trimmed.hasSuffix(".") { trimmed = trimmed.dropLast() }
        if trimmed.isEmpty { return }
        for label in trimmed.split(separator: ".", omittingEmptySubsequences: false) {
            let bytes = Array(label.utf8)
            guard bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7f }), appendLabel(bytes.span) else { return nil }
        }
    }

    /// A name as raw bytes split at every `.`, whatever the other bytes are
    /// (8-bit, `=`, `/`): how a name arrives from a capture or a log, where
    /// a query's labels could hold them. Nil when a label is empty or a bound
    /// of RFC 1035 is broken.
    public init?(rawText bytes: Span<UInt8>) {
        self.init()
        var end = bytes.count
        if end > 0, bytes[end - 1] == UInt8(ascii: ".") { end -= 1 }
        var start = 0
        while start < end {  // one label a turn; at most 127 labels fit
            var stop = start
            while stop < end, bytes[stop] != UInt8(ascii: ".") { stop += 1 }
            guard appendLabel(bytes.extracting(start..<stop)) else { return nil }
            start = stop + 1
            if start == end { return nil }  // an empty last label ("a..")
        }
    }
}

extension DomainName: Equatable {
    /// Names are equal when their wire forms match with ASCII case folded.
    public static func == (lhs: DomainName, rhs: DomainName) -> Bool {
        guard lhs.length == rhs.length, lhs.labelCount == rhs.labelCount else { return false }
        for offset in 0..<lhs.length where lowercased(lhs.storage[offset]) != lowercased(rhs.storage[offset]) {
            return false
        }
        return true
    }
}

extension DomainName: CustomStringConvertible {
    public var description: String { text }
}

@inlinable @inline(__always) @usableFromInline
func lowercased(_ byte: UInt8) -> UInt8 {
    byte &- 0x41 < 26 ? byte | 0x20 : byte
}

/// The hash of every suffix of one name, indexed by the label it starts at.
public struct SuffixHashes {
    @usableFromInline var values = InlineArray<128, UInt64>(repeating: 0)
    @inlinable @inline(__always)
    init() {}
    @inlinable @inline(__always)
    public subscript(label: Int) -> UInt64 { values[label] }
}

/// FNV-1a, 64 bit: the hash of policy keys and query-name suffixes. Both sides
/// must use this one function and feed it a name's wire bytes from the last
/// to the first, so that every suffix of a name is hashed in one pass.
public struct NameHash {
    @usableFromInline var state: UInt64 = 0xcbf2_9ce4_8422_2325
    @inlinable @inline(__always)
    public var value: UInt64 { state }
    @inlinable @inline(__always)
    public init() {}
    @inlinable @inline(__always)
    public mutating func add(_ byte: UInt8) {
        state = (state ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
    }
    /// Hash of lowercase wire bytes (a policy key), read backwards.
    public static func of(_ key: Span<UInt8>) -> UInt64 {
        var hash = NameHash()
        var index = key.count - 1
        while index >= 0 {
            hash.add(key[index])
            index -= 1
        }
        return hash.value
    }
}
