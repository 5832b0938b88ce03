// SPDX-License-Identifier: GPL-2.0-or-later
public import DNSWire

/// The Public Suffix List, compiled for lookups that do not allocate.
///
/// One walk gives two registrable domains:
/// - `all`, from both sections, ICANN and PRIVATE (as browsers do for
///   cookies): a private suffix such as `github.io` or `cloudfront.net` is
///   where one tenant's names end and another's begin. The tunnelling
///   detector counts per this domain, so each tenant is its own unit.
/// - `icann`, from the ICANN section only: what was bought at a registrar.
///   DGA malware registers its domains there, so the name model scores this
///   one; the label left of a private suffix is a platform's tenant ID
///   (`d2908q01vomqb2.cloudfront.net`), random by design, not a DGA's choice.
public struct PublicSuffixList: Sendable {
    /// One rule (or the interior suffix of a longer rule) per entry.
    private struct Entry: Sendable {
        var keyOffset: Int32
        var keyLength: UInt8
        /// `Kind` bits: ICANN rules in the low nibble, PRIVATE ones shifted by `Kind.privateShift`.
        var kinds: UInt8
    }

    private enum Kind {
        static let normal: UInt8 = 1       // `co.uk`
        static let wildcard: UInt8 = 2     // `*.ck`: every child of this suffix is a suffix
        static let exception: UInt8 = 4    // `!www.ck`: this name is registrable after all
        static let privateShift: UInt8 = 4
        static let icannMask: UInt8 = 0x0f
    }

    /// The section markers of publicsuffix.org's file (in comment lines).
    private static let privateBegins = "===BEGIN PRIVATE DOMAINS==="
    private static let privateEnds = "===END PRIVATE DOMAINS==="

    /// Keys' lowercase wire forms, back to back.
    private var keyBytes: [UInt8] = []
    private var entries: [Entry] = []
    /// Open addressing: the key's NameHash and the entry index + 1 (0 = empty),
    /// side by side so that a probe reads one cache line.
    private struct Slot: Sendable {
        var hash: UInt64
        var entry: Int32
    }
    private var slots: [Slot] = []
    private var slotMask = 0

    /// Parses the list's text (publicsuffix.org format); `file` names it in errors.
    public init(text: String, file: String) throws(ThreatDetectionError) {
        var rules: [(key: [UInt8], kind: UInt8)] = []
        var lineNumber = 0
        var inPrivateSection = false
        for rawLine in textLines(text) {
            lineNumber += 1
            if rawLine.hasPrefix("//") {
                if rawLine.contains(Self.privateBegins) { inPrivateSection = true }
                if rawLine.contains(Self.privateEnds) { inPrivateSection = false }
                continue
            }
            // A rule is the line up to its first whitespace.
            guard let rule = textFields(rawLine).first,
                  !rule.hasPrefix("//") else { continue }
            var body = Substring(rule)
            var kind = Kind.normal
            if body.hasPrefix("!") {
                kind = Kind.exception
                body = body.dropFirst()
            } else if body.hasPrefix("*.") {
                kind = Kind.wildcard
                body = body.dropFirst(2)
            }
            var key: [UInt8] = []
            for label in body.split(separator: ".", omittingEmptySubsequences: false) {
                guard let bytes = Self.asciiLabel(label), !bytes.isEmpty, bytes.count <= 63,
                      !bytes.contains(UInt8(ascii: "*")), !bytes.contains(UInt8(ascii: "!")) else {
                    throw ThreatDetectionError(file: file, line: lineNumber, message: "bad rule '\(rule)'")
                }
                key.append(UInt8(bytes.count))
                key.append(contentsOf: bytes)
            }
            guard key.count <= 253 else {
                throw ThreatDetectionError(file: file, line: lineNumber, message: "rule too long '\(rule)'")
            }
            rules.append((key, inPrivateSection ? kind << Kind.privateShift : kind))
        }
        guard !rules.isEmpty else { throw ThreatDetectionError(file: file, line: 0, message: "no rules") }

        // Every suffix of a rule is an entry too, so that a lookup can stop at the
        // first suffix of the name that is not one.
        var kindsBySuffix: [[UInt8]: UInt8] = [:]
        for rule in rules {
            var start = 0
            while start < rule.key.count {  // one step per label
                kindsBySuffix[Array(rule.key[start...]), default: 0] |= start == 0 ? rule.kind : 0
                start += 1 + Int(rule.key[start])
            }
        }
        var capacity = 16
        while capacity < kindsBySuffix.count * 2 { capacity *= 2 }  // load ≤ 1/2
        slots = Array(repeating: Slot(hash: 0, entry: 0), count: capacity)
        slotMask = capacity - 1
        // Sorted, so that the layout does not depend on dictionary order.
        for key in kindsBySuffix.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            insert(key, kinds: kindsBySuffix[key]!)
        }
    }

    /// A rule's label as lowercase ASCII: punycode (`xn--`) when it has other scalars.
    private static func asciiLabel(_ label: Substring) -> [UInt8]? {
        if label.utf8.allSatisfy({ $0 < 0x80 }) {
            return label.utf8.map { $0 &- 0x41 < 26 ? $0 | 0x20 : $0 }
        }
        guard let encoded = Punycode.encode(label.lowercased().unicodeScalars.map(\.value)) else { return nil }
        return Array("xn--".utf8) + encoded
    }

    private mutating func insert(_ key: [UInt8], kinds: UInt8) {
        let hash = NameHash.of(key.span)
        var slot = Int(truncatingIfNeeded: hash) & slotMask
        while slots[slot].entry != 0 { slot = (slot + 1) & slotMask }  // keys are distinct; load ≤ 1/2
        entries.append(Entry(keyOffset: Int32(keyBytes.count), keyLength: UInt8(key.count), kinds: kinds))
        keyBytes.append(contentsOf: key)
        slots[slot] = Slot(hash: hash, entry: Int32(entries.count))
    }

    /// The kinds of the entry whose key is the suffix held (last byte first) in
    /// `reversed[0..<length]`, or nil when there is none. Bytes are compared: a
    /// hash collision never matches.
    @inline(__always)
    private func kinds(ofReversed reversed: borrowing InlineArray<256, UInt8>, length: Int, hash: UInt64) -> UInt8? {
        var slot = Int(truncatingIfNeeded: hash) & slotMask
        while true {  // the table is never full: an empty slot ends the probe
            let index = Int(slots[slot].entry)
            if index == 0 { return nil }
            if slots[slot].hash == hash {
                let entry = entries[index - 1]
                if Int(entry.keyLength) == length {
                    let offset = Int(entry.keyOffset)
                    var same = true
                    for position in 0..<length where keyBytes[offset + position] != reversed[length - 1 - position] {
                        same = false
                        break
                    }
                    if same { return entry.kinds }
                }
            }
            slot = (slot + 1) & slotMask
        }
    }

    /// Index of the first label of the registrable domain (the longest public
    /// suffix plus one label) under both sections, or nil when the name is
    /// itself a public suffix.
    public func registrableDomainStart(_ name: DomainName) -> Int? {
        registrableDomainStarts(name).all
    }

    /// Where one walk of the suffix's rules leaves the registrable domain.
    private struct SuffixWalk {
        /// The first label of the longest public suffix found so far; the
        /// default rule `*` makes an unknown TLD a suffix.
        var suffixStart: Int
        var parentKinds: UInt8 = 0
        var done = false

        /// One more label to the left (`label`), whose suffix has rule bits
        /// `kinds` (nil: no rule ends with it, nor does any longer one).
        @inline(__always)
        mutating func step(label: Int, kinds: UInt8?) {
            guard !done else { return }
            if parentKinds & Kind.wildcard != 0 { suffixStart = label }
            guard let kinds else {
                done = true
                return
            }
            if kinds & Kind.exception != 0 {
                suffixStart = label + 1
                done = true
                return
            }
            if kinds & Kind.normal != 0 { suffixStart = label }
            parentKinds = kinds
        }

        var registrableStart: Int? { suffixStart > 0 ? suffixStart - 1 : nil }
    }

    /// The first label of the registrable domain under the ICANN section alone
    /// (`icann`: what a registrar sold; the name model scores it) and under
    /// both sections (`all`: a private suffix's tenant; the tunnelling
    /// detector counts per it), nil when the name is itself such a suffix.
    /// One pass over the name's bytes, allocation-free: it is on the packet path.
    public func registrableDomainStarts(_ name: DomainName) -> (icann: Int?, all: Int?) {
        let count = name.labelCount
        guard count > 0 else { return (nil, nil) }
        var icann = SuffixWalk(suffixStart: count - 1)
        var all = SuffixWalk(suffixStart: count - 1)
        // NameHash of the suffix from `label`, and its bytes (lowercase, last first),
        // gathered here: each DomainName accessor is a call across modules that
        // copies the name's storage, so every byte is read once.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        var reversed = InlineArray<256, UInt8>(repeating: 0)
        var gathered = 0
        var label = count - 1
        var end = name.length
        while label >= 0 && !(icann.done && all.done) {  // at most labelCount steps
            let first = name.labelStart(label)
            var offset = end - 1
            while offset >= first {  // the label's bytes, then its length octet (≤ 254 in all)
                var byte = name.wireByte(offset)
                if byte &- 0x41 < 26 { byte |= 0x20 }
                hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
                reversed[gathered] = byte
                gathered += 1
                offset -= 1
            }
            end = first
            let found = kinds(ofReversed: reversed, length: gathered, hash: hash)
            // An entry that only PRIVATE rules made has no ICANN bits: the ICANN
            // walk goes on through it unchanged, as if it had stopped there.
            icann.step(label: label, kinds: found.map { $0 & Kind.icannMask })
            all.step(label: label, kinds: found.map { ($0 | $0 >> Kind.privateShift) & Kind.icannMask })
            label -= 1
        }
        return (icann.registrableStart, all.registrableStart)
    }
}

/// RFC 3492 encoding, for the list's internationalised rules.
enum Punycode {
    static func encode(_ input: [UInt32]) -> [UInt8]? {
        let base: UInt32 = 36, tmin: UInt32 = 1, tmax: UInt32 = 26
        var output: [UInt8] = input.filter { $0 < 0x80 }.map { UInt8($0) }
        let basicCount = UInt32(output.count)
        var handled = basicCount
        if basicCount > 0 { output.append(UInt8(ascii: "-")) }
        var codePoint: UInt32 = 0x80, delta: UInt32 = 0, bias: UInt32 = 72
        func digit(_ value: UInt32) -> UInt8 { UInt8(value < 26 ? 0x61 + value : 0x30 + value - 26) }
        while handled < UInt32(input.count) {  // each pass handles ≥ 1 scalar
            guard let next = input.filter({ $0 >= codePoint }).min() else { return nil }
            let (product, overflow) = (next - codePoint).multipliedReportingOverflow(by: handled + 1)
            guard !overflow, delta <= UInt32.max - product else { return nil }
            delta += product
            codePoint = next
            for scalar in input {
                if scalar < codePoint { delta += 1 }
                if scalar == codePoint {
                    var q = delta
                    var k = base
                    while true {  // q shrinks by a factor ≥ 10 per step
                        let t = k <= bias ? tmin : (k >= bias + tmax ? tmax : k - bias)
                        if q < t { break }
                        output.append(digit(t + (q - t) % (base - t)))
                        q = (q - t) / (base - t)
                        k += base
                    }
                    output.append(digit(q))
                    bias = adapt(delta, points: handled + 1, first: handled == basicCount)
                    delta = 0
                    handled += 1
                }
            }
            delta += 1
            codePoint += 1
        }
        return output
    }

    private static func adapt(_ delta: UInt32, points: UInt32, first: Bool) -> UInt32 {
        var delta = first ? delta / 700 : delta / 2
        delta += delta / points
        var k: UInt32 = 0
        while delta > ((36 - 1) * 26) / 2 {  // delta shrinks by 35 per step
            delta /= 36 - 1
            k += 36
        }
        return k + (36 - 1 + 1) * delta / (delta + 38)
    }
}
