// SPDX-License-Identifier: GPL-2.0-or-later
public import DNSWire
import Synchronization

/// The name model's recent results by registrable domain, shared by every
/// worker. Clients ask for the same few thousand domains all day, and scoring
/// one (a trigram pass and a word segmentation over a lexicon larger than the
/// CPU's caches) costs several times what looking it up here does.
///
/// Direct-mapped, in stripes with a lock each; an entry is one word: 31 bits
/// of the domain's key (its low 24 bits chose the slot), a marker bit and
/// both detectors' findings, 16 bits each. Keys are hashed with a seed drawn at
/// start, so nobody can pick a generated name that lands on a popular
/// domain's entry and inherits its verdict.
public final class NameScoreCache: Sendable {
    static let stripeCount = 64
    let slotsPerStripe: Int
    let seed: UInt64

    final class LockedSlots: Sendable {
        let slots: Mutex<[UInt64]>
        init(count: Int) { slots = Mutex(Array(repeating: 0, count: count)) }
    }
    let stripes: [LockedSlots]

    /// `capacity` entries (rounded up to whole stripes), 8 bytes each.
    public init(capacity: Int = 65_536, seed: UInt64 = UInt64.random(in: 1...UInt64.max)) {
        slotsPerStripe = max(1, (capacity + Self.stripeCount - 1) / Self.stripeCount)
        self.seed = seed
        stripes = (0..<Self.stripeCount).map { [slotsPerStripe] _ in LockedSlots(count: slotsPerStripe) }
    }

    /// The seeded key of the registrable domain of `name` (from label `start`).
    @inline(__always)
    public func key(_ name: DomainName, registrableStart start: Int) -> UInt64 {
        var hasher = SeededByteHasher(seed: seed)
        hasher.add(name, fromLabel: start)
        return hasher.finalize()
    }

    /// What the model said about this key, if it is held.
    @inline(__always)
    public func lookup(_ key: UInt64) -> (dga: ThreatFinding, dictionaryDGA: ThreatFinding)? {
        let (stripe, slot) = place(key)
        let entry = stripes[stripe].slots.withLock { $0[slot] }
        guard entry != 0, entry & Self.tagMask == key & Self.tagMask else { return nil }
        return Self.unpack(entry)
    }

    /// Keeps a result, replacing whatever held its slot.
    @inline(__always)
    public func store(_ key: UInt64, _ result: (dga: ThreatFinding, dictionaryDGA: ThreatFinding)) {
        let (stripe, slot) = place(key)
        let entry = key & Self.tagMask | Self.pack(result)
        stripes[stripe].slots.withLock { $0[slot] = entry }
    }

    /// The key's top 31 bits; the slot came from its low 24.
    static let tagMask: UInt64 = ~(1 << 33 - 1)
    /// Set in every entry, so that an empty slot (0) never looks like a benign result.
    static let occupied: UInt64 = 1 << 32

    @inline(__always)
    func place(_ key: UInt64) -> (stripe: Int, slot: Int) {
        let low = Int(truncatingIfNeeded: key & 0xff_ffff)
        return (low & (Self.stripeCount - 1), (low >> 6) % slotsPerStripe)
    }

    /// The marker, then the dictionary finding in bits 16…31 and the DGA one
    /// in 0…15: each 2 bits of level and 14 of score (1/16383: the printed
    /// score has 3 decimals).
    @inline(__always)
    static func pack(_ result: (dga: ThreatFinding, dictionaryDGA: ThreatFinding)) -> UInt64 {
        occupied | packFinding(result.dictionaryDGA) << 16 | packFinding(result.dga)
    }

    @inline(__always)
    static func unpack(_ entry: UInt64) -> (dga: ThreatFinding, dictionaryDGA: ThreatFinding) {
        (unpackFinding(entry & 0xffff), unpackFinding(entry >> 16 & 0xffff))
    }

    static let scoreSteps: Float = 16_383

    @inline(__always)
    static func packFinding(_ finding: ThreatFinding) -> UInt64 {
        let score = finding.level == .none ? 0 : UInt64((min(max(finding.score, 0), 1) * scoreSteps).rounded())
        return UInt64(finding.level.rawValue) << 14 | score
    }

    @inline(__always)
    static func unpackFinding(_ bits: UInt64) -> ThreatFinding {
        guard let level = ConfidenceLevel(rawValue: UInt8(bits >> 14 & 3)), level > .none else { return .benign }
        return ThreatFinding(level: level, score: Float(bits & 0x3fff) / scoreSteps)
    }
}
