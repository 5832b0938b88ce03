// SPDX-License-Identifier: GPL-2.0-or-later
// STUBS: the shapes the packet path codes against; the detectors replace them.
public import DNSWire

/// The one error type of this module: a model or suffix list that cannot be read.
public struct ThreatDetectionError: Error, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var message: String
    public init(file: String, line: Int, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }
    public var description: String { line > 0 ? "\(file):\(line): \(message)" : "\(file): \(message)" }
}

/// The Public Suffix List, compiled for lookups that do not allocate.
public struct PublicSuffixList: Sendable {
    /// Parses the list's text (publicsuffix.org format); `file` names it in errors.
    public init(text: String, file: String) throws(ThreatDetectionError) {}

    /// Index of the first label of the registrable domain (the longest public
    /// suffix plus one label), or nil when the name is itself a public suffix.
    public func registrableDomainStart(_ name: DomainName) -> Int? {
        name.labelCount >= 2 ? name.labelCount - 2 : nil
    }
}

/// The trained per-name model (DGA, dictionary DGA).
public struct NameModel: Sendable {
    public init(text: String, file: String) throws(ThreatDetectionError) {}

    /// Scores the registrable domain of `name` (which starts at label `registrableStart`).
    public func assess(_ name: DomainName, registrableStart: Int) -> (dga: ThreatFinding, dictionaryDGA: ThreatFinding) {
        (.benign, .benign)
    }
}
