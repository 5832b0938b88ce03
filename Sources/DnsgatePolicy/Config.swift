// SPDX-License-Identifier: GPL-2.0-or-later
public import DNSWire
public import ThreatDetection

/// What dnsgate does with a packet it cannot decide on.
public enum FailMode: String, Sendable, CaseIterable { case open, closed }

/// What happens to a packet: let it through or drop it.
public enum PacketAction: String, Sendable, CaseIterable { case pass, drop }

public enum RuleAction: String, Sendable, CaseIterable { case allow = "ALLOW", block = "BLOCK", alert = "ALERT" }

public enum BlockResponse: String, Sendable, CaseIterable {
    case nxdomain = "NXDOMAIN", nodata = "NODATA", refused = "REFUSED", drop = "DROP", override = "OVERRIDE"
}

/// The syntax of a list file. `addresses` (one address or prefix a line) is an
/// `ip_lists:` format only: a domain list read in it loads nothing.
public enum ListFormat: String, Sendable, CaseIterable { case auto, domains, hosts, adblock, rpz, addresses }

/// The config file as written (SPEC §2), before lists are read.
public struct DnsgateConfig: Sendable {
    public var path: String
    public var queues: [UInt16] = [0]
    public var failMode: FailMode = .open
    /// A UDP/53 packet that cannot be read as a DNS question: a lenient server
    /// may still answer it, so it is dropped unless the operator says otherwise.
    public var undecodable: PacketAction = .drop
    /// A packet that finds its queue full. Dropped unless the operator says
    /// otherwise, in both fail modes: a flood is in an attacker's hands, and
    /// letting its overflow through would let blocked queries through with it.
    public var onOverload: PacketAction = .drop
    /// Port of the transparent listener the shipped rules redirect TCP/53 to.
    public var tcpPort: UInt16 = 5053
    /// Packets the kernel holds per queue before the fail mode applies.
    public var queueLength: UInt32 = 4096
    /// CPUs the workers are pinned to, in queue order; nil = queue i on CPU i,
    /// empty = not pinned.
    public var workerCPUs: [Int]? = nil
    /// Lines of `queues` and `worker_cpus` in the config file (0 when absent),
    /// for what `check` finds against the machine (`DeploymentCheck`).
    public var queuesLine = 0
    public var workerCPUsLine = 0
    public var statsSocket = "/run/dnsgate/dnsgate.sock"
    /// Group owning the stats socket (mode 0660): its members may read stats;
    /// only root and the daemon's own user may reload.
    public var statsSocketGroup: String? = nil
    /// Started as root, the daemon becomes this user once its queues and
    /// sockets are open, keeping only CAP_NET_ADMIN and CAP_NET_RAW.
    public var user: String? = nil
    /// Where the last good copy of every remote list is kept. Like every path
    /// of the config, absolute once read (see `ConfigPaths`).
    public var cacheDirectory = "/var/cache/dnsgate"
    public var queryLog: QueryLogConfig? = nil
    public var blockTTL: UInt32 = 60
    public var extendedError = true
    public var domainLists: [DomainListConfig] = []
    public var ruleGroups: [RuleGroupConfig] = []
    public var threatDetection = ThreatDetectionConfig()

    public init(path: String) { self.path = path }
}

public struct QueryLogConfig: Sendable, Equatable {
    public var path: String
    public var actions: Set<RuleAction>
    /// Queries no rule matched are logged too (`NO_MATCH` in `actions`).
    public var logsNoMatch = false

    public init(path: String, actions: Set<RuleAction>, logsNoMatch: Bool = false) {
        self.path = path
        self.actions = actions
        self.logsNoMatch = logsNoMatch
    }
}

public struct DomainListConfig: Sendable {
    public enum Source: Sendable, Equatable {
        case inline([String])
        case file(String)
        case url(RemoteSource)
    }
    public var name: String
    public var source: Source
    public var format: ListFormat
    public var matchSubdomains: Bool
    /// Line of the list's definition in the config file.
    public var line: Int
    /// `allow_empty: true`: the list may load with no entries, or with most of
    /// its lines unreadable. Otherwise either is an error (the file or feed
    /// has collapsed: truncated, replaced by an error page, garbage).
    public var allowEmpty = false
    /// Largest list file read (`max_size` of a `file:` list); a remote list's
    /// limit is its `RemoteSource.maximumBytes`.
    public var maximumFileBytes = DomainListConfig.defaultMaximumFileBytes

    /// Room for about ten million names; a file beyond it is refused before a
    /// byte of it is read, so that a runaway file cannot exhaust memory.
    public static let defaultMaximumFileBytes = 256 << 20

    /// The most bytes the list's file, download or cached copy may hold.
    public var maximumBytes: Int {
        if case .url(let remote) = source { return remote.maximumBytes }
        return maximumFileBytes
    }
}

/// A list fetched over HTTP(S) and refreshed in the background.
public struct RemoteSource: Sendable, Equatable {
    public var url: String
    /// Seconds between refreshes.
    public var refreshSeconds: Int
    /// A download larger than this is refused and the previous copy kept.
    public var maximumBytes: Int

    public static let defaultRefreshSeconds = 24 * 3600
    public static let defaultMaximumBytes = 64 << 20
}

extension DomainListConfig {
    /// The cached copy of a remote list: `cache_dir/NAME.list`, with any
    /// character outside [A-Za-z0-9._-] of the name replaced.
    public func cachePath(in directory: String) -> String {
        let safe = String(name.map { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) ? $0 : "_" })
        return directory + "/" + safe + ".list"
    }
}

public struct RuleGroupConfig: Sendable {
    public var name: String
    public var priority: Int
    public var clients: [ClientSelector]
    public var rules: [RuleConfig]
    public var line: Int
}

/// What a rule looks for: the names of a domain list, or a threat its
/// detector finds at a confidence level or above.
public enum RuleMatch: Sendable, Equatable {
    case domainList(String)
    case threat(Threat, ConfidenceLevel)
}

/// Where the detectors' data comes from (`threat_detection:`); read only when
/// some rule names a threat. A path left out is looked for where the package,
/// `scripts/install` and the source tree put it.
public struct ThreatDetectionConfig: Sendable, Equatable {
    public var model: String? = nil
    public var publicSuffixList: String? = nil
    /// (client, registrable domain) pairs the tunnelling detector follows at once.
    public var tunnelPairs = 65_536
    public var line = 0

    public init() {}
}

public struct RuleConfig: Sendable {
    public var name: String
    public var priority: Int
    public var match: RuleMatch
    public var action: RuleAction
    public var blockResponse: BlockResponse
    public var override: OverrideRecord?
    public var queryTypes: [QueryType]?
    public var line: Int

    /// The domain list the rule uses, if it uses one.
    public var domainList: String? {
        if case .domainList(let name) = match { return name }
        return nil
    }
}
