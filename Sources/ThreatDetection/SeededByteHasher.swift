// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire

/// SipHash (`Hasher`, randomly seeded per process) of a seed and then bytes,
/// fed eight at a time: a `combine` call a byte would cost more than the hash.
struct SeededByteHasher {
    var hasher = Hasher()
    var word: UInt64 = 0
    var byteCount = 0

    @inline(__always)
    init(seed: UInt64) { hasher.combine(seed) }

    /// Hashes a whole word now (fields ahead of the bytes).
    @inline(__always)
    mutating func combine(word value: UInt64) { hasher.combine(value) }

    /// Adds one byte, ASCII letters folded to lowercase.
    @inline(__always)
    mutating func add(caseFolded byte: UInt8) {
        word = word << 8 | UInt64(byte &- 0x41 < 26 ? byte | 0x20 : byte)
        byteCount &+= 1
        if byteCount & 7 == 0 {
            hasher.combine(word)
            word = 0
        }
    }

    /// Adds the wire bytes of `name` from label `first` on (≤ 254).
    @inline(__always)
    mutating func add(_ name: DomainName, fromLabel first: Int) {
        for offset in name.labelStart(first)..<name.length { add(caseFolded: name.wireByte(offset)) }
    }

    /// The hash; the byte count tells a short tail from leading zero bytes.
    @inline(__always)
    mutating func finalize() -> UInt64 {
        hasher.combine(word)
        hasher.combine(byteCount)
        return UInt64(truncatingIfNeeded: hasher.finalize())
    }
}
