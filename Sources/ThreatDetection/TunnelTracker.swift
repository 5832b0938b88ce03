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
/// rather than a pair under suspicion. `observe` never allocates.
public final class TunnelTracker: Sendable {
    /// Slots in the table (the requested capacity, rounded down to whole buckets).
    public let capacity: Int
    let bucketsPerStripe: Int
    static let ways = 8
    static let maximumStripes = 64

    /// One stripe's buckets and counts: only code holding its lock touches them.
    struct Stripe {
        /// Pair keys (0: empty), `ways` a bucket: a bucket's keys are read together.
        var keys: [UInt64]
        var slots: [PairState]
        var occupied = 0
        var evictions = 0

        /// The slot holding `key` in the bucket from `firstSlot`, or an empty
        /// or evicted one now holding it.
        @inline(__always)
        mutating func findOrClaim(key: UInt64, firstSlot: Int, now: UInt64) -> Int {
            var empty = -1
            for way in 0..<TunnelTracker.ways {
                if keys[firstSlot + way] == key { return firstSlot + way }
                if empty < 0, keys[firstSlot + way] == 0 { empty = way }
            }
            var victim = empty
            if victim >= 0 {
                occupied += 1
            } else {
                // Full: evict the entry least worth keeping.
                var victimValue = Float.infinity
                for way in 0..<TunnelTracker.ways {
                    let value = slots[firstSlot + way].retentionValue(now: now)
                    if value < victimValue {
                        victim = way
                        victimValue = value
                    }
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
    }

    /// Pairs held now (never more than `capacity`).
    public var count: Int { stripes.reduce(0) { $0 + $1.stripe.withLock(\.occupied) } }

    /// Pairs pushed out to make room for others since start.
    public var evictions: Int { stripes.reduce(0) { $0 + $1.stripe.withLock(\.evictions) } }

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
        // Nobody can put data under a reverse zone they do not hold, and PTR
        // floods (scanners, log resolvers) look exactly like a tunnel otherwise.
        if start == 0 || Self.isReverseZone(name) { return .benign }
        let shape = SubdomainShape(name: name, registrableStart: start)
        let worth = TunnelScoring.worth(of: shape, type: type)
        let key = Self.pairKey(client: client, registrableHash: name.suffixHash(fromLabel: start))

        // The key's top 32 bits scaled to the bucket count (no division).
        let bucket = Int(truncatingIfNeeded: ((key >> 32) &* UInt64(stripes.count * bucketsPerStripe)) >> 32)
        let stripe = bucket / bucketsPerStripe
        let firstSlot = (bucket - stripe * bucketsPerStripe) * Self.ways
        let nameFingerprint = UInt16(truncatingIfNeeded: shape.hash >> 48) | 1
        return stripes[stripe].stripe.withLock { stripe -> ThreatFinding in
            let slot = stripe.findOrClaim(key: key, firstSlot: firstSlot, now: now)
            return stripe.slots[slot].record(nameFingerprint: nameFingerprint, worth: worth, now: now)
        }
    }

    /// A 64-bit key (never 0) for the pair.
    @inline(__always)
    static func pairKey(client: IPAddress, registrableHash: UInt64) -> UInt64 {
        let clientHash: UInt64
        switch client {
        case .v4(let value): clientHash = mix(UInt64(value) | 0x4_0000_0000)
        case .v6(let high, let low): clientHash = mix(high ^ mix(low))
        }
        return mix(clientHash ^ (registrableHash &* 0x9e37_79b9_7f4a_7c15)) | 1
    }

    /// The splitmix64 finaliser: every input bit reaches every output bit.
    @inline(__always)
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9e37_79b9_7f4a_7c15
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
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
    /// Fingerprints of the pair's last names: a repeat carries no new data.
    var recentNames = InlineArray<16, UInt16>(repeating: 0)

    /// How much keeping this entry is worth: its evidence now, plus a level
    /// it still holds. Cold, clean entries go first.
    @inline(__always)
    func retentionValue(now: UInt64) -> Float {
        var value = TunnelScoring.decayed(evidence, elapsed: now &- min(now, lastSeen))
        if heldLevel > 0, heldUntil > now { value += Float(heldLevel) }
        return value
    }

    /// Adds one query named with fingerprint `nameFingerprint` and worth
    /// `worth` when new, and returns the pair's standing.
    @inline(__always)
    mutating func record(nameFingerprint: UInt16, worth: TunnelScoring.Worth, now: UInt64) -> ThreatFinding {
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
