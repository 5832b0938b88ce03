// SPDX-License-Identifier: GPL-2.0-or-later
public import DNSWire

/// A longest-prefix-match table of address prefixes (IPv4 and IPv6), built once,
/// read by every worker at once (an immutable value: no lock).
///
/// Each family's prefixes become a partition of the part of the address space
/// they cover (the span of their longest common prefix) into disjoint ranges,
/// each holding the most specific prefix that contains it, sorted by first
/// address. A first-level index on the next up to 20 bits below the common
/// prefix names, for every bucket, the ranges that meet it. Lookup is one
/// index read and a binary search of one bucket's ranges, allocation-free:
/// - IPv4: at most 17 halvings whatever the list's size (b grows with the
///   list, about log2 of its ranges, up to 20 bits, and a bucket spans 2^(32 − b)
///   addresses: it cannot hold more than min(2^b, 2^(32 − b)) + 1 ranges);
/// - IPv6: at most log2 of the ranges in one bucket (22 for a million IPv6
///   prefixes crowded into one bucket; one or two on lists spread over the space).
///
/// Memory: about 2 ranges per prefix (a nested prefix splits its parent) at
/// 8 (IPv4) or 20 (IPv6) bytes, 16 or 32 bytes per distinct prefix, and a 4-byte
/// index slot per bucket (at most 2^20 per family).
public struct AddressTable: Sendable {
    public struct Entry: Sendable, Equatable {
        /// Normalised: host bits cleared; an IPv4-mapped IPv6 prefix
        /// (`::ffff:a.b.c.d/≥96`) stored as the IPv4 prefix.
        public var prefix: IPNetwork
        /// 1-based line in its file (0 when unknown).
        public var line: Int32
        /// Opaque payload for the caller (an RPZ action index), -1 = none.
        public var outcome: Int32

        public init(prefix: IPNetwork, line: Int32, outcome: Int32) {
            self.init(normalised: AddressTable.normalised(prefix), line: line, outcome: outcome)
        }

        /// For a prefix known to be normalised (lookup's result).
        init(normalised prefix: IPNetwork, line: Int32, outcome: Int32) {
            self.prefix = prefix
            self.line = line
            self.outcome = outcome
        }
    }

    var v4: PrefixRanges<UInt32>
    var v6: PrefixRanges<UInt128>

    /// Entries in any order. The same prefix twice: the first wins. Nested
    /// prefixes: the longest (most specific) prefix that contains an address
    /// wins. Building sorts the entries: O(n log n) time, O(n) memory beside them.
    public init(_ entries: [Entry]) {
        var items4: [PrefixRanges<UInt32>.Item] = []
        var items6: [PrefixRanges<UInt128>.Item] = []
        items4.reserveCapacity(entries.count)
        // Positions are Int32: a list beyond 2^31 entries (far beyond any
        // max_size) is read up to there.
        for (position, entry) in entries.prefix(Int(Int32.max)).enumerated() {
            let prefix = Self.normalised(entry.prefix)
            let length = UInt8(truncatingIfNeeded: prefix.prefixLength)
            let position = Int32(truncatingIfNeeded: position)
            switch prefix.address {
            case .v4(let value):
                items4.append(.init(start: value, length: length, line: entry.line, outcome: entry.outcome,
                                    position: position))
            case .v6(let high, let low):
                items6.append(.init(start: UInt128(high) << 64 | UInt128(low), length: length, line: entry.line,
                                    outcome: entry.outcome, position: position))
            }
        }
        v4 = PrefixRanges(&items4)
        v6 = PrefixRanges(&items6)
    }

    /// The most specific entry containing `address`; an IPv4-mapped IPv6
    /// address (`::ffff:a.b.c.d`) is looked up as the IPv4 address, and IPv6
    /// prefixes never hold IPv4 addresses (nor IPv4 prefixes IPv6 ones).
    /// Nil when none. Allocation-free; the bound is in the type's comment.
    public func lookup(_ address: IPAddress) -> Entry? {
        switch address {
        case .v4(let value):
            return v4.entry(holding: value)
        case .v6(let high, let low):
            if high == 0, low >> 32 == 0xffff { return v4.entry(holding: UInt32(truncatingIfNeeded: low)) }
            return v6.entry(holding: UInt128(high) << 64 | UInt128(low))
        }
    }

    /// Distinct prefixes.
    public var count: Int { v4.stored.count + v6.stored.count }

    public static let empty = AddressTable([])

    /// Host bits cleared (IPNetwork's initialisers do it already) and an
    /// IPv4-mapped IPv6 prefix of /96 or longer taken as its IPv4 prefix.
    static func normalised(_ prefix: IPNetwork) -> IPNetwork {
        if case .v6(let high, let low) = prefix.address, prefix.prefixLength >= 96, high == 0, low >> 32 == 0xffff {
            return IPNetwork(address: .v4(UInt32(truncatingIfNeeded: low)), prefixLength: prefix.prefixLength - 96)
        }
        return IPNetwork(address: prefix.address, prefixLength: prefix.prefixLength)
    }
}

/// The address integers the table is generic over, and how an entry's
/// address is made from one.
protocol PrefixKey: FixedWidthInteger, UnsignedInteger, Sendable {
    func address() -> IPAddress
}

extension UInt32: PrefixKey {
    func address() -> IPAddress { .v4(self) }
}

extension UInt128: PrefixKey {
    func address() -> IPAddress {
        .v6(high: UInt64(truncatingIfNeeded: self >> 64), low: UInt64(truncatingIfNeeded: self))
    }
}

/// One family's prefixes as sorted disjoint ranges with a first-level index
/// (see `AddressTable`).
struct PrefixRanges<Key: PrefixKey>: Sendable {
    /// An entry as the builder sorts it: position in the caller's array breaks ties.
    struct Item {
        var start: Key
        var length: UInt8
        var line: Int32
        var outcome: Int32
        var position: Int32
    }

    /// A distinct prefix.
    struct Stored: Sendable {
        var start: Key
        var line: Int32
        var outcome: Int32
        var length: UInt8
    }

    /// Distinct prefixes, sorted by first address then length.
    var stored: [Stored] = []
    /// The first address of each range, ascending; `starts[0]` is the region's first.
    var starts: [Key] = []
    /// For each range, the index in `stored` of the most specific prefix holding it; -1 for none.
    var holders: [Int32] = []
    /// For bucket b, the range holding the bucket's first address; one more
    /// slot past the last bucket, the last range.
    var index: [UInt32] = []
    /// All the prefixes lie in `region`/`regionBits` (their longest common
    /// prefix): addresses outside it are in none.
    var region: Key = 0
    var regionBits = 0
    /// A bucket is `(address >> bucketShift) & bucketMask`.
    var bucketShift = 0
    var bucketMask: Key = 0

    static var width: Int { Key.bitWidth }

    /// Most index bits: 2^20 slots, 4 MiB, reached at about a million ranges.
    static var maximumIndexBits: Int { 20 }

    /// Sorts `items` (left sorted) and builds the ranges.
    init(_ items: inout [Item]) {
        guard !items.isEmpty else { return }
        items.sort { left, right in
            if left.start != right.start { return left.start < right.start }
            if left.length != right.length { return left.length < right.length }
            return left.position < right.position
        }
        // Distinct prefixes; the same prefix again (sorted after the first) is dropped.
        stored.reserveCapacity(items.count)
        var minimumLength = Self.width
        for item in items {
            if let last = stored.last, last.start == item.start, last.length == item.length { continue }
            stored.append(Stored(start: item.start, line: item.line, outcome: item.outcome, length: item.length))
            minimumLength = min(minimumLength, Int(item.length))
        }
        guard let first = stored.first, let last = stored.last else { return }
        regionBits = min(minimumLength, (first.start ^ last.start).leadingZeroBitCount)
        region = first.start & Self.networkMask(regionBits)
        buildRanges()
        buildIndex()
    }

    /// All ones in the first `length` bits.
    @inline(__always)
    static func networkMask(_ length: Int) -> Key { length == 0 ? 0 : ~Key(0) << (width - length) }

    /// The last address of a prefix.
    @inline(__always)
    static func lastAddress(_ start: Key, _ length: Int) -> Key { start | ~networkMask(length) }

    /// One sweep over the sorted prefixes with a stack of the open ones (each
    /// nested in the one below it: prefixes never overlap otherwise). A range
    /// starts where a prefix starts and where an open prefix ends inside its
    /// parent. Bounded by 2 ranges per prefix plus one.
    mutating func buildRanges() {
        starts.reserveCapacity(2 * stored.count + 1)
        holders.reserveCapacity(2 * stored.count + 1)
        starts.append(region)
        holders.append(-1)
        let regionLast = Self.lastAddress(region, regionBits)
        var open: [(last: Key, holder: Int32)] = []
        for (position, prefix) in stored.enumerated() {
            // Close the prefixes that end before this one: past each end, the
            // range belongs to the prefix below it (or to none).
            while let top = open.last, top.last < prefix.start {  // pops one a turn
                open.removeLast()
                emit(top.last + 1, open.last?.holder ?? -1)
            }
            emit(prefix.start, Int32(truncatingIfNeeded: position))
            open.append((Self.lastAddress(prefix.start, Int(prefix.length)), Int32(truncatingIfNeeded: position)))
        }
        while let top = open.popLast() {  // pops one a turn
            if top.last < regionLast { emit(top.last + 1, open.last?.holder ?? -1) }
        }
    }

    /// Appends a range, or replaces the last one when it starts at the same
    /// address (a prefix nested at its parent's start), or extends the last
    /// one when it has the same holder.
    @inline(__always)
    mutating func emit(_ start: Key, _ holder: Int32) {
        let last = starts.count - 1
        if starts[last] == start {
            holders[last] = holder
            if last > 0, holders[last - 1] == holder {
                starts.removeLast()
                holders.removeLast()
            }
        } else if holders[last] != holder {
            starts.append(start)
            holders.append(holder)
        }
    }

    /// Picks the index's width (about log2 of the ranges, so that a bucket
    /// holds one or two on a list spread over the space) and fills it in one
    /// pass over the buckets and the ranges.
    mutating func buildIndex() {
        var bits = 0
        while bits < Self.maximumIndexBits, (1 << bits) < starts.count { bits += 1 }
        bits = min(bits, Self.width - regionBits)
        bucketShift = Self.width - regionBits - bits
        bucketMask = bits == 0 ? 0 : ~Key(0) >> (Self.width - bits)
        let buckets = 1 << bits
        index = [UInt32](repeating: 0, count: buckets + 1)
        var range = 0
        for bucket in 0..<buckets {
            let bucketStart = region | Key(truncatingIfNeeded: bucket) << bucketShift
            while range + 1 < starts.count, starts[range + 1] <= bucketStart { range += 1 }  // each turn passes a range
            index[bucket] = UInt32(truncatingIfNeeded: range)
        }
        index[buckets] = UInt32(truncatingIfNeeded: starts.count - 1)
    }

    /// The stored prefix holding `address`, -1 for none.
    @inline(__always)
    func holder(of address: Key) -> Int32 {
        guard !starts.isEmpty else { return -1 }
        if regionBits > 0, (address ^ region) >> (Self.width - regionBits) != 0 { return -1 }
        let bucket = Int(truncatingIfNeeded: (address >> bucketShift) & bucketMask)
        // starts[low] <= address always holds: index[bucket] holds the bucket's first address.
        var low = Int(index[bucket])
        var high = Int(index[bucket + 1])
        while low < high {  // halves [low, high] each turn
            let middle = (low + high + 1) >> 1
            if starts[middle] <= address { low = middle } else { high = middle - 1 }
        }
        return holders[low]
    }

    @inline(__always)
    func entry(holding address: Key) -> AddressTable.Entry? {
        let found = holder(of: address)
        guard found >= 0 else { return nil }
        let prefix = stored[Int(found)]
        return AddressTable.Entry(normalised: IPNetwork(address: prefix.start.address(), prefixLength: Int(prefix.length)),
                                  line: prefix.line, outcome: prefix.outcome)
    }
}
