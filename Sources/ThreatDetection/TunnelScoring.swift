// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire

/// The weights and thresholds of `TunnelTracker`, in units of *evidence*:
/// HIGH at 1, about what one name of 120 encoded-looking bytes is worth.
enum TunnelScoring {
    static let lowEvidence: Float = 0.3
    static let mediumEvidence: Float = 0.6
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
    static let addressTypeDiscount: Float = 0.75
    /// Raw name bytes past `plainLengthAllowance` for one unit of evidence.
    static let plainLengthAllowance = 40
    static let lengthBytesPerUnit: Float = 500
    /// Bytes no host name holds (base64 `+/=`, raw 8-bit, spaces).
    static let unusualBytesGain: Float = 0.6

    /// What a query for a new name adds to its pair's evidence; also the
    /// name's own worth, which may justify a level alone.
    @inline(__always)
    static func gain(of shape: SubdomainShape, type: QueryType) -> Float {
        guard shape.length > 0 else { return 0 }
        var gain = newNameGain
        let addressType = type == .a || type == .aaaa || type == .https || type == .svcb
        gain += shape.encodedBytes / encodedBytesPerUnit * (addressType ? addressTypeDiscount : 1)
        gain += Float(max(0, shape.length - plainLengthAllowance)) / lengthBytesPerUnit
        if shape.unusualBytes > 0 { gain += unusualBytesGain }
        // Service labels (`_dmarc`, `_sip._udp`, `_acme-challenge`) ask TXT and SRV for a living.
        if !shape.leadingUnderscore { gain += typeGain(type) }
        return gain
    }

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
    /// The first label starts with `_` (a service label).
    var leadingUnderscore = false
    /// FNV-1a of the part, ASCII case folded, so repeats are recognised.
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325

    @inline(__always)
    init(name: DomainName, registrableStart: Int) {
        let labels = min(max(registrableStart, 0), name.labelCount)
        if labels > 0 { leadingUnderscore = name.wireByte(name.labelStart(0) + 1) == UInt8(ascii: "_") }
        for label in 0..<labels {  // ≤ 127 labels, ≤ 254 bytes in all
            let start = name.labelStart(label) + 1
            let end = name.labelStart(label + 1)
            var stats = LabelStatistics()
            for offset in start..<end {
                let byte = name.wireByte(offset)
                stats.add(byte)
                hash = (hash ^ UInt64(byte &- 0x41 < 26 ? byte | 0x20 : byte)) &* 0x0000_0100_0000_01b3
            }
            hash = (hash ^ 0x2e) &* 0x0000_0100_0000_01b3
            length += end - start
            unusualBytes += stats.unusual
            encodedBytes += Float(end - start) * stats.randomness(count: end - start)
        }
    }
}

/// Character statistics of one label: what sets encoded data (base32,
/// base64, hex) apart from words and the structured names of CDNs.
struct LabelStatistics {
    var letters = 0
    /// Letters a-f, either case.
    var hexLetters = 0
    var vowels = 0
    var digits = 0
    var unusual = 0
    /// Adjacent letter/digit changes: encodings mix them, words do not.
    var classSwitches = 0
    /// Adjacent letters of different case inside a label: base64.
    var caseSwitches = 0
    var consonantRun = 0
    var longestConsonantRun = 0
    /// 0 none (start, `-`, `_`), 1 lower, 2 upper, 3 digit, 4 other.
    var previous: UInt8 = 0

    @inline(__always)
    mutating func add(_ byte: UInt8) {
        if byte &- 0x61 < 26 || byte &- 0x41 < 26 {
            let kind: UInt8 = byte < 0x61 ? 2 : 1
            letters += 1
            if byte | 0x20 <= UInt8(ascii: "f") { hexLetters += 1 }
            if previous == 3 {
                classSwitches += 1
            } else if previous == 3 - kind {
                caseSwitches += 1
            }
            switch byte | 0x20 {
            case UInt8(ascii: "a"), UInt8(ascii: "e"), UInt8(ascii: "i"), UInt8(ascii: "o"), UInt8(ascii: "u"):
                vowels += 1
                consonantRun = 0
            default:
                consonantRun += 1
                longestConsonantRun = max(longestConsonantRun, consonantRun)
            }
            previous = kind
        } else if byte &- 0x30 < 10 {
            digits += 1
            if previous == 1 || previous == 2 { classSwitches += 1 }
            previous = 3
            consonantRun = 0
        } else if byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") {
            previous = 0
            consonantRun = 0
        } else {
            unusual += 1
            previous = 4
            consonantRun = 0
        }
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
        result += 0.2 * min(1, Float(max(0, longestConsonantRun - 3)) / 4)
        result += 0.5 * min(1, Float(caseSwitches) / (0.15 * gaps))
        if unusual > 0 { result += 0.6 }
        return min(result, 1)
    }
}
