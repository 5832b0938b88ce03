// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire

/// The weights and thresholds of `TunnelTracker`, in units of *evidence*:
/// HIGH at 1, about what one name of 120 encoded-looking bytes is worth.
enum TunnelScoring {
    static let lowEvidence: Float = 0.45
    static let mediumEvidence: Float = 0.8
    static let highEvidence: Float = 1.0
    /// A cap, so that a long tunnel's evidence fades within minutes after it stops.
    static let maximumEvidence: Float = 4
    /// New names raise a pair's evidence to at most this many times their own
    /// gain: HIGH needs names worth ≥ 1/7 each (a hex or UUID ID under an
    /// address lookup is worth less), however many there are.
    static let evidenceCeilingPerGain: Float = 7

    static let evidenceHalfLife: UInt64 = 120_000_000_000
    /// How long a level stands without new evidence, then each step down.
    static let stickyHold: UInt64 = 300_000_000_000

    /// Any name not seen lately: volume alone, slowly.
    static let newNameGain: Float = 0.02
    /// Encoded-looking bytes for one unit of evidence.
    static let encodedBytesPerUnit: Float = 120
    /// Address lookups are what browsing does: their names count less.
    static let addressTypeDiscount: Float = 0.5
    /// Raw name bytes past `plainLengthAllowance` for one unit of evidence.
    static let plainLengthAllowance = 40
    static let lengthBytesPerUnit: Float = 500
    /// Bytes no host name holds (base64 `+/=`, raw 8-bit, spaces).
    static let unusualBytesGain: Float = 0.6

    /// What a query for a new name adds to its pair's evidence (`gain`; also
    /// the name's own worth, which may justify a level alone), and what its
    /// data-carrying type adds on top once the pair keeps asking such types
    /// (`typeBonus`).
    struct Worth {
        var gain: Float
        var typeBonus: Float
    }

    /// A pair's data-carrying queries of new names after which their type
    /// counts in full whatever the name: a mail server asks a domain for a
    /// few (a DKIM selector, a CNAME), a tunnel's polls never stop.
    static let dataTypeNamesBeforeFullWeight: UInt8 = 3

    @inline(__always)
    static func worth(of shape: SubdomainShape, type: QueryType) -> Worth {
        guard shape.length > 0 else { return Worth(gain: 0, typeBonus: 0) }
        var gain = newNameGain
        let addressType = type == .a || type == .aaaa || type == .https || type == .svcb
        gain += shape.encodedBytes / encodedBytesPerUnit * (addressType ? addressTypeDiscount : 1)
        gain += Float(max(0, shape.length - plainLengthAllowance)) / lengthBytesPerUnit
        if shape.unusualBytes > 0 { gain += unusualBytesGain }
        let weight = typeGain(type)
        // Service labels (`_dmarc`, `_sip._udp`, `_acme-challenge`) ask TXT
        // and SRV of plain names for a living: under one the type counts only
        // for encoded-looking bytes. No service asks NULL or a private type.
        let service = shape.startsWithServiceLabel && weight < 1
        // In full under an encoded-looking name, a tenth under a plain one
        // (mail servers ask MX, TXT and CNAME of plain names all day); NULL and
        // the private types in full whatever the name.
        let plainShare = service ? 0 : plainNameTypeShare
        let share = weight >= 1 ? 1 : min(1, plainShare + shape.encodedBytes / encodedBytesForFullTypeWeight)
        return Worth(gain: gain + weight * share, typeBonus: service ? 0 : weight * (1 - share))
    }

    /// What keeping a newcomer would be worth right after its first query,
    /// on the scale of `PairState.standing`: its evidence plus the level its
    /// name justifies. One name proves at most HIGH, so its evidence counts
    /// up to `highEvidence`: a pair at HIGH with at least that much evidence
    /// (a tunnel still sending data) outweighs any single name.
    @inline(__always)
    static func newcomerRetention(gain: Float) -> Float {
        min(gain, highEvidence) + Float(level(for: gain).rawValue)
    }

    static let plainNameTypeShare: Float = 0.1
    static let encodedBytesForFullTypeWeight: Float = 8

    /// What the record type says: the types that carry data back to a tunnel
    /// client, which browsers and apps hardly ask for under a new name.
    @inline(__always)
    static func typeGain(_ type: QueryType) -> Float {
        switch type.rawValue {
        case QueryType.a.rawValue, QueryType.aaaa.rawValue, QueryType.https.rawValue, QueryType.svcb.rawValue,
             QueryType.ptr.rawValue, QueryType.ns.rawValue, QueryType.soa.rawValue, QueryType.ds.rawValue,
             QueryType.dnskey.rawValue, QueryType.caa.rawValue, QueryType.opt.rawValue:
            return 0
        case QueryType.null.rawValue, 65280...65534:
            // NULL and the private-use types: nothing but tunnels asks for them.
            return 1.0
        case QueryType.txt.rawValue, QueryType.cname.rawValue, QueryType.mx.rawValue, QueryType.any.rawValue:
            return 0.3
        case QueryType.srv.rawValue, QueryType.naptr.rawValue:
            return 0.1
        default:
            return 0.2
        }
    }

    @inline(__always)
    static func level(for evidence: Float) -> ConfidenceLevel {
        if evidence >= highEvidence { return .high }
        if evidence >= mediumEvidence { return .medium }
        if evidence >= lowEvidence { return .low }
        return .none
    }

    /// Evidence mapped to 0…1: HIGH starts at 0.5.
    @inline(__always)
    static func score(for evidence: Float) -> Float {
        min(1, evidence / (2 * highEvidence))
    }

    /// The least score a level shows (a held level outlives its evidence).
    @inline(__always)
    static func floorScore(_ level: ConfidenceLevel) -> Float {
        switch level {
        case .none: 0
        case .low: score(for: lowEvidence)
        case .medium: score(for: mediumEvidence)
        case .high: score(for: highEvidence)
        }
    }

    /// `value` after `elapsed` nanoseconds of halving every `evidenceHalfLife`;
    /// between halvings the curve is a straight line (at most 6% high), which
    /// keeps libm off the packet path.
    @inline(__always)
    static func decayed(_ value: Float, elapsed: UInt64) -> Float {
        guard elapsed > 0, value > 0 else { return value }
        let halvings = elapsed / evidenceHalfLife
        if halvings >= 24 { return 0 }
        let fraction = Float(elapsed % evidenceHalfLife) / Float(evidenceHalfLife)
        return value * (1 - 0.5 * fraction) / Float(UInt32(1) << UInt32(halvings))
    }
}

/// The part of a name left of its registrable domain, measured in one pass
/// over its bytes without allocating.
struct SubdomainShape {
    /// Bytes of its labels (dots and length octets excluded).
    var length = 0
    /// Bytes outside letters, digits, `-` and `_`.
    var unusualBytes = 0
    /// Σ label length × how random the label looks (0…1).
    var encodedBytes: Float = 0
    /// The first label looks like a service label: `_` and then 1…15
    /// letters, digits or `-` (`_dmarc`, `_sip`, `_acme-challenge`).
    var startsWithServiceLabel = false
    /// Seeded hash of the part's wire bytes, ASCII case folded: 32 bits,
    /// never 0, so that repeats are recognised and cannot be forged.
    var fingerprint: UInt32 = 1

    static let longestServiceLabel = 16

    @inline(__always)
    init(name: DomainName, registrableStart: Int, seed: UInt64) {
        let labels = min(max(registrableStart, 0), name.labelCount)
        if labels > 0 { startsWithServiceLabel = Self.isServiceLabel(name, label: 0) }
        var hasher = SeededByteHasher(seed: seed)
        for label in 0..<labels {  // ≤ 127 labels, ≤ 254 bytes in all
            let start = name.labelStart(label) + 1
            let end = name.labelStart(label + 1)
            // The length octet too: `ab.c` and `a.bc` differ.
            hasher.add(caseFolded: name.wireByte(start - 1))
            var stats = LabelStatistics()
            for offset in start..<end {
                let byte = name.wireByte(offset)
                stats.add(byte)
                hasher.add(caseFolded: byte)
            }
            length += end - start
            unusualBytes += stats.unusual
            encodedBytes += Float(end - start) * stats.randomness(count: end - start)
        }
        let hash = hasher.finalize()
        fingerprint = UInt32(truncatingIfNeeded: hash >> 32)
        if fingerprint == 0 { fingerprint = UInt32(truncatingIfNeeded: hash) | 1 }
    }

    /// `_` and then 1…15 letters, digits or `-`.
    @inline(__always)
    static func isServiceLabel(_ name: DomainName, label: Int) -> Bool {
        let start = name.labelStart(label) + 1
        let end = name.labelStart(label + 1)
        guard end - start >= 2, end - start <= longestServiceLabel,
              name.wireByte(start) == UInt8(ascii: "_") else { return false }
        for offset in start + 1..<end {  // ≤ 15 bytes
            let byte = name.wireByte(offset)
            let letter = (byte | 0x20) &- 0x61 < 26
            let digit = byte &- 0x30 < 10
            if !(letter || digit || byte == UInt8(ascii: "-")) { return false }
        }
        return true
    }
}

/// Character statistics of one label: what sets encoded data (base32,
/// base64, hex) apart from words and the structured names of CDNs.
struct LabelStatistics {
    /// Eight-bit counters (a label has at most 63 bytes), one add a byte:
    /// letters, a-f letters, vowels, digits, unusual bytes, letter/digit
    /// changes (encodings mix them, words do not), case changes (base64).
    var packed: UInt64 = 0
    var consonantRun: UInt32 = 0
    var longestConsonantRun: UInt32 = 0
    /// 0 separator (or the start), 1 lower, 2 upper, 3 digit, 4 other.
    var previous: UInt32 = 0

    var letters: Int { Int(truncatingIfNeeded: packed & 0xff) }
    var hexLetters: Int { Int(truncatingIfNeeded: packed >> 8 & 0xff) }
    var vowels: Int { Int(truncatingIfNeeded: packed >> 16 & 0xff) }
    var digits: Int { Int(truncatingIfNeeded: packed >> 24 & 0xff) }
    var unusual: Int { Int(truncatingIfNeeded: packed >> 32 & 0xff) }
    var classSwitches: Int { Int(truncatingIfNeeded: packed >> 40 & 0xff) }
    var caseSwitches: Int { Int(truncatingIfNeeded: packed >> 48 & 0xff) }

    /// 1 when `value` (< 256) is below `limit`, else 0, without a branch.
    @inline(__always)
    static func below(_ value: UInt32, _ limit: UInt32) -> UInt32 { (value &- limit) >> 31 }

    /// Counts one byte. Branch-free: encoded data is random, and a branch on
    /// each random byte's class would be mispredicted half the time.
    @inline(__always)
    mutating func add(_ byte: UInt8) {
        let value = UInt32(byte)
        let letterIndex = ((value | 0x20) &- 0x61) & 0xff
        let isLetter = Self.below(letterIndex, 26)
        let isUpper = Self.below((value &- 0x41) & 0xff, 26)
        let isDigit = Self.below((value &- 0x30) & 0xff, 10)
        let isSeparator = Self.below(value ^ 0x2d, 1) | Self.below(value ^ 0x5f, 1)
        // a, e, i, o, u as bits of the letter's index.
        let isVowel = isLetter & (0x104111 >> (letterIndex & 31)) & 1
        let isHexLetter = isLetter & Self.below(letterIndex, 6)
        let isUnusual = 1 ^ (isLetter | isDigit | isSeparator)
        let kind = isLetter &* (1 &+ isUpper) &+ isDigit &* 3 &+ isUnusual &* 4
        let previousLetter = Self.below((previous &- 1) & 0xff, 2)
        let previousDigit = Self.below(previous ^ 3, 1)
        let classSwitch = (previousDigit & isLetter) | (previousLetter & isDigit)
        let caseSwitch = isLetter & previousLetter & (1 ^ Self.below(kind ^ previous, 1))
        packed &+= UInt64(isLetter | isHexLetter << 8 | isVowel << 16 | isDigit << 24)
            | UInt64(isUnusual | classSwitch << 8 | caseSwitch << 16) << 32
        consonantRun = (consonantRun &+ 1) &* (isLetter & (1 ^ isVowel))
        longestConsonantRun = max(longestConsonantRun, consonantRun)
        previous = kind
    }

    /// How much the label looks like encoded data, 0…1.
    @inline(__always)
    func randomness(count: Int) -> Float {
        if count < 5 { return unusual > 0 ? 1 : 0 }
        // Counters, octets and timestamps are short; long digit runs carry data.
        if digits == count { return count <= 10 ? 0.05 : 0.5 }
        // Hex (hashes, UUIDs, telemetry IDs, and some tunnels): 4 bits a
        // character, and vowels and consonant runs mean nothing in a-f.
        if hexLetters == letters, letters > 0, digits > 0 { return 0.4 }
        let gaps = Float(count - 1)
        var result: Float = 0
        result += 0.4 * min(1, Float(classSwitches) / (0.2 * gaps))
        if letters >= 8 {
            let vowelShare = Float(vowels) / Float(letters)
            result += 0.25 * min(1, max(0, (0.30 - vowelShare) / 0.15))
        }
        result += 0.2 * min(1, Float(max(0, Int(longestConsonantRun) - 3)) / 4)
        result += 0.5 * min(1, Float(caseSwitches) / (0.15 * gaps))
        if unusual > 0 { result += 0.6 }
        return min(result, 1)
    }
}
