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

/// `dnsgate classify`'s view of one name: label, level, score.
func classify(_ text: String) throws -> (label: String, level: ConfidenceLevel, score: Float) {
    let (list, model) = try #require(shipped)
    let name = try #require(DomainName(text: text))
    guard let start = list.registrableDomainStart(name) else { return ("benign", .none, 0) }
    let (dga, dictionary) = model.assess(name, registrableStart: start)
    #expect(dga.level == .none || dictionary.level == .none, "both detectors fired for \(text)")
    if dictionary.level > .none { return ("dict_dga", dictionary.level, dictionary.score) }
    if dga.level > .none { return ("dga", dga.level, dga.score) }
    return ("benign", .none, 0)
}

@Suite struct NameModelParsingTests {
    /// A minimal well-formed model: flat trigram, one word, no popular names.
    static func minimalModel(replacing old: String? = nil, with new: String = "") -> String {
        var lines = ["dnsgate-name-model 1", "# comment",
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

    @Test func errorsNameFileAndLine() {
        #expect(error("")?.description == "m.txt: empty model")
        #expect(error("version 0\n")?.description.hasPrefix("m.txt:1: not a dnsgate-name-model 1 file") == true)
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
            let start = try #require(list.registrableDomainStart(name))
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
