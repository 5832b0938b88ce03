// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import Foundation
import Testing
@testable import ThreatDetection

let trainedModelPath = repositoryRoot + "/detect/threat-model.txt"
let parityFixturePath = repositoryRoot + "/Tests/ThreatDetectionTests/Fixtures/name-scores.tsv"
let sharedDataPath = repositoryRoot + "/../shared/data"
let trancoPath = sharedDataPath + "/benign/tranco_top10k_2025-06.csv"

let trainedModelPresent = FileManager.default.fileExists(atPath: trainedModelPath)
    && FileManager.default.fileExists(atPath: shippedListPath)

/// The shipped list and the trained model, read once.
let shipped: (list: PublicSuffixList, model: NameModel)? = {
    guard trainedModelPresent,
          let listText = try? String(contentsOfFile: shippedListPath, encoding: .utf8),
          let modelText = try? String(contentsOfFile: trainedModelPath, encoding: .utf8) else { return nil }
    return (try! PublicSuffixList(text: listText, file: shippedListPath), try! NameModel(text: modelText, file: trainedModelPath))
}()

/// `dnsgate classify`'s view of one name: label, level, score. The ICANN
/// registrable domain is scored, as ThreatModels.assess does.
func classify(_ text: String) throws -> (label: String, level: ConfidenceLevel, score: Float) {
    let (list, model) = try #require(shipped)
    let name = try #require(DomainName(text: text))
    guard let start = list.registrableDomainStarts(name).icann else { return ("benign", .none, 0) }
    return classifyLabel(model.assess(name, registrableStart: start))
}

/// The one label `dnsgate classify` prints for both name findings.
func classifyLabel(_ findings: (dga: ThreatFinding, dictionaryDGA: ThreatFinding))
    -> (label: String, level: ConfidenceLevel, score: Float) {
    var assessment = ThreatAssessment()
    (assessment.dga, assessment.dictionaryDGA) = findings
    guard let (threat, finding) = assessment.strongest(of: Threat.classifyPrecedence) else { return ("benign", .none, 0) }
    return (threat.classifyLabel, finding.level, finding.score)
}

@Suite struct NameModelParsingTests {
    /// A minimal well-formed model: flat trigram, one word, no popular names.
    static func minimalModel(replacing old: String? = nil, with new: String = "") -> String {
        var lines = ["dnsgate-name-model 2", "# comment",
                     "dga 0 0 0 0 0 0 0 0 0 0 0 0", "dict 0 0 0 0 0 0",
                     "dga-thresholds 1 2 3", "dict-thresholds 1 2 3", "word-logfreq-default -9.5", "word river -2.5"]
        for first in 0..<39 {
            for second in 0..<39 { lines.append("trigram \(first) \(second) " + Array(repeating: "-3.6", count: 39).joined(separator: " ")) }
        }
        var text = lines.joined(separator: "\n") + "\n"
        if let old { text = text.replacingOccurrences(of: old, with: new) }
        return text
    }

    func error(_ text: String) -> ThreatDetectionError? {
        do {
            _ = try NameModel(text: text, file: "m.txt")
            return nil
        } catch {
            return error
        }
    }

    @Test func aMinimalModelParsesAndScores() throws {
        let model = try NameModel(text: Self.minimalModel(), file: "m.txt")
        let name = try #require(DomainName(text: "riverriver.com"))
        // Zero weights: logit 0 is below every threshold.
        #expect(model.assess(name, registrableStart: 0) == (.benign, .benign))
        #expect(model.logits(name, label: 0).dict == 0)  // two words: the dict detector looks at it
        #expect(model.logits(try #require(DomainName(text: "river.com")), label: 0).dict == nil)
    }

    /// Weights that make every name a HIGH finding of both detectors (`riverriver` is two words).
    static let bothFire = minimalModel(replacing: "dga 0 0", with: "dga 10 0").replacingOccurrences(of: "dict 0 0", with: "dict 10 0")

    @Test func bothDetectorsReportTheirOwnFinding() throws {
        let name = try #require(DomainName(text: "riverriver.com"))
        let both = try NameModel(text: Self.bothFire, file: "m.txt").assess(name, registrableStart: 0)
        #expect(both.dga.level == .high && both.dictionaryDGA.level == .high, "\(both)")
        #expect(classifyLabel(both).label == "dict_dga", "a tie is labelled dict_dga")
        // DGA HIGH, dict LOW: a DICT_DGA rule at LOW still sees it; classify says dga.
        let dgaHigher = try NameModel(text: Self.bothFire.replacingOccurrences(of: "dict 10 0", with: "dict 1.5 0"), file: "m.txt")
            .assess(name, registrableStart: 0)
        #expect(dgaHigher.dga.level == .high && dgaHigher.dictionaryDGA.level == .low, "\(dgaHigher)")
        #expect(classifyLabel(dgaHigher).label == "dga" && classifyLabel(dgaHigher).level == .high)
        // And the other way round.
        let dictHigher = try NameModel(text: Self.bothFire.replacingOccurrences(of: "dga 10 0", with: "dga 1.5 0"), file: "m.txt")
            .assess(name, registrableStart: 0)
        #expect(dictHigher.dga.level == .low && dictHigher.dictionaryDGA.level == .high, "\(dictHigher)")
        #expect(classifyLabel(dictHigher).label == "dict_dga")
    }

    @Test func popularDomainsAreKeptAsSHA256Digests() throws {
        // The first 8 bytes of SHA-256("riverriver.com"), from Python's hashlib.
        let listed = try NameModel(text: Self.bothFire + "popular 42602f06626be78b\n", file: "m.txt")
        for text in ["riverriver.com", "www.RiverRiver.COM"] {
            let name = try #require(DomainName(text: text))
            #expect(listed.assess(name, registrableStart: name.labelCount - 2) == (.benign, .benign), "\(text)")
        }
        let other = try #require(DomainName(text: "riverriver.net"))
        #expect(listed.assess(other, registrableStart: 0).dga.level == .high)
        // The old format's FNV-1a hash of the same domain no longer matches anything.
        let fnv = String(try #require(DomainName(text: "riverriver.com")).suffixHash(fromLabel: 0), radix: 16)
        let oldStyle = try NameModel(text: Self.bothFire + "popular \(String(repeating: "0", count: 16 - fnv.count) + fnv)\n",
                                     file: "m.txt")
        #expect(oldStyle.assess(try #require(DomainName(text: "riverriver.com")), registrableStart: 0).dga.level == .high)
    }

    @Test func whitespaceOnlyLinesAreBlank() throws {
        for blank in [" ", "\t", "   \r", " \t "] {
            _ = try NameModel(text: Self.minimalModel(replacing: "# comment", with: blank), file: "m.txt")
        }
        // CRLF line ends ("\r\n" is a single Character to Swift).
        _ = try NameModel(text: Self.minimalModel().replacingOccurrences(of: "\n", with: "\r\n"), file: "m.txt")
    }

    /// Every malformed model is an error naming the file and line; none traps.
    @Test func malformedModelsAreErrorsWithTheirLine() {
        let longWord = String(repeating: "a", count: 1000)
        let cases: [(old: String, new: String, line: Int, message: String)] = [
            ("dga-thresholds 1 2 3", "dga-thresholds 1 nan 3", 5, "dga-thresholds: bad number 'nan'"),
            ("dga-thresholds 1 2 3", "dga-thresholds 1 inf 3", 5, "dga-thresholds: bad number 'inf'"),
            ("dga-thresholds 1 2 3", "dga-thresholds 1 1e999 3", 5, "dga-thresholds: bad number '1e999'"),
            ("dga-thresholds 1 2 3", "dga-thresholds -infinity 2 3", 5, "dga-thresholds: bad number '-infinity'"),
            ("dga-thresholds 1 2 3", "dga-thresholds 1 2 3 4", 5, "dga-thresholds: 3 numbers expected, found 4"),
            ("dga-thresholds 1 2 3", "dga-thresholds", 5, "dga-thresholds: 3 numbers expected, found 0"),
            ("dga 0 0 0 0 0 0 0 0 0 0 0 0", "dga", 3, "dga: 12 numbers expected, found 0"),
            ("dict 0 0 0 0 0 0", "dict 0 0 0 0 0 NaN", 4, "dict: bad number 'NaN'"),
            ("word-logfreq-default -9.5", "word-logfreq-default", 7, "word-logfreq-default: 1 numbers expected, found 0"),
            ("word-logfreq-default -9.5", "word-logfreq-default 2", 0, "word-logfreq-default: log-frequency above 0"),
            ("word river -2.5", "word", 8, "word: WORD [LOGFREQ] expected"),
            ("word river -2.5", "word river -2.5 1", 8, "word: WORD [LOGFREQ] expected"),
            ("word river -2.5", "word river nan", 8, "word: bad number 'nan'"),
            ("word river -2.5", "word river 3", 8, "word: log-frequency above 0"),
            ("word river -2.5", "word rivér", 8, "word: 'rivér' is not 3-24 letters a-z"),
            ("word river -2.5", "word " + longWord, 8, "word: '\(longWord.prefix(40))' is not 3-24 letters a-z"),
            ("word river -2.5", "word \u{0}\u{0}\u{0}", 8, "word: '\u{0}\u{0}\u{0}' is not 3-24 letters a-z"),
            ("trigram 0 0 ", "trigram 0 ", 9, "trigram: C1 C2 and 39 numbers expected"),
            ("trigram 0 0 ", "trigram 39 0 ", 9, "trigram: C1 C2 and 39 numbers expected"),
            ("trigram 0 0 ", "trigram -1 0 ", 9, "trigram: C1 C2 and 39 numbers expected"),
            ("trigram 0 0 ", "trigram 99999999999999999999999 0 ", 9, "trigram: C1 C2 and 39 numbers expected"),
            ("trigram 0 0 -3.6", "trigram 0 0 inf", 9, "trigram: bad number 'inf'"),
            ("trigram 0 0 -3.6", "trigram 0 0 3.6", 9, "trigram: log-probability above 0"),
            ("trigram 0 1 ", "trigram 0 0 ", 10, "trigram 0 0 given twice"),
            ("dict 0 0 0 0 0 0", "dga 0 0 0 0 0 0 0 0 0 0 0 0", 4, "'dga' given twice"),
            ("dict-thresholds 1 2 3", "dga-thresholds 1 2 3", 6, "'dga-thresholds' given twice"),
            ("# comment", "popular", 2, "popular: one digest of 16 hex digits expected"),
            ("# comment", "popular 1234", 2, "popular: one digest of 16 hex digits expected"),
            ("# comment", "popular 42602f06626be78b00", 2, "popular: one digest of 16 hex digits expected"),
            ("# comment", "popular 42602f06626be78z", 2, "popular: one digest of 16 hex digits expected"),
            ("# comment", "popular +2602f06626be78b", 2, "popular: one digest of 16 hex digits expected"),
            ("# comment", "trigram", 2, "trigram: C1 C2 and 39 numbers expected"),
            ("# comment", "\u{FEFF}dga", 2, "unknown key '\u{FEFF}dga'"),
            ("dga 0 0 0 0 0 0 0 0 0 0 0 0\n", "", 0, "dga or dict weights missing"),
            ("dga-thresholds 1 2 3\n", "", 0, "thresholds missing or not LOW ≤ MEDIUM ≤ HIGH"),
            ("word-logfreq-default -9.5\n", "", 0, "no words, or no word-logfreq-default"),
            ("word river -2.5\n", "", 0, "no words, or no word-logfreq-default"),
        ]
        for (old, new, line, message) in cases {
            let text = Self.minimalModel(replacing: old, with: new)
            #expect(text != Self.minimalModel(), "'\(old)' is in the minimal model")
            let found = error(text)
            #expect(found?.file == "m.txt" && found?.line == line && found?.message == message,
                    "'\(new.prefix(60))': \(String(describing: found))")
        }
    }

    /// Random damage to a model (lines cut, fields dropped, numbers and bytes
    /// replaced) is an error or a model, never a trap.
    @Test func randomlyDamagedModelsNeverTrap() throws {
        var generator = SplitMix(state: 20250611)
        let lines = Self.bothFire.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let replacements = ["", " ", "nan", "-inf", "1e40", "-1e40", "0x1p-3", "99999999999999999999", "-", "é", "\u{0}",
                            String(repeating: "z", count: 300), "dga", "trigram", "word", "popular", "dnsgate-name-model 2"]
        let name = try #require(DomainName(text: "riverriver.com"))
        for _ in 0..<150 {
            var damaged = lines
            for _ in 0..<1 + Int(generator.next() % 3) {
                let index = Int(generator.next() % UInt64(damaged.count))
                var fields = damaged[index].split(separator: " ").map(String.init)
                switch generator.next() % 4 {
                case 0: damaged[index] = String(damaged[index].prefix(Int(generator.next() % 40)))
                case 1: if !fields.isEmpty { fields.remove(at: Int(generator.next() % UInt64(fields.count))) }
                    damaged[index] = fields.joined(separator: " ")
                case 2: if !fields.isEmpty {
                        fields[Int(generator.next() % UInt64(fields.count))] = replacements[Int(generator.next() % UInt64(replacements.count))]
                    }
                    damaged[index] = fields.joined(separator: " ")
                default: damaged.insert(replacements[Int(generator.next() % UInt64(replacements.count))], at: index)
                }
            }
            if let model = try? NameModel(text: damaged.joined(separator: "\n"), file: "m.txt") {
                _ = model.assess(name, registrableStart: 0)
            }
        }
    }

    @Test func errorsNameFileAndLine() {
        #expect(error("")?.description == "m.txt: empty model")
        #expect(error("version 0\n")?.description.hasPrefix("m.txt:1: not a dnsgate-name-model 2 file") == true)
        #expect(error(Self.minimalModel(replacing: "dnsgate-name-model 2", with: "dnsgate-name-model 1"))?.description
            .hasPrefix("m.txt:1: model format 'dnsgate-name-model 1' is not the one this dnsgate reads (dnsgate-name-model 2)")
            == true)
        #expect(error(Self.minimalModel(replacing: "dga-thresholds 1 2 3", with: "dga-thresholds 1 x 3"))?.description
            == "m.txt:5: dga-thresholds: bad number 'x'")
        #expect(error(Self.minimalModel(replacing: "dict 0 0 0 0 0 0", with: "dict 0 0"))?.description
            == "m.txt:4: dict: 6 numbers expected, found 2")
        #expect(error(Self.minimalModel(replacing: "word river", with: "word Ri"))?.line == 8)
        #expect(error(Self.minimalModel(replacing: "# comment", with: "bogus 1"))?.description == "m.txt:2: unknown key 'bogus'")
        #expect(error(Self.minimalModel(replacing: "trigram 38 38 ", with: "# "))?.description == "m.txt: trigram: 1 contexts missing")
        #expect(error(Self.minimalModel(replacing: "dga-thresholds 1 2 3", with: "dga-thresholds 3 2 1"))?.line == 0)
    }
}

@Suite(.enabled(if: trainedModelPresent, "detect/threat-model.txt missing: run scripts/train-detect"))
struct TrainedNameModelTests {
    @Test func clearCutNames() throws {
        for benign in ["google.com", "www.wikipedia.org", "mail.example.co.uk", "github.com", "bbc.co.uk", "a.b.c"] {
            #expect(try classify(benign).label == "benign", "\(benign)")
        }
        let random = try classify("xkqzvbtrplmwhgfdsjcn.com")
        #expect(random.label == "dga" && random.level == .high && random.score > 0.5)
        #expect(try classify("q7x2kd9vw0zj4r8bn3m5.net").label == "dga")
        let words = try classify("windowcultureprobablyequalsuitcasedream.com")
        #expect(words.label == "dict_dga")
    }

    /// A platform's tenant IDs (PRIVATE-section suffixes) are random by design:
    /// the platform's own domain is scored, so none is flagged.
    @Test func platformTenantNamesAreNotFlagged() throws {
        var generator = SplitMix(state: 7)
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789"), letters = Array("abcdefghijklmnopqrstuvwxyz")
        func random(_ count: Int, _ from: [Character]) -> String {
            String((0..<count).map { _ in from[Int(generator.next() % UInt64(from.count))] })
        }
        var flagged: [String] = []
        for index in 0..<2000 {
            let tenant: String
            switch index % 5 {
            case 0: tenant = "d" + random(12 + index % 2, alphabet) + ".cloudfront.net"
            case 1: tenant = "foo-" + random(12, Array("0123456789abcdef")) + ".azurewebsites.net"
            case 2: tenant = random(16, letters) + ".firebaseapp.com"
            case 3: tenant = random(14, alphabet) + ".github.io"
            default: tenant = "www." + random(18, letters) + ".herokuapp.com"
            }
            if try classify(tenant).level > .none { flagged.append(tenant) }
        }
        for text in ["d2908q01vomqb2.cloudfront.net", "foo-9f8e7d6c5b4a.azurewebsites.net", "bdtbgkwhsvtobpxq.firebaseapp.com"] {
            if try classify(text).level > .none { flagged.append(text) }
        }
        #expect(flagged.isEmpty, "\(flagged.count) flagged, e.g. \(flagged.prefix(3))")
        // A generated name registered at a registrar still is.
        #expect(try classify("d2908q01vomqb2x7k.net").level > .none)
    }

    @Test func unusualBytesAreScoredWithoutCrashing() throws {
        for text in ["a_b=c+d.example.com", "_dmarc.example.com", "=.com", "\\255\\001.net", "com", "-.-"] {
            _ = try classify(text)
        }
    }

    /// The Swift scorer gives the scores scripts/train-detect computed (synthetic names).
    @Test(.enabled(if: FileManager.default.fileExists(atPath: parityFixturePath), "parity fixture missing"))
    func parityWithTheTrainingScript() throws {
        let (list, model) = try #require(shipped)
        var checked = 0
        for line in try String(contentsOfFile: parityFixturePath, encoding: .utf8).split(separator: "\n")
        where !line.hasPrefix("#") {
            let fields = line.split(separator: "\t")
            try #require(fields.count == 6)
            let name = try #require(DomainName(text: fields[0]))
            let start = try #require(list.registrableDomainStarts(name).icann)
            let (dga, dict) = model.logits(name, label: start)
            let expectedDGA = try #require(Float(fields[4])), expectedDict = try #require(Float(fields[5]))
            #expect(abs(dga - expectedDGA) < 1e-3, "\(fields[0]) dga \(dga) vs \(expectedDGA)")
            #expect(abs((dict ?? -100) - expectedDict) < 1e-3, "\(fields[0]) dict \(String(describing: dict)) vs \(expectedDict)")
            let (label, level, score) = try classify(String(fields[0]))
            #expect(label == fields[1] && level.configName == fields[2], "\(fields[0])")
            #expect(abs(score - (Float(fields[3]) ?? -1)) < 1e-3, "\(fields[0]) score")
            checked += 1
        }
        #expect(checked >= 50)
    }

    /// No Tranco top-10k registrable domain is flagged at any level (shared data, when present).
    @Test(.enabled(if: FileManager.default.fileExists(atPath: trancoPath), "no \(trancoPath): shared data absent"))
    func noTrancoDomainIsFlagged() throws {
        var flagged: [String] = []
        for line in try String(contentsOfFile: trancoPath, encoding: .utf8).split(whereSeparator: \.isNewline) {
            let domain = String(line.split(separator: ",").last ?? "")
            guard domain != "Domain", !domain.isEmpty else { continue }
            if try classify(domain).level > .none { flagged.append(domain) }
        }
        #expect(flagged.isEmpty, "\(flagged.prefix(5))")
    }
}

