// SPDX-License-Identifier: GPL-2.0-or-later
public import DNSWire

/// What a threat rule names instead of a domain list (Route 53 DNS Firewall
/// Advanced's `DnsThreatProtection`).
public enum Threat: UInt8, Sendable, CaseIterable {
    /// Names made by a domain-generation algorithm from random characters.
    case dga
    /// Names made by a domain-generation algorithm from dictionary words.
    case dictionaryDGA
    /// Data carried in query names (and answers) through a tunnel.
    case tunneling

    /// The name in config, stats and logs.
    public var configName: String {
        switch self {
        case .dga: "DGA"
        case .dictionaryDGA: "DICT_DGA"
        case .tunneling: "DNS_TUNNELING"
        }
    }

    public init?(configName: String) {
        guard let threat = Self.allCases.first(where: { $0.configName == configName }) else { return nil }
        self = threat
    }

    /// The order `dnsgate classify` breaks a tie of levels in: a name both
    /// name detectors rate alike is labelled a dictionary DGA (the dictionary
    /// detector only looks at word concatenations, so it is the sharper word).
    public static let classifyPrecedence: [Threat] = [.dictionaryDGA, .dga, .tunneling]

    /// The label `dnsgate classify` prints.
    public var classifyLabel: String {
        switch self {
        case .dga: "dga"
        case .dictionaryDGA: "dict_dga"
        case .tunneling: "tunnel"
        }
    }
}

/// How sure a detector is; a rule at threshold T fires on every detection at
/// T or above (Route 53's `ConfidenceThreshold`).
public enum ConfidenceLevel: UInt8, Sendable, Comparable, CaseIterable {
    case none = 0, low, medium, high

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    /// `LOW`, `MEDIUM`, `HIGH`; `-` for none.
    public var configName: String {
        switch self {
        case .none: "-"
        case .low: "LOW"
        case .medium: "MEDIUM"
        case .high: "HIGH"
        }
    }

    public init?(configName: String) {
        guard let level = Self.allCases.first(where: { $0 != .none && $0.configName == configName }) else { return nil }
        self = level
    }
}

/// One detector's view of one query.
public struct ThreatFinding: Sendable, Equatable {
    public var level: ConfidenceLevel
    /// The detector's score, 0…1 (higher is more suspicious).
    public var score: Float

    public init(level: ConfidenceLevel, score: Float) {
        self.level = level
        self.score = score
    }

    public static let benign = ThreatFinding(level: .none, score: 0)
}

/// Every detector's view of one query. Allocation-free to build and read.
public struct ThreatAssessment: Sendable, Equatable {
    public var dga = ThreatFinding.benign
    public var dictionaryDGA = ThreatFinding.benign
    public var tunneling = ThreatFinding.benign

    public init() {}

    @inline(__always)
    public subscript(threat: Threat) -> ThreatFinding {
        get {
            switch threat {
            case .dga: dga
            case .dictionaryDGA: dictionaryDGA
            case .tunneling: tunneling
            }
        }
        set {
            switch threat {
            case .dga: dga = newValue
            case .dictionaryDGA: dictionaryDGA = newValue
            case .tunneling: tunneling = newValue
            }
        }
    }

    /// The strongest finding of `threats` (ties go to the earlier threat), for
    /// `dnsgate classify`.
    public func strongest(of threats: [Threat]) -> (threat: Threat, finding: ThreatFinding)? {
        var best: (threat: Threat, finding: ThreatFinding)? = nil
        for threat in threats where self[threat].level > .none {
            if best == nil || self[threat].level > best!.finding.level { best = (threat, self[threat]) }
        }
        return best
    }
}
