// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire

/// Every list entry of a policy in one open-addressing table keyed by the hash
/// of the lowercase wire name; the names themselves sit in one byte arena.
/// A lookup is one probe sequence per label boundary of the query name, whatever
/// the number of names.
struct NameTable: Sendable {
    /// One list's entry for a key, as given to `init`.
    struct Member {
        var list: Int
        var kind: EntryKind
        var exception: Bool
        /// Index into the policy's entry outcomes, or -1.
        var outcome: Int
        var line: Int
    }

    /// A key's list membership packed in 32 bits: kind (2), exception (1),
    /// list index (10), entry outcome + 1 (19; 0 = none).
    typealias Membership = UInt32
    static let maximumLists = 1 << 10
    static let maximumOutcomes = (1 << 19) - 1

    private var slotHashes: [UInt64]
    private var slotKeys: [UInt32]
    private var mask: Int
    private var arena: [UInt8] = []
    private var keyOffsets: [UInt32] = []
    /// Memberships of key `k` are `memberships[membershipStarts[k]..<membershipStarts[k + 1]]`.
    private var membershipStarts: [UInt32] = [0]
    private var memberships: [Membership] = []
    /// Source line of each membership, for `explain`.
    private var membershipLines: [UInt32] = []

    /// `keyOffsets` ends with the arena length, one more than the keys.
    var keyCount: Int { keyOffsets.count - 1 }

    /// Builds the table from (key → entries) already grouped by key.
    init(grouped: [[UInt8]: [Member]]) {
        var capacity = 16
        while capacity < grouped.count * 2 { capacity <<= 1 }
        slotHashes = Array(repeating: 0, count: capacity)
        slotKeys = Array(repeating: 0, count: capacity)
        mask = capacity - 1
        arena.reserveCapacity(grouped.keys.reduce(0) { $0 + $1.count })
        for (key, entries) in grouped {
            let keyIndex = UInt32(keyOffsets.count)
            keyOffsets.append(UInt32(arena.count))
            arena.append(contentsOf: key)
            for entry in entries {
                let packed = UInt32(entry.kind.rawValue) | (entry.exception ? 4 : 0) | UInt32(entry.list) << 3
                    | UInt32(entry.outcome + 1) << 13
                memberships.append(packed)
                membershipLines.append(UInt32(clamping: entry.line))
            }
            membershipStarts.append(UInt32(memberships.count))
            var slot = Int(truncatingIfNeeded: Self.slotHash(key.span)) & mask
            while slotHashes[slot] != 0 { slot = (slot + 1) & mask }
            slotHashes[slot] = Self.slotHash(key.span)
            slotKeys[slot] = keyIndex
        }
        keyOffsets.append(UInt32(arena.count))
    }

    /// Zero marks an empty slot, so a real hash of zero is stored as one.
    @inline(__always)
    static func slotHash(_ key: Span<UInt8>) -> UInt64 { max(NameHash.of(key), 1) }

    /// The key equal to the suffix of `name` from label `label`, if any.
    @inline(__always)
    func find(_ name: DomainName, fromLabel label: Int) -> Int? {
        let hash = max(name.suffixHash(fromLabel: label), 1)
        var slot = Int(truncatingIfNeeded: hash) & mask
        for _ in 0...mask {  // load factor ≤ 1/2, so an empty slot ends this early
            let stored = slotHashes[slot]
            if stored == 0 { return nil }
            if stored == hash {
                let key = Int(slotKeys[slot])
                let start = Int(keyOffsets[key])
                let end = Int(keyOffsets[key + 1])
                if name.suffix(fromLabel: label, equals: arena.span.extracting(start..<end)) { return key }
            }
            slot = (slot + 1) & mask
        }
        return nil
    }

    @inline(__always)
    func membershipRange(ofKey key: Int) -> Range<Int> {
        Int(membershipStarts[key])..<Int(membershipStarts[key + 1])
    }

    @inline(__always)
    func membership(_ index: Int) -> (list: Int, kind: EntryKind, exception: Bool, outcome: Int) {
        let value = memberships[index]
        return (Int((value >> 3) & 0x3ff), EntryKind(rawValue: UInt8(value & 3)) ?? .exact, value & 4 != 0,
                Int(value >> 13) - 1)
    }

    /// Whether an entry of `kind` found at label `label` of the name matches it.
    @inline(__always)
    static func matches(_ kind: EntryKind, atLabel label: Int) -> Bool {
        label == 0 ? kind != .wildcard : kind != .exact
    }

    func line(ofMembership index: Int) -> Int { Int(membershipLines[index]) }

    /// Text form of key `key` (for explanations).
    func keyText(_ key: Int) -> String {
        let bytes = arena[Int(keyOffsets[key])..<Int(keyOffsets[key + 1])]
        var labels: [String] = []
        var offset = bytes.startIndex
        while offset < bytes.endIndex {
            let length = Int(bytes[offset])
            labels.append(String(decoding: bytes[(offset + 1)..<min(offset + 1 + length, bytes.endIndex)], as: UTF8.self))
            offset += 1 + length
        }
        return labels.joined(separator: ".")
    }

    /// Approximate heap bytes held, for stats.
    var memoryBytes: Int {
        slotHashes.count * 8 + slotKeys.count * 4 + arena.count + keyOffsets.count * 4
            + membershipStarts.count * 4 + memberships.count * 8
    }
}

/// Which lists contain a name: a fixed-size bit set, so matching never allocates.
public struct ListMatches: Sendable, Equatable {
    public static let capacity = 512
    private var words = InlineArray<8, UInt64>(repeating: 0)

    public init() {}

    @inline(__always)
    public mutating func insert(_ list: Int) {
        words[list >> 6] |= 1 << UInt64(list & 63)
    }

    @inline(__always)
    public func contains(_ list: Int) -> Bool {
        words[list >> 6] & (1 << UInt64(list & 63)) != 0
    }

    /// Removes every list in `other`.
    @inline(__always)
    public mutating func subtract(_ other: ListMatches) {
        for index in 0..<8 { words[index] &= ~other.words[index] }
    }

    public static func == (lhs: ListMatches, rhs: ListMatches) -> Bool {
        for index in 0..<8 where lhs.words[index] != rhs.words[index] { return false }
        return true
    }
}
