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

public enum ListFormat: String, Sendable, CaseIterable { case auto, domains, hosts, adblock, rpz, addresses }

/// What a list holds: names a question or a chain is matched against
/// (`domain_lists`), or addresses an answer is matched against (`ip_lists`).
public enum ListKind: Sendable {
    case domains, addresses

    /// How messages name such a list.
    public var noun: String { self == .domains ? "domain list" : "ip list" }
    /// The formats its `format:` accepts.
    public var formats: [ListFormat] {
        self == .domains ? [.auto, .domains, .hosts, .adblock, .rpz] : [.auto, .addresses, .rpz]
    }
}

/// What a rule does with the names an answer redirects to (CNAME, DNAME), as
/// Route 53's `FirewallDomainRedirectionAction`.
public enum RedirectionAction: String, Sendable, CaseIterable {
    /// Every name of the chain is decided like a question (the default).
    case inspect = "INSPECT"
    /// The rule looks at the question only; an ALLOW lets its whole answer through.
    case trust = "TRUST"
}

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
    /// A response whose answer section cannot be read goes as `fail_mode`
    /// says: its reader is a client, and a resolver never sends one.
    public var undecodableAnswer: PacketAction { failMode == .open ? .pass : .drop }
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
    /// Where the HTTP metrics endpoint (`/metrics`, `/healthz`) listens; nil = none.
    public var metricsListen: ServerAddress? = nil
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
    /// The logged decisions as dnstap messages to a collector (`dnstap:`).
    public var dnstap: DnstapConfig? = nil
    public var blockTTL: UInt32 = 60
    public var extendedError = true
    public var domainLists: [DomainListConfig] = []
    /// Address lists (`ip_lists`), for rules on the addresses of answers.
    public var ipLists: [DomainListConfig] = []
    /// The network's own NAT64 prefixes (`dns64_prefixes`), besides the
    /// well-known 64:ff9b::/96: rules on addresses see an answer's address
    /// inside one as the IPv4 address it stands for.
    public var dns64Prefixes: [NAT64Prefix] = []
    public var ruleGroups: [RuleGroupConfig] = []
    public var threatDetection = ThreatDetectionConfig()
    /// Where NOTIFY messages from the zones' primaries are listened for.
    public var notifyListen: [ServerAddress] = []

    public init(path: String) { self.path = path }
}

/// A numeric address and port, written `192.0.2.1:9153` or `[2001:db8::1]:9153`
/// (brackets, as in URLs, because IPv6 addresses hold colons): where dnsgate
/// listens (`metrics_listen`, `notify_listen`) or a zone's primary.
public struct ServerAddress: Sendable, Hashable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16

    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// Nil unless `input` is an address (no host name: nothing is resolved)
    /// and a port from 1 to 65535; the port may be left out when there is a
    /// `defaultPort` (`192.0.2.53`, `2001:db8::53`).
    public init?(_ input: some StringProtocol, defaultPort: UInt16? = nil) {
        let text = String(input)[...]
        if let defaultPort, let address = IPAddress(text) {
            self.init(address: address, port: defaultPort)
            return
        }
        let host: Substring, portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
            guard host.contains(":") else { return nil }
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            guard !host.contains(":") else { return nil }
        }
        guard let address = IPAddress(host), portText.allSatisfy({ $0.isASCII && $0.isNumber }),
              let port = UInt16(portText), port > 0 else { return nil }
        self.init(address: address, port: port)
    }

    public var description: String { address.isIPv4 ? "\(address):\(port)" : "[\(address)]:\(port)" }
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

/// `dnstap:`: the decisions its `actions` name, as dnstap messages over
/// Frame Streams to a collector on a Unix socket or over TCP.
public struct DnstapConfig: Sendable, Equatable {
    public enum Destination: Sendable, Equatable, CustomStringConvertible {
        case unix(path: String)
        case tcp(address: IPAddress, port: UInt16)

        public var description: String {
            switch self {
            case .unix(let path): return "unix:" + path
            case .tcp(let address, let port): return address.isIPv4 ? "tcp:\(address):\(port)" : "tcp:[\(address)]:\(port)"
            }
        }
    }
    public var destination: Destination
    /// The `identity` field of every message; nil = the host name.
    public var identity: String? = nil
    /// The `version` field of every message; nil = "dnsgate VERSION".
    public var version: String? = nil
    /// Actions sent, as `query_log.actions` (default BLOCK and ALERT).
    public var actions: Set<RuleAction> = [.block, .alert]
    /// Queries no rule matched are sent too (`NO_MATCH` in `actions`).
    public var sendsNoMatch = false
    /// Frames held while the collector is slow or away; past them new frames are dropped.
    public var bufferFrames = DnstapConfig.defaultBufferFrames
    public var line = 0

    public static let defaultBufferFrames = 4096
    public static let bufferFrameRange = 16...1_000_000

    public init(destination: Destination) { self.destination = destination }
}

public struct DomainListConfig: Sendable {
    public enum Source: Sendable, Equatable {
        case inline([String])
        case file(String)
        case url(RemoteSource)
        /// Followed by zone transfer from primaries (an RPZ).
        case zone(ZoneSource)
    }
    public var name: String
    public var source: Source
    public var format: ListFormat
    public var matchSubdomains: Bool
    public var kind = ListKind.domains
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

    /// Where a list kept as a cached copy comes from (its URL, or its zone
    /// and primaries); nil for a file or inline list.
    public var remoteOrigin: String? {
        switch source {
        case .url(let remote): remote.url
        case .zone(let zone): zone.origin
        case .inline, .file: nil
        }
    }
}

/// An RPZ followed from its primaries by AXFR/IXFR, with NOTIFY.
public struct ZoneSource: Sendable, Equatable {
    /// The zone's apex, absolute and lowercased (`rpz.example.`).
    public var zone: String
    /// Asked in order until one answers.
    public var primaries: [ServerAddress]
    public var tsig: TSIGKeyConfig?

    /// How stats and messages name where the list comes from.
    public var origin: String { "dns://\(primaries.map(\.description).joined(separator: ","))/\(zone)" }
}

/// A TSIG key: its name and algorithm as the primary knows them, and the
/// file holding its secret (base64, or a BIND/Knot `key` block).
public struct TSIGKeyConfig: Sendable, Equatable {
    public var name: String
    public var algorithm: String
    public var secretFile: String

    public static let algorithms = ["hmac-sha256", "hmac-sha384", "hmac-sha512"]
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
/// detector finds at a confidence level or above (in questions and the
/// names answers redirect to); the addresses of an ip list, or private
/// addresses answered for a name outside the exempt domain lists (in answers).
public enum RuleMatch: Sendable, Equatable {
    case domainList(String)
    case threat(Threat, ConfidenceLevel)
    case ipList(String)
    case rebinding(exempt: [String])
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
    public var redirection = RedirectionAction.inspect

    /// The domain list the rule uses, if it uses one.
    public var domainList: String? {
        if case .domainList(let name) = match { return name }
        return nil
    }

    /// The ip list the rule uses, if it uses one.
    public var ipList: String? {
        if case .ipList(let name) = match { return name }
        return nil
    }
}
