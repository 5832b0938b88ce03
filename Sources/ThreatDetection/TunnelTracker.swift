// SPDX-License-Identifier: GPL-2.0-or-later
public import DNSWire
import Synchronization

/// Per (client, registrable domain) tunnelling state in a fixed-size table,
/// shared by every worker.
///
/// A tunnel has to put its data in the query name: many distinct, long,
/// encoded-looking names under one registrable domain, often with a record
/// type that carries data back (TXT, NULL, CNAME, MX). Each query adds
/// *evidence* to its pair: nothing for a name seen lately, a little for any
/// new name, more for the encoded-looking bytes it carries, its raw volume,
/// bytes no host name holds (base64 `+/=`, raw 8-bit) and a data-carrying
/// type. Evidence halves every `evidenceHalfLife`; a level once reached is
/// held (`stickyHold`, renewed by every new name) so that a tunnel's short
/// polls (`r31283.example.com`) match at once, and then steps down one level
/// per hold. A single name can justify a level by itself.
///
/// The table is set-associative (`ways` slots a bucket), split into stripes
/// with a lock each. A miss takes an empty slot or evicts the bucket's
/// coldest, least suspicious entry, so a flood of new pairs evicts itself
/// rather than a pair under suspicion; a pair holding MEDIUM or HIGH is never
/// pushed out for a newcomer worth less (when a whole bucket is such pairs,
/// the newcomer is scored from its own name and not kept). `observe` never
/// allocates.
///
/// Pair keys and name fingerprints are SipHash (`Hasher`) with a secret
/// per-tracker seed: someone who knows this code still cannot choose names
/// that pass for repeats, nor pairs that land in a tunnel's bucket.
public final class TunnelTracker: Sendable {
    /// Slots in the table (the requested capacity, rounded down to whole buckets).
    public let capacity: Int
    let bucketsPerStripe: Int
    static let ways = 8
    static let maximumStripes = 64
    /// Hashed ahead of every key and fingerprint, on top of `Hasher`'s own
    /// per-process seed (which `SWIFT_DETERMINISTIC_HASHING` turns off).
    let seed: UInt64

    /// One stripe's buckets and counts: only code holding its lock touches them.
    struct Stripe {
        /// Pair keys (0: empty), `ways` a bucket: a bucket's keys are read together.
        var keys: [UInt64]
        var slots: [PairState]
        /// Slots ever claimed: a slot is reused, never emptied.
        var occupied = 0
        /// Pairs pushed out of their slot for a newcomer.
        var evictions = 0
        /// Newcomers left out because every way held a pair worth more.
        var refusedNewcomers = 0

        /// The slot holding `key` in the bucket from `firstSlot`, or an empty
        /// or evicted one now holding it; nil when every way holds a pair at
        /// MEDIUM or HIGH worth at least `newcomerWorth`.
        @inline(__always)
        mutating func findOrClaim(key: UInt64, firstSlot: Int, newcomerWorth: Float, now: UInt64) -> Int? {
            var empty = -1
            for way in 0..<TunnelTracker.ways {
                if keys[firstSlot + way] == key { return firstSlot + way }
                if empty < 0, keys[firstSlot + way] == 0 { empty = way }
            }
            var victim = empty
            if victim >= 0 {
                occupied += 1
            } else {
                // Full: evict the entry least worth keeping, among those a
                // newcomer of this worth may push out.
                var victimValue = Float.infinity
                for way in 0..<TunnelTracker.ways {
                    let standing = slots[firstSlot + way].standing(now: now)
                    if standing.level >= .medium, standing.retention >= newcomerWorth { continue }
                    if standing.retention < victimValue {
                        victim = way
                        victimValue = standing.retention
                    }
                }
                guard victim >= 0 else {
                    refusedNewcomers += 1
                    return nil
                }
                evictions += 1
            }
            keys[firstSlot + victim] = key
            slots[firstSlot + victim] = PairState()
            slots[firstSlot + victim].lastSeen = now
            return firstSlot + victim
        }
    }

    /// A stripe behind its lock (a lock cannot sit in an array itself).
    final class LockedStripe: Sendable {
        let stripe: Mutex<Stripe>
        init(slots: Int) { stripe = Mutex(Stripe(keys: Array(repeating: 0, count: slots), slots: Array(repeating: PairState(), count: slots))) }
    }

    /// Every slot is allocated here, once.
    let stripes: [LockedStripe]

    public init(capacity: Int = 65_536) {
        let buckets = max(1, capacity / Self.ways)
        let stripeCount = min(Self.maximumStripes, buckets)
        bucketsPerStripe = buckets / stripeCount
        self.capacity = stripeCount * bucketsPerStripe * Self.ways
        stripes = (0..<stripeCount).map { [bucketsPerStripe] _ in LockedStripe(slots: bucketsPerStripe * Self.ways) }
        var generator = SystemRandomNumberGenerator()
        seed = generator.next()
    }

    /// Pairs in the table now, never more than `capacity`. Slots are only
    /// ever reused, never emptied: a pair that went quiet stays (and counts)
    /// until a newcomer evicts it, so once the table has filled this is
    /// `capacity` whatever the traffic.
    public var count: Int { stripes.reduce(0) { $0 + $1.stripe.withLock(\.occupied) } }

    /// Pairs pushed out of the table to make room for others since start (a
    /// newcomer taking an empty slot, or left out, evicts nothing).
    public var evictions: Int { stripes.reduce(0) { $0 + $1.stripe.withLock(\.evictions) } }

    /// Newcomers scored from their own name and not kept, since start.
    var refusedNewcomers: Int { stripes.reduce(0) { $0 + $1.stripe.withLock(\.refusedNewcomers) } }

    /// The table's memory, all of it allocated at init.
    public var memoryBytes: Int {
        capacity * (MemoryLayout<UInt64>.stride + MemoryLayout<PairState>.stride)
            + stripes.count * (MemoryLayout<LockedStripe>.size + MemoryLayout<Mutex<Stripe>>.stride + 64)
    }

    /// Records one query and returns the pair's standing after it. `now` is
    /// monotonic nanoseconds.
    public func observe(client: IPAddress, name: DomainName, registrableStart: Int, type: QueryType,
                        now: UInt64) -> ThreatFinding {
        let start = min(max(registrableStart, 0), name.labelCount)
        // PTR floods (scanners, log resolvers) look exactly like a tunnel, and
        // a PTR answer is a name, not data. Other types under `arpa` are
        // tracked: an ip6.arpa delegation is easy to get.
        if start == 0 || (type == .ptr && Self.isReverseZone(name)) { return .benign }
        let shape = SubdomainShape(name: name, registrableStart: start, seed: seed)
        let worth = TunnelScoring.worth(of: shape, type: type)
        let key = pairKey(client: client, name: name, registrableStart: start)
        let (stripeIndex, firstSlot) = location(ofKey: key)
        let newcomerWorth = TunnelScoring.newcomerRetention(gain: worth.gain)
        return stripes[stripeIndex].stripe.withLock { stripe -> ThreatFinding in
            guard let slot = stripe.findOrClaim(key: key, firstSlot: firstSlot, newcomerWorth: newcomerWorth,
                                                now: now) else {
                // Scored as a pair seen for the first time, and not kept.
                var alone = PairState()
                alone.lastSeen = now
                return alone.record(nameFingerprint: shape.fingerprint, worth: worth, now: now)
            }
            return stripe.slots[slot].record(nameFingerprint: shape.fingerprint, worth: worth, now: now)
        }
    }

    /// The stripe and first slot of the bucket for `key`: its top 32 bits
    /// scaled to the bucket count (no division).
    @inline(__always)
    func location(ofKey key: UInt64) -> (stripe: Int, firstSlot: Int) {
        let bucket = Int(truncatingIfNeeded: ((key >> 32) &* UInt64(stripes.count * bucketsPerStripe)) >> 32)
        let stripe = bucket / bucketsPerStripe
        return (stripe, (bucket - stripe * bucketsPerStripe) * Self.ways)
    }

    /// A secret 64-bit key (never 0) for the pair: the client's address and
    /// the registrable domain's wire bytes, ASCII case folded.
    @inline(__always)
    func pairKey(client: IPAddress, name: DomainName, registrableStart: Int) -> UInt64 {
        var hasher = SeededByteHasher(seed: seed)
        switch client {
        case .v4(let value):
            hasher.combine(word: 4)
            hasher.combine(word: UInt64(value))
        case .v6(let high, let low):
            hasher.combine(word: 6)
            hasher.combine(word: high)
            hasher.combine(word: low)
        }
        hasher.add(name, fromLabel: registrableStart)
        return hasher.finalize() | 1
    }

    /// Names under `arpa` (in-addr.arpa, ip6.arpa).
    @inline(__always)
    static func isReverseZone(_ name: DomainName) -> Bool {
        let last = name.labelStart(name.labelCount - 1)
        guard name.length - last == 5 else { return false }
        return name.wireByte(last + 1) | 0x20 == UInt8(ascii: "a") && name.wireByte(last + 2) | 0x20 == UInt8(ascii: "r")
            && name.wireByte(last + 3) | 0x20 == UInt8(ascii: "p") && name.wireByte(last + 4) | 0x20 == UInt8(ascii: "a")
    }
}

/// What one pair has shown lately.
struct PairState {
    var lastSeen: UInt64 = 0
    /// Until when `heldLevel` stands without new evidence.
    var heldUntil: UInt64 = 0
    /// Evidence as of `lastSeen` (decays with `evidenceHalfLife`).
    var evidence: Float = 0
    var heldLevel: UInt8 = 0
    var recentCursor: UInt8 = 0
    /// New names asked with a data-carrying type (saturating).
    var dataTypeNames: UInt8 = 0
    /// Seeded fingerprints of the pair's last names (0: none): a repeat
    /// carries no new data. 32 bits, so a chance match is one in 2^28 per name.
    var recentNames = InlineArray<16, UInt32>(repeating: 0)

    /// The level the pair holds now (an unexpired hold, or its evidence's),
    /// and how much keeping it is worth: its evidence now plus that hold.
    /// Cold, clean entries go first.
    @inline(__always)
    func standing(now: UInt64) -> (level: ConfidenceLevel, retention: Float) {
        let evidenceNow = TunnelScoring.decayed(evidence, elapsed: now &- min(now, lastSeen))
        let hold = heldUntil > now ? heldLevel : 0
        let level = max(TunnelScoring.level(for: evidenceNow), ConfidenceLevel(rawValue: hold) ?? .none)
        return (level, evidenceNow + Float(hold))
    }

    /// Adds one query named with fingerprint `nameFingerprint` and worth
    /// `worth` when new, and returns the pair's standing.
    @inline(__always)
    mutating func record(nameFingerprint: UInt32, worth: TunnelScoring.Worth, now: UInt64) -> ThreatFinding {
        var nameGain = worth.gain
        evidence = TunnelScoring.decayed(evidence, elapsed: now &- min(now, lastSeen))
        lastSeen = max(lastSeen, now)
        var seen = false
        for index in 0..<recentNames.count where recentNames[index] == nameFingerprint { seen = true }
        if !seen {
            recentNames[Int(recentCursor) & 15] = nameFingerprint
            recentCursor &+= 1
            if worth.typeBonus > 0 {
                if dataTypeNames >= TunnelScoring.dataTypeNamesBeforeFullWeight { nameGain += worth.typeBonus }
                dataTypeNames = dataTypeNames &+ (dataTypeNames < .max ? 1 : 0)
            }
            // A pair looks at most a few times worse than its current name:
            // a flood of plain names (PTR sweeps, CDN hosts, telemetry IDs)
            // cannot add up to a tunnel, while a tunnel's poll keeps its standing.
            let ceiling = max(evidence, nameGain * TunnelScoring.evidenceCeilingPerGain)
            evidence = min(evidence + nameGain, ceiling, TunnelScoring.maximumEvidence)
        }

        // The level held from before, stepped down once a hold per hold expired.
        var held = ConfidenceLevel.none
        if heldLevel > 0 {
            if now < heldUntil {
                held = ConfidenceLevel(rawValue: heldLevel) ?? .none
            } else {
                let stepsDown = 1 + (now - heldUntil) / TunnelScoring.stickyHold
                held = stepsDown >= UInt64(heldLevel) ? .none : ConfidenceLevel(rawValue: heldLevel - UInt8(stepsDown)) ?? .none
            }
        }
        let fresh = max(TunnelScoring.level(for: evidence), TunnelScoring.level(for: nameGain))
        let level = max(held, fresh)
        // A new name renews the hold: a live tunnel keeps sending new names.
        if level > .none, !seen || fresh >= held {
            heldLevel = level.rawValue
            heldUntil = now &+ TunnelScoring.stickyHold
        }
        guard level > .none else {
            return ThreatFinding(level: .none, score: 0)
        }
        let score = max(TunnelScoring.score(for: max(evidence, nameGain)), TunnelScoring.floorScore(level))
        return ThreatFinding(level: level, score: score)
    }
}
