// SPDX-License-Identifier: GPL-2.0-or-later
public import DNSWire
public import ThreatDetection

/// The stateless detectors' data (the public suffix list and the trained name
/// model), read with the policy when some rule names a threat. A class: the
/// packet path reaches it through one reference, not a copy of every table's.
public final class ThreatModels: Sendable {
    public let suffixes: PublicSuffixList
    public let names: NameModel
    /// The files they came from, for `check`, `explain` and the stats.
    public let suffixFile: String
    public let modelFile: String
    /// The name model's recent results (a new policy starts with none: its model may differ).
    let nameScores = NameScoreCache()

    init(suffixes: PublicSuffixList, names: NameModel, suffixFile: String, modelFile: String) {
        self.suffixes = suffixes
        self.names = names
        self.suffixFile = suffixFile
        self.modelFile = modelFile
    }

    /// What the detectors make of one query: the name model when `names`,
    /// the tunnelling detector (which also records the query) when `tunnels`
    /// is given. The name model scores the ICANN registrable domain (what a
    /// DGA registers: not `d2908q01vomqb2` of `d2908q01vomqb2.cloudfront.net`,
    /// a platform's random tenant ID); the tunnelling detector counts per the
    /// registrable domain under both sections (each tenant its own domain).
    /// A name without the one the detector needs is not looked at by it.
    /// Allocation-free; `now` is monotonic nanoseconds.
    @inline(__always)
    public func assess(name: DomainName, type: QueryType, client: IPAddress, now: UInt64, names scoresNames: Bool,
                       tunnels: TunnelTracker?) -> ThreatAssessment {
        var assessment = ThreatAssessment()
        let starts = suffixes.registrableDomainStarts(name)
        if scoresNames, let start = starts.icann {
            let key = nameScores.key(name, registrableStart: start)
            if let known = nameScores.lookup(key) {
                (assessment.dga, assessment.dictionaryDGA) = known
            } else {
                let scored = names.assess(name, registrableStart: start)
                nameScores.store(key, scored)
                (assessment.dga, assessment.dictionaryDGA) = scored
            }
        }
        if let tunnels, let start = starts.all {
            assessment.tunneling = tunnels.observe(client: client, name: name, registrableStart: start, type: type, now: now)
        }
        return assessment
    }
}

extension ThreatDetectionConfig {
    /// The most bytes a model or suffix list may hold (the model is under 2 MB).
    static let maximumFileBytes = 16 << 20

    /// Where a model left out of the config is looked for, in order: installed
    /// by `scripts/install`, by a package, and the source tree it was built from.
    public var modelCandidates: [String] {
        model.map { [$0] } ?? ["/usr/local/share/dnsgate/threat-model.txt", "/usr/share/dnsgate/threat-model.txt",
                               Self.sourceTree + "/detect/threat-model.txt"]
    }

    /// Debian's `publicsuffix` package first (kept current by the system),
    /// then the copy dnsgate ships.
    public var publicSuffixListCandidates: [String] {
        publicSuffixList.map { [$0] } ?? ["/usr/share/publicsuffix/public_suffix_list.dat",
                                          "/usr/local/share/dnsgate/public_suffix_list.dat",
                                          Self.sourceTree + "/detect/public_suffix_list.dat"]
    }

    /// The checkout this binary was built from (three levels above this file).
    static var sourceTree: String {
        var path = Substring(#filePath)
        for _ in 0..<3 { path = path[..<(path.lastIndex(of: "/") ?? path.startIndex)] }
        return String(path)
    }
}

extension PolicyCompiler {
    /// Reads the suffix list and the model from the first candidate path of
    /// each that can be read; nil with errors naming what was tried otherwise.
    public func loadThreatModels(_ settings: ThreatDetectionConfig, configPath: String) -> (ThreatModels?, [Diagnostic]) {
        var diagnostics: [Diagnostic] = []
        func firstReadable(_ candidates: [String], _ what: String) -> (String, String)? {
            var failures: [String] = []
            for path in candidates {
                do {
                    let bytes = try readFile(path, ThreatDetectionConfig.maximumFileBytes)
                    guard bytes.count <= ThreatDetectionConfig.maximumFileBytes else {
                        failures.append("\(path): more than \(ThreatDetectionConfig.maximumFileBytes) bytes")
                        continue
                    }
                    return (path, String(decoding: bytes, as: UTF8.self))
                } catch {
                    failures.append("\(path): \(error)")
                }
            }
            diagnostics.append(Diagnostic(.error, file: configPath, line: settings.line,
                "the threat detectors need a \(what), and none could be read (\(failures.joined(separator: "; ")))"))
            return nil
        }
        guard let (suffixFile, suffixText) = firstReadable(settings.publicSuffixListCandidates, "public suffix list"),
              let (modelFile, modelText) = firstReadable(settings.modelCandidates, "threat model") else {
            return (nil, diagnostics)
        }
        do {
            let suffixes = try PublicSuffixList(text: suffixText, file: suffixFile)
            let names = try NameModel(text: modelText, file: modelFile)
            return (ThreatModels(suffixes: suffixes, names: names, suffixFile: suffixFile, modelFile: modelFile), diagnostics)
        } catch {
            diagnostics.append(Diagnostic(.error, file: error.file, line: error.line, error.message))
            return (nil, diagnostics)
        }
    }
}
