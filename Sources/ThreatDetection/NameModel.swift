// SPDX-License-Identifier: GPL-2.0-or-later
import Crypto
public import DNSWire
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The trained per-name model (DGA, dictionary DGA), read from the text that
/// `scripts/train-detect` writes (`detect/threat-model.txt`, format at its top).
///
/// It scores the registrable label (the one label left of the ICANN public
/// suffix: what a registrar sold, see PublicSuffixList):
/// a character trigram log-likelihood under benign names, a word segmentation
/// against a word list, and two logistic regressions. The features must match
/// `features()` in scripts/train-detect exactly; the parity test checks it.
public struct NameModel: Sendable {
    static let versionPrefix = "dnsgate-name-model "
    /// 2: `popular` holds truncated SHA-256 digests (1 held FNV-1a hashes).
    static let version = versionPrefix + "2"
    static let classCount = 39
    static let boundary = 38
    static let minimumWord = 3
    static let maximumWord = 24
    static let dgaFeatureCount = 11
    static let dictFeatureCount = 5
    /// The printed score is sigmoid(logit / logitScale): thresholds compare logits.
    static let logitScale: Float = 4

    /// ln P(class | two previous classes), [(c1 * 39 + c2) * 39 + c3].
    private var trigram: [Float] = []
    /// The word list as a trie in breadth-first order: the top levels, which every
    /// walk reads, share a few cache lines (a hash of prefixes cost a miss each).
    private var trie: [TrieNode] = []
    /// The log-frequency of the word ending at each trie node (read only there).
    private var trieLogFrequencies: [Float] = []
    private var dgaWeights: [Float] = []
    private var dictWeights: [Float] = []
    private var dgaThresholds: [Float] = []
    private var dictThresholds: [Float] = []
    /// Popular registrable domains that look generated, never flagged: the first
    /// 8 bytes of the SHA-256 of their lowercase text. A keyed or cryptographic
    /// hash, because FNV-1a is invertible: a meet-in-the-middle search finds a
    /// generated name with a listed hash in about 2^32 steps.
    private var popular: [UInt64] = []
    private var popularMask = 0
    /// x·log2(x) for the entropy of a label (≤ 63 bytes).
    private var xLog2x: [Float] = []

    public init(text: String, file: String) throws(ThreatDetectionError) {
        var trigramSeen = [Bool](repeating: false, count: Self.classCount * Self.classCount)
        trigram = Array(repeating: 0, count: Self.classCount * Self.classCount * Self.classCount)
        var words: [(word: [UInt8], logFrequency: Float?)] = []
        var defaultLogFrequency: Float? = nil
        var popularHashes: [UInt64] = []
        var sawVersion = false
        /// The single-line sections seen, so that a repeated one is an error
        /// (the second would silently win).
        var seenKeys: Set<Substring> = []
        var lineNumber = 0
        func fail(_ message: String) -> ThreatDetectionError {
            ThreatDetectionError(file: file, line: lineNumber, message: message)
        }
        func floats(_ fields: ArraySlice<Substring>, count: Int, _ what: String) throws(ThreatDetectionError) -> [Float] {
            guard fields.count == count else { throw fail("\(what): \(count) numbers expected, found \(fields.count)") }
            var values: [Float] = []
            for field in fields {
                guard let value = Float(field), value.isFinite else { throw fail("\(what): bad number '\(field)'") }
                values.append(value)
            }
            return values
        }
        for line in textLines(text) {
            lineNumber += 1
            // Fields are separated by spaces; a line of whitespace alone is blank.
            let fields = textFields(line)
            guard let key = fields.first, !key.hasPrefix("#") else { continue }
            if !sawVersion {
                guard line == Self.version else {
                    if line.hasPrefix(Self.versionPrefix) {
                        throw fail("model format '\(line.prefix(40))' is not the one this dnsgate reads (\(Self.version)): "
                            + "retrain with scripts/train-detect or install the model shipped with this dnsgate")
                    }
                    throw fail("not a \(Self.version) file (first line '\(line.prefix(40))')")
                }
                sawVersion = true
                continue
            }
            if key != "trigram" && key != "word" && key != "popular" {
                guard !seenKeys.contains(key) else { throw fail("'\(key.prefix(40))' given twice") }
                seenKeys.insert(key)
            }
            switch key {
            case "trigram":
                guard fields.count == 3 + Self.classCount, let first = Int(fields[1]), let second = Int(fields[2]),
                      (0..<Self.classCount).contains(first), (0..<Self.classCount).contains(second) else {
                    throw fail("trigram: C1 C2 and \(Self.classCount) numbers expected")
                }
                let values = try floats(fields[3...], count: Self.classCount, "trigram")
                // Log-probabilities: finite and at most 0 (a sum of 64 of them stays finite).
                guard values.allSatisfy({ $0 <= 0 }) else { throw fail("trigram: log-probability above 0") }
                let context = first * Self.classCount + second
                guard !trigramSeen[context] else { throw fail("trigram \(first) \(second) given twice") }
                trigramSeen[context] = true
                for next in 0..<Self.classCount { trigram[context * Self.classCount + next] = values[next] }
            case "word":
                guard fields.count == 2 || fields.count == 3 else { throw fail("word: WORD [LOGFREQ] expected") }
                let word = Array(fields[1].utf8)
                guard (Self.minimumWord...Self.maximumWord).contains(word.count),
                      word.allSatisfy({ $0 &- 0x61 < 26 }) else {
                    throw fail("word: '\(fields[1].prefix(40))' is not \(Self.minimumWord)-\(Self.maximumWord) letters a-z")
                }
                let logFrequency = fields.count == 3 ? try floats(fields[2...], count: 1, "word")[0] : nil
                if let logFrequency, logFrequency > 0 { throw fail("word: log-frequency above 0") }
                words.append((word, logFrequency))
            case "word-logfreq-default":
                defaultLogFrequency = try floats(fields[1...], count: 1, "word-logfreq-default")[0]
            case "dga":
                dgaWeights = try floats(fields[1...], count: 1 + Self.dgaFeatureCount, "dga")
            case "dict":
                dictWeights = try floats(fields[1...], count: 1 + Self.dictFeatureCount, "dict")
            case "dga-thresholds":
                dgaThresholds = try floats(fields[1...], count: 3, "dga-thresholds")
            case "dict-thresholds":
                dictThresholds = try floats(fields[1...], count: 3, "dict-thresholds")
            case "popular":
                // Hex digits only: UInt64(_:radix:) would also take a sign.
                guard fields.count == 2, fields[1].utf8.count == 16,
                      fields[1].utf8.allSatisfy({ $0 &- 0x30 < 10 || ($0 | 0x20) &- 0x61 < 6 }),
                      let digest = UInt64(fields[1], radix: 16) else {
                    throw fail("popular: one digest of 16 hex digits expected")
                }
                popularHashes.append(digest)
            default:
                throw fail("unknown key '\(key.prefix(40))'")
            }
        }
        lineNumber = 0
        guard sawVersion else { throw fail("empty model") }
        guard trigramSeen.allSatisfy({ $0 }) else { throw fail("trigram: \(trigramSeen.count { !$0 }) contexts missing") }
        guard !dgaWeights.isEmpty, !dictWeights.isEmpty else { throw fail("dga or dict weights missing") }
        guard dgaThresholds.count == 3, dictThresholds.count == 3,
              dgaThresholds == dgaThresholds.sorted(), dictThresholds == dictThresholds.sorted() else {
            throw fail("thresholds missing or not LOW ≤ MEDIUM ≤ HIGH")
        }
        guard !words.isEmpty, let defaultLogFrequency else { throw fail("no words, or no word-logfreq-default") }
        guard defaultLogFrequency <= 0 else { throw fail("word-logfreq-default: log-frequency above 0") }

        (trie, trieLogFrequencies) = Self.buildTrie(words.map { ($0.word, $0.logFrequency ?? defaultLogFrequency) })

        var popularCapacity = 16
        while popularCapacity < popularHashes.count * 2 { popularCapacity *= 2 }
        popular = Array(repeating: 0, count: popularCapacity)
        popularMask = popularCapacity - 1
        for hash in popularHashes where hash != 0 {
            var slot = Int(truncatingIfNeeded: hash) & popularMask
            while popular[slot] != 0 && popular[slot] != hash { slot = (slot + 1) & popularMask }
            popular[slot] = hash
        }
        xLog2x = (0...64).map { $0 == 0 ? 0 : Float(Double($0) * log2(Double($0))) }
    }

    // MARK: Lexicon

    /// One trie node in 8 bytes (a walk misses the cache on deep nodes): a bit
    /// per letter that has a child, `wordEnds` when a word ends here, and the
    /// index of the first child (children are consecutive, in letter order).
    struct TrieNode: Sendable {
        var childMask: UInt32
        var firstChild: UInt32
        static let wordEnds: UInt32 = 1 << 31
    }

    /// Breadth-first layout from the sorted words: a node's words are a range of
    /// the sorted list, split by their next letter.
    static func buildTrie(_ unsorted: [(word: [UInt8], logFrequency: Float)]) -> (nodes: [TrieNode], logFrequencies: [Float]) {
        let words = unsorted.sorted { $0.word.lexicographicallyPrecedes($1.word) }
        var nodes: [TrieNode] = []
        var logFrequencies: [Float] = []
        var ranges: [(low: Int, high: Int, depth: Int)] = [(0, words.count, 0)]
        var index = 0
        while index < ranges.count {  // one node per distinct prefix: ends
            var (low, high, depth) = ranges[index]
            var node = TrieNode(childMask: 0, firstChild: UInt32(ranges.count))
            var logFrequency: Float = 0
            // Sorted: the word that ends here (if any, duplicates too) comes first.
            while low < high && words[low].word.count == depth {
                node.childMask |= TrieNode.wordEnds
                logFrequency = words[low].logFrequency
                low += 1
            }
            while low < high {
                let letter = words[low].word[depth]
                var end = low
                while end < high && words[end].word[depth] == letter { end += 1 }
                node.childMask |= 1 << UInt32(letter - UInt8(ascii: "a"))
                ranges.append((low, end, depth + 1))
                low = end
            }
            nodes.append(node)
            logFrequencies.append(logFrequency)
            index += 1
        }
        return (nodes, logFrequencies)
    }

    @inline(__always)
    static func characterClass(_ byte: UInt8) -> Int {
        if byte &- 0x61 < 26 { return Int(byte &- 0x61) }
        if byte &- 0x30 < 10 { return 26 + Int(byte &- 0x30) }
        return byte == UInt8(ascii: "-") ? 36 : 37
    }

    // MARK: Scoring

    /// Both logits of one label; the dict logit is nil when the label is not a
    /// concatenation of two or more words. Internal for the parity test.
    func logits(_ name: DomainName, label: Int) -> (dga: Float, dict: Float?) {
        let start = name.labelStart(label) + 1
        let length = name.labelStart(label + 1) - start  // 1...63
        guard length > 0 else { return (-100, nil) }
        var bytes = InlineArray<64, UInt8>(repeating: 0)
        var counts = InlineArray<39, UInt8>(repeating: 0)
        var total: Double = 0
        var previous2 = Self.boundary, previous1 = Self.boundary
        var digits = 0, letters = 0, vowels = 0, hyphens = 0, unusual = 0, digitRuns = 0
        var consonantRun = 0, longestConsonantRun = 0
        var previousWasDigit = false
        for index in 0..<length {
            var byte = name.wireByte(start + index)
            if byte &- 0x41 < 26 { byte |= 0x20 }
            bytes[index] = byte
            let characterClass = Self.characterClass(byte)
            total += Double(trigram[(previous2 * Self.classCount + previous1) * Self.classCount + characterClass])
            previous2 = previous1
            previous1 = characterClass
            counts[characterClass] &+= 1
            let isDigit = characterClass >= 26 && characterClass <= 35
            if isDigit {
                digits += 1
                if !previousWasDigit { digitRuns += 1 }
            }
            previousWasDigit = isDigit
            if characterClass < 26 {
                letters += 1
                switch byte {
                case UInt8(ascii: "a"), UInt8(ascii: "e"), UInt8(ascii: "i"), UInt8(ascii: "o"), UInt8(ascii: "u"):
                    vowels += 1
                    consonantRun = 0
                default:
                    consonantRun += 1
                    longestConsonantRun = max(longestConsonantRun, consonantRun)
                }
            } else {
                consonantRun = 0
            }
            if characterClass == 36 { hyphens += 1 }
            if characterClass == 37 { unusual += 1 }
        }
        total += Double(trigram[(previous2 * Self.classCount + previous1) * Self.classCount + Self.boundary])
        let n = Double(length)
        let logLikelihood = total / (n + 1)
        // Shannon entropy in bits: log2(n) - Σ c·log2(c) / n.
        var sumXLogX: Float = 0
        for cls in 0..<Self.classCount where counts[cls] > 0 { sumXLogX += xLog2x[Int(counts[cls])] }
        let entropy = Double(xLog2x[length]) / n - Double(sumXLogX) / n
        let segmentation = segment(bytes, length: length)
        let coverage = letters > 0 ? Double(segmentation.covered) / Double(letters) : 0
        let logLikelihoodRatio = min(60, max(-60, total + (n + 1) * log(Double(Self.classCount))))
        let cappedLength = Double(min(length, 40)) / 10

        var dga = Double(dgaWeights[0])
        dga += Double(dgaWeights[1]) * logLikelihood
        dga += Double(dgaWeights[2]) * logLikelihoodRatio / 10
        dga += Double(dgaWeights[3]) * cappedLength
        dga += Double(dgaWeights[4]) * Double(digits) / n
        dga += Double(dgaWeights[5]) * Double(min(digitRuns, 8))
        dga += Double(dgaWeights[6]) * (letters > 0 ? Double(vowels) / Double(letters) : 0)
        dga += Double(dgaWeights[7]) * Double(min(longestConsonantRun, 10))
        dga += Double(dgaWeights[8]) * coverage
        dga += Double(dgaWeights[9]) * entropy
        dga += Double(dgaWeights[10]) * Double(min(hyphens, 4))
        dga += Double(dgaWeights[11]) * Double(min(unusual, 4))

        guard letters >= 6, segmentation.covered == letters, digits == 0, unusual == 0, segmentation.words >= 2 else {
            return (Float(dga), nil)
        }
        let words = Double(segmentation.words)
        var dict = Double(dictWeights[0])
        dict += Double(dictWeights[1]) * logLikelihood
        dict += Double(dictWeights[2]) * cappedLength
        dict += Double(dictWeights[3]) * min(words, 8)
        dict += Double(dictWeights[4]) * Double(segmentation.covered) / words
        dict += Double(dictWeights[5]) * segmentation.logFrequencySum / words
        return (Float(dga), Float(dict))
    }

    /// The segmentation covering the most letters with words, then the fewest
    /// words (dynamic programming in the order scripts/train-detect uses).
    @inline(__always)
    private func segment(_ bytes: InlineArray<64, UInt8>, length: Int) -> (covered: Int, words: Int, logFrequencySum: Double) {
        var covered = InlineArray<64, Int16>(repeating: -1)  // -1: position not reached
        var wordCounts = InlineArray<64, Int16>(repeating: 0)
        var frequencySums = InlineArray<64, Double>(repeating: 0)
        covered[0] = 0
        for start in 0..<length {
            // Every position is reached: skipping a byte always is a way forward.
            // (Offers are written out: a local function capturing the arrays costs
            // a dynamic exclusivity check per access.)
            if covered[start + 1] < 0 || covered[start] > covered[start + 1]
                || (covered[start] == covered[start + 1] && wordCounts[start] < wordCounts[start + 1]) {
                covered[start + 1] = covered[start]
                wordCounts[start + 1] = wordCounts[start]
                frequencySums[start + 1] = frequencySums[start]
            }
            var node = 0
            var end = start
            while end < length && end - start < Self.maximumWord {  // ≤ 24 steps
                let letter = bytes[end] &- UInt8(ascii: "a")
                guard letter < 26 else { break }
                let bit: UInt32 = 1 << UInt32(letter)
                let current = trie[node]
                guard current.childMask & bit != 0 else { break }  // no word starts like this
                node = Int(current.firstChild) + (current.childMask & (bit &- 1)).nonzeroBitCount
                end += 1
                if trie[node].childMask & TrieNode.wordEnds != 0 && end - start >= Self.minimumWord {
                    let candidateCovered = covered[start] + Int16(end - start), candidateWords = wordCounts[start] + 1
                    if covered[end] < 0 || candidateCovered > covered[end]
                        || (candidateCovered == covered[end] && candidateWords < wordCounts[end]) {
                        covered[end] = candidateCovered
                        wordCounts[end] = candidateWords
                        frequencySums[end] = frequencySums[start] + Double(trieLogFrequencies[node])
                    }
                }
            }
        }
        return (Int(covered[length]), Int(wordCounts[length]), frequencySums[length])
    }

    @inline(__always)
    private static func level(_ logit: Float, _ thresholds: [Float]) -> ConfidenceLevel {
        if logit >= thresholds[2] { return .high }
        if logit >= thresholds[1] { return .medium }
        if logit >= thresholds[0] { return .low }
        return .none
    }

    /// The popular-list digest of a registrable domain: the first 8 bytes
    /// (big-endian) of the SHA-256 of its lowercase text, labels joined by dots.
    static func popularDigest(_ name: DomainName, fromLabel start: Int) -> UInt64 {
        var text: [UInt8] = []
        text.reserveCapacity(name.length)
        for label in start..<name.labelCount {  // ≤ 127 labels, ≤ 254 bytes in all
            if label > start { text.append(UInt8(ascii: ".")) }
            for offset in name.labelStart(label) + 1..<name.labelStart(label + 1) {
                var byte = name.wireByte(offset)
                if byte &- 0x41 < 26 { byte |= 0x20 }
                text.append(byte)
            }
        }
        var digest: UInt64 = 0
        for byte in SHA256.hash(data: text).prefix(8) { digest = digest << 8 | UInt64(byte) }
        return digest
    }

    /// Asked only of a name the model flags: the digest costs more than the scoring.
    private func isPopular(_ name: DomainName, registrableStart: Int) -> Bool {
        let digest = Self.popularDigest(name, fromLabel: registrableStart)
        var slot = Int(truncatingIfNeeded: digest) & popularMask
        while popular[slot] != 0 {  // load ≤ 1/2: ends
            if popular[slot] == digest { return true }
            slot = (slot + 1) & popularMask
        }
        return false
    }

    /// Scores the registrable domain of `name` (which starts at label
    /// `registrableStart`; the ICANN one, see PublicSuffixList). Each detector's
    /// finding stands on its own, so that a DICT_DGA rule sees a dictionary
    /// name the DGA detector rates higher, and the other way round.
    public func assess(_ name: DomainName, registrableStart: Int) -> (dga: ThreatFinding, dictionaryDGA: ThreatFinding) {
        guard registrableStart >= 0, registrableStart < name.labelCount else { return (.benign, .benign) }
        let (dgaLogit, dictLogit) = logits(name, label: registrableStart)
        let dgaLevel = Self.level(dgaLogit, dgaThresholds)
        let dictLevel = dictLogit.map { Self.level($0, dictThresholds) } ?? .none
        if dgaLevel == .none && dictLevel == .none { return (.benign, .benign) }
        if isPopular(name, registrableStart: registrableStart) { return (.benign, .benign) }
        let dga = dgaLevel > .none ? ThreatFinding(level: dgaLevel, score: Self.score(dgaLogit)) : .benign
        let dictionary = dictLevel > .none ? ThreatFinding(level: dictLevel, score: Self.score(dictLogit ?? 0)) : .benign
        return (dga, dictionary)
    }

    @inline(__always)
    static func score(_ logit: Float) -> Float { 1 / (1 + Float(exp(Double(-logit / logitScale)))) }
}
