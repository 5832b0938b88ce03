// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire

/// Every list entry of a policy in one open-addressing table keyed by the hash
/// of the lowercase wire name; the names themselves sit in one byte arena.
/// A lookup is one probe sequence per label boundary of the query name,
/// whatever the number of names.
///
/// Memory per distinct name: 8-byte slots at a load factor of at most 1/2
/// (8–16 bytes), the name in the arena (its length + 1), a 4-byte arena offset
/// and a 4-byte membership; line numbers (4 bytes) only when kept for `explain`.
struct NameTable: Sendable {
    /// One list's entry for a key.
    struct Member: Equatable {
        var list: Int
        var kind: EntryKind
        var exception: Bool
        /// Index into the policy's entry outcomes, or -1.
        var outcome: Int
        var line: Int

        /// kind (2 bits), exception (1), list index (10), entry outcome + 1 (18); bit 31 clear.
        var packed: UInt32 {
            UInt32(kind.rawValue) | (exception ? 4 : 0) | UInt32(list) << 3 | UInt32(outcome + 1) << 13
        }

        init(list: Int, kind: EntryKind, exception: Bool, outcome: Int, line: Int) {
            self.list = list
            self.kind = kind
            self.exception = exception
            self.outcome = outcome
            self.line = line
        }

        init(packed: UInt32, line: Int) {
            self.init(list: Int((packed >> 3) & 0x3ff), kind: EntryKind(rawValue: UInt8(packed & 3)) ?? .exact,
                      exception: packed & 4 != 0, outcome: Int((packed >> 13) & 0x3ffff) - 1, line: line)
        }
    }

    static let maximumLists = 1 << 10
    static let maximumOutcomes = (1 << 18) - 1
    /// Set in a key's membership word when its memberships live in `overflow`.
    static let overflowFlag: UInt32 = 1 << 31

    /// Fingerprint (high 32 bits of the hash) << 32 | key index + 1; 0 = empty.
    private var slots: [UInt64]
    private var mask: Int
    private var arena: [UInt8] = []
    /// Key `k` is `arena[keyOffsets[k]..<keyOffsets[k + 1]]`.
    private var keyOffsets: [UInt32] = [0]
    /// One packed membership per key, or `overflowFlag | index into overflow`.
    private var memberships: [UInt32] = []
    /// Keys in more than one list (or with more than one kind): all their memberships.
    private var overflow: [[UInt32]] = []
    /// Source line per key (and per overflow membership), when kept.
    private var lines: [UInt32]?
    private var overflowLines: [[UInt32]] = []
    /// The most labels any key has: a suffix with more cannot be a key, so a
    /// long name is probed only at its last labels.
    private(set) var maximumKeyLabels = 0

    init(expectedKeys: Int, expectedArenaBytes: Int, keepLines: Bool) {
        var capacity = 16
        while capacity < expectedKeys * 2 { capacity <<= 1 }
        slots = Array(repeating: 0, count: capacity)
        mask = capacity - 1
        arena.reserveCapacity(expectedArenaBytes)
        keyOffsets.reserveCapacity(expectedKeys + 1)
        memberships.reserveCapacity(expectedKeys)
        lines = keepLines ? [] : nil
        lines?.reserveCapacity(expectedKeys)
    }

    var keyCount: Int { memberships.count }

    /// Adds one entry; false when the same (name, list, kind, exception) was
    /// already there (its first line is kept).
    @discardableResult
    mutating func insert(_ key: borrowing NameKey, _ member: Member) -> Bool {
        if keyCount * 2 >= slots.count { grow() }
        let fingerprint = key.hash >> 32
        var slot = Int(truncatingIfNeeded: key.hash) & mask
        while true {  // load factor < 1/2: an empty slot is always reached
            let stored = slots[slot]
            if stored == 0 { break }
            if stored >> 32 == fingerprint, keyEquals(Int(truncatingIfNeeded: stored & 0xffff_ffff) - 1, key) {
                return addMembership(toKey: Int(truncatingIfNeeded: stored & 0xffff_ffff) - 1, member)
            }
            slot = (slot + 1) & mask
        }
        var labels = 0
        var offset = 0
        while offset < key.count {  // length-prefixed labels: each step advances
            labels += 1
            offset += 1 + Int(key[offset])
        }
        maximumKeyLabels = max(maximumKeyLabels, labels)
        for index in 0..<key.count { arena.append(key[index]) }
        keyOffsets.append(UInt32(arena.count))
        memberships.append(member.packed)
        lines?.append(UInt32(clamping: member.line))
        slots[slot] = fingerprint << 32 | UInt64(keyCount)
        return true
    }

    private func keyEquals(_ keyIndex: Int, _ key: borrowing NameKey) -> Bool {
        let start = Int(keyOffsets[keyIndex])
        guard Int(keyOffsets[keyIndex + 1]) - start == key.count else { return false }
        for index in 0..<key.count where arena[start + index] != key[index] { return false }
        return true
    }

    private mutating func addMembership(toKey key: Int, _ member: Member) -> Bool {
        let word = memberships[key]
        let identity: (UInt32) -> UInt32 = { $0 & 0x1fff }  // kind, exception and list
        if word & Self.overflowFlag == 0 {
            if identity(word) == identity(member.packed) { return false }
            overflow.append([word, member.packed])
            overflowLines.append([lines?[key] ?? 0, UInt32(clamping: member.line)])
            memberships[key] = Self.overflowFlag | UInt32(overflow.count - 1)
        } else {
            let index = Int(word & ~Self.overflowFlag)
            if overflow[index].contains(where: { identity($0) == identity(member.packed) }) { return false }
            overflow[index].append(member.packed)
            overflowLines[index].append(UInt32(clamping: member.line))
        }
        return true
    }

    /// Doubles the slots; fingerprints hold only the hash's high half, so the
    /// slot of each key comes from its hash again.
    private mutating func grow() {
        slots = Array(repeating: 0, count: slots.count * 2)
        mask = slots.count - 1
        for key in 0..<keyCount {
            var hash = NameHash()
            for offset in (Int(keyOffsets[key])..<Int(keyOffsets[key + 1])).reversed() { hash.add(arena[offset]) }
            var slot = Int(truncatingIfNeeded: hash.value) & mask
            while slots[slot] != 0 { slot = (slot + 1) & mask }
            slots[slot] = (hash.value >> 32) << 32 | UInt64(key + 1)
        }
    }

    /// The key equal to the suffix of `name` from label `label`, if any;
    /// `hashes` are `name.suffixHashes()` (from `label` or earlier).
    @inline(__always)
    func find(_ name: DomainName, fromLabel label: Int, hashes: borrowing SuffixHashes) -> Int? {
        find(name, fromLabel: label, hash: hashes[label])
    }

    /// The key equal to the suffix of `name` from label `label`, whose hash is `hash`, if any.
    @inline(__always)
    func find(_ name: DomainName, fromLabel label: Int, hash: UInt64) -> Int? {
        let fingerprint = hash >> 32
        var slot = Int(truncatingIfNeeded: hash) & mask
        for _ in 0...mask {  // load factor ≤ 1/2, so an empty slot ends this early
            let stored = slots[slot]
            if stored == 0 { return nil }
            if stored >> 32 == fingerprint {
                let key = Int(truncatingIfNeeded: stored & 0xffff_ffff) - 1
                let start = Int(keyOffsets[key])
                let end = Int(keyOffsets[key + 1])
                if name.suffix(fromLabel: label, equals: arena.span.extracting(start..<end)) { return key }
            }
            slot = (slot + 1) & mask
        }
        return nil
    }

    /// Calls `body` with each membership of `key` (packed, see `Member`) until it returns false.
    @inline(__always)
    func forEachMembership(ofKey key: Int, _ body: (UInt32) -> Bool) {
        let word = memberships[key]
        if word & Self.overflowFlag == 0 {
            _ = body(word)
            return
        }
        for packed in overflow[Int(word & ~Self.overflowFlag)] where !body(packed) { return }
    }

    /// Every membership of `key` with its line (0 when lines are not kept).
    func members(ofKey key: Int) -> [Member] {
        let word = memberships[key]
        if word & Self.overflowFlag == 0 { return [Member(packed: word, line: Int(lines?[key] ?? 0))] }
        let index = Int(word & ~Self.overflowFlag)
        return zip(overflow[index], overflowLines[index]).map { Member(packed: $0, line: Int($1)) }
    }

    /// Whether an entry of `kind` found at label `label` of the name matches it.
    @inline(__always)
    static func matches(_ kind: EntryKind, atLabel label: Int) -> Bool {
        label == 0 ? kind != .wildcard : kind != .exact
    }

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

    /// Gives back what `reserveCapacity` over-estimated.
    mutating func shrinkToFit() {
        if arena.capacity > arena.count + 4096 { arena = Array(arena) }
        if keyOffsets.capacity > keyOffsets.count + 1024 { keyOffsets = Array(keyOffsets) }
        if memberships.capacity > memberships.count + 1024 { memberships = Array(memberships) }
        if let kept = lines, kept.capacity > kept.count + 1024 { lines = Array(kept) }
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

    public var isEmpty: Bool {
        for index in 0..<8 where words[index] != 0 { return false }
        return true
    }

    /// Whether some list is in both sets.
    @inline(__always)
    public func intersects(_ other: ListMatches) -> Bool {
        for index in 0..<8 where words[index] & other.words[index] != 0 { return true }
        return false
    }

    /// Calls `body` with each list, in ascending order.
    @inline(__always)
    public func forEach(_ body: (Int) -> Void) {
        for index in 0..<8 {
            var word = words[index]
            while word != 0 {  // one round per set bit
                body(index << 6 | word.trailingZeroBitCount)
                word &= word - 1
            }
        }
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
