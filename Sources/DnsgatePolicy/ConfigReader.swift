// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import ThreatDetection
internal import Yams

/// Reads the YAML config into `DnsgateConfig`, collecting every problem with
/// its line instead of stopping at the first. The config comes back whenever
/// the YAML is a mapping, even with errors, so that its lists can be checked
/// too; it is usable only when no diagnostic is an error.
public enum ConfigReader {
    public static func read(yaml: String, path: String) -> (DnsgateConfig?, [Diagnostic]) {
        var context = Context(file: path)
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            return (nil, [Diagnostic(.error, file: path, line: error.line, "YAML: \(error.summary)")])
        } catch {
            return (nil, [Diagnostic(.error, file: path, line: 0, "YAML: \(error)")])
        }
        guard let root, let mapping = root.mapping else {
            return (nil, [Diagnostic(.error, file: path, line: 1, "the config must be a YAML mapping")])
        }
        var config = DnsgateConfig(path: path)
        context.checkKeys(mapping, allowed: ["queues", "fail_mode", "undecodable", "on_overload", "tcp_port", "worker_cpus", "queue_length", "user", "stats_socket", "stats_socket_group", "metrics_listen", "cache_dir", "query_log", "dnstap",
                                             "block_defaults", "domain_lists", "ip_lists", "dns64_prefixes", "rule_groups", "threat_detection", "notify_listen"], in: "the config")
        if let node = mapping["queues"] {
            config.queues = context.queues(node)
            config.queuesLine = node.mark?.line ?? 0
        }
        if let node = mapping["fail_mode"], let mode: FailMode = context.enumeration(node, "fail_mode") {
            config.failMode = mode
        }
        if let node = mapping["undecodable"], let action: PacketAction = context.enumeration(node, "undecodable") {
            config.undecodable = action
        }
        if let node = mapping["on_overload"], let action: PacketAction = context.enumeration(node, "on_overload") {
            config.onOverload = action
        }
        if let node = mapping["tcp_port"], let port = context.integer(node, "tcp_port", 1...65535) {
            config.tcpPort = UInt16(port)
        }
        if let node = mapping["worker_cpus"] {
            config.workerCPUs = context.sequence(node, "worker_cpus").compactMap { context.integer($0, "a CPU number", 0...4095) }
            config.workerCPUsLine = node.mark?.line ?? 0
        }
        if let node = mapping["stats_socket"], let socket = context.string(node, "stats_socket") {
            config.statsSocket = ConfigPaths.resolve(socket, relativeTo: path)
        }
        if let node = mapping["metrics_listen"] { config.metricsListen = context.listenAddress(node, "metrics_listen") }
        if let node = mapping["queue_length"], let length = context.integer(node, "queue_length", 1...1_000_000) {
            config.queueLength = UInt32(length)
        }
        if let node = mapping["user"], let user = context.string(node, "user") { config.user = user }
        if let node = mapping["stats_socket_group"], let group = context.string(node, "stats_socket_group") {
            config.statsSocketGroup = group
        }
        if let node = mapping["cache_dir"], let directory = context.string(node, "cache_dir") {
            config.cacheDirectory = ConfigPaths.resolve(directory, relativeTo: path)
        }
        if let node = mapping["query_log"] { config.queryLog = context.queryLog(node) }
        if let node = mapping["dnstap"] { config.dnstap = context.dnstap(node) }
        if let node = mapping["block_defaults"], let defaults = context.mapping(node, "block_defaults") {
            context.checkKeys(defaults, allowed: ["ttl", "extended_error"], in: "block_defaults")
            if let ttl = defaults["ttl"], let value = context.integer(ttl, "ttl", 0...Int(Int32.max)) {
                config.blockTTL = UInt32(value)
            }
            if let flag = defaults["extended_error"], let value = context.bool(flag, "extended_error") {
                config.extendedError = value
            }
        }
        if let node = mapping["notify_listen"] {
            let items = node.sequence.map(Array.init) ?? [node]
            config.notifyListen = items.compactMap { context.listenAddress($0, "notify_listen") }
            if config.notifyListen.contains(where: { $0.port == 53 }) {
                // TCP/53 to the gateway goes to the relay, and on to itself: the
                // NOTIFY would seem to come from the gateway, not the primary.
                context.warning(node, "notify_listen: port 53 is where the shipped rules divert DNS (a TCP NOTIFY, as Knot sends it, reaches dnsgate through the relay and is refused); use another port, like 5300, and name it in the primary's notify target")
            }
        }
        if let node = mapping["threat_detection"] { config.threatDetection = context.threatDetection(node, config: path) }
        if let node = mapping["domain_lists"] {
            for item in context.sequence(node, "domain_lists") {
                if let list = context.list(item, kind: .domains) { config.domainLists.append(list) }
            }
        }
        if let node = mapping["ip_lists"] {
            for item in context.sequence(node, "ip_lists") {
                if let list = context.list(item, kind: .addresses) { config.ipLists.append(list) }
            }
        }
        if let node = mapping["dns64_prefixes"] {
            for item in context.sequence(node, "dns64_prefixes") {
                guard let text = context.string(item, "a NAT64 prefix") else { continue }
                guard let prefix = IPNetwork(text).flatMap(NAT64Prefix.init) else {
                    context.error(item, "dns64_prefixes: '\(text)' is not an IPv6 prefix of length 32, 40, 48, 56, 64 or 96 (RFC 6052), like 64:ff9b:1::/48 or 2001:db8:64::/96")
                    continue
                }
                config.dns64Prefixes.append(prefix)
            }
        }
        if let node = mapping["rule_groups"] {
            for item in context.sequence(node, "rule_groups") {
                if let group = context.ruleGroup(item) { config.ruleGroups.append(group) }
            }
        }
        if let metrics = config.metricsListen, metrics.port == config.tcpPort, let node = mapping["metrics_listen"] {
            context.error(node, "metrics_listen: port \(metrics.port) is tcp_port's, where redirected DNS over TCP arrives")
        }
        context.checkReferences(config)
        return (config, context.diagnostics)
    }

    struct Context {
        let file: String
        var diagnostics: [Diagnostic] = []

        init(file: String) { self.file = file }

        mutating func warning(_ node: Node?, _ message: String) {
            diagnostics.append(Diagnostic(.warning, file: file, line: node?.mark?.line ?? 0, message))
        }

        mutating func error(_ node: Node?, _ message: String) {
            diagnostics.append(Diagnostic(.error, file: file, line: node?.mark?.line ?? 0, message))
        }

        mutating func checkKeys(_ mapping: Node.Mapping, allowed: Set<String>, in place: String) {
            for (key, _) in mapping {
                guard let name = key.string else {
                    error(key, "\(place): keys must be strings")
                    continue
                }
                if !allowed.contains(name) {
                    error(key, "\(place): unknown key '\(name)' (expected one of: \(allowed.sorted().joined(separator: ", ")))")
                }
            }
        }

        mutating func mapping(_ node: Node, _ what: String) -> Node.Mapping? {
            guard let mapping = node.mapping else {
                error(node, "\(what) must be a mapping")
                return nil
            }
            return mapping
        }

        mutating func sequence(_ node: Node, _ what: String) -> [Node] {
            guard let sequence = node.sequence else {
                error(node, "\(what) must be a list")
                return []
            }
            return Array(sequence)
        }

        mutating func string(_ node: Node, _ what: String) -> String? {
            guard case .scalar(let scalar) = node, !scalar.string.isEmpty else {
                error(node, "\(what) must be a non-empty string")
                return nil
            }
            return scalar.string
        }

        mutating func integer(_ node: Node, _ what: String, _ range: ClosedRange<Int>) -> Int? {
            guard case .scalar(let scalar) = node, let value = Int(scalar.string), range.contains(value) else {
                error(node, "\(what) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
                return nil
            }
            return value
        }

        mutating func bool(_ node: Node, _ what: String) -> Bool? {
            guard let value = node.bool else {
                error(node, "\(what) must be true or false")
                return nil
            }
            return value
        }

        mutating func enumeration<Value: RawRepresentable & CaseIterable>(_ node: Node, _ what: String) -> Value?
        where Value.RawValue == String {
            guard let text = string(node, what) else { return nil }
            if let value = Value.allCases.first(where: { $0.rawValue.lowercased() == text.lowercased() }) {
                return value
            }
            error(node, "\(what): '\(text)' is not one of \(Value.allCases.map(\.rawValue).joined(separator: ", "))")
            return nil
        }

        /// `ADDRESS:PORT`; an unquoted `[2001:db8::1]:9153` is a YAML list, hence the hint.
        mutating func listenAddress(_ node: Node, _ what: String) -> ServerAddress? {
            let form = "an address and port like 192.0.2.1:9153 or \"[2001:db8::1]:9153\" (IPv6 in brackets, quoted)"
            guard case .scalar(let scalar) = node else {
                error(node, "\(what) must be \(form)")
                return nil
            }
            guard let address = ServerAddress(scalar.string.trimmingSpaces) else {
                error(node, "\(what): '\(scalar.string.prefix(80))' is not \(form)")
                return nil
            }
            // No authentication: every interface includes the WAN side.
            if address.address == .v4(0) || address.address == .v6(high: 0, low: 0) {
                warning(node,
                    "\(what): \(address) answers on every interface, the WAN side too; name a LAN or management address, or filter the port")
            }
            return address
        }

        /// `"0-1"`, `3`, or `[0, 1]`.
        mutating func queues(_ node: Node) -> [UInt16] {
            var result: [UInt16] = []
            let items = node.sequence.map(Array.init) ?? [node]
            for item in items {
                guard let text = item.string else {
                    error(item, "queues: expected a queue number or a range like \"0-1\"")
                    continue
                }
                let bounds = text.split(separator: "-", maxSplits: 1).map { UInt16($0.trimmingSpaces) }
                guard let first = bounds.first ?? nil, let last = bounds.last ?? nil, first <= last, last - first < 64 else {
                    error(item, "queues: '\(text)' is not a queue number (0-65535) or a range of at most 64 queues")
                    continue
                }
                result.append(contentsOf: first...last)
            }
            if result.isEmpty { error(node, "queues: at least one queue is needed") }
            if Set(result).count != result.count { error(node, "queues: a queue is listed twice") }
            return result
        }

        mutating func queryLog(_ node: Node) -> QueryLogConfig? {
            guard let mapping = mapping(node, "query_log") else { return nil }
            checkKeys(mapping, allowed: ["path", "actions"], in: "query_log")
            guard let pathNode = mapping["path"] else {
                error(node, "query_log: 'path' is required (\"-\" for stdout)")
                return nil
            }
            guard var path = string(pathNode, "query_log.path") else { return nil }
            if path != "-" { path = ConfigPaths.resolve(path, relativeTo: file) }
            let (actions, logsNoMatch) = mapping["actions"].map { loggedActions($0, "query_log.actions") }
                ?? ([.block, .alert], false)
            return QueryLogConfig(path: path, actions: actions, logsNoMatch: logsNoMatch)
        }

        /// `[BLOCK, ALERT, ALLOW, NO_MATCH]`, any of them: the actions an
        /// output records, and whether it records queries no rule matched.
        mutating func loggedActions(_ node: Node, _ what: String) -> (Set<RuleAction>, Bool) {
            var actions: Set<RuleAction> = []
            var noMatch = false
            for item in sequence(node, what) {
                guard let text = string(item, what) else { continue }
                if text.uppercased() == "NO_MATCH" {
                    noMatch = true
                } else if let action = RuleAction.allCases.first(where: { $0.rawValue == text.uppercased() }) {
                    actions.insert(action)
                } else {
                    error(item, "\(what): '\(text)' is not one of ALLOW, BLOCK, ALERT, NO_MATCH")
                }
            }
            return (actions, noMatch)
        }

        /// `dnstap: {unix: PATH}` or `{tcp: "ADDRESS:PORT"}`, with `identity`,
        /// `version`, `actions` and `buffer_frames`.
        mutating func dnstap(_ node: Node) -> DnstapConfig? {
            guard let mapping = mapping(node, "dnstap") else { return nil }
            checkKeys(mapping, allowed: ["unix", "tcp", "identity", "version", "actions", "buffer_frames"], in: "dnstap")
            let destination: DnstapConfig.Destination
            switch (mapping["unix"], mapping["tcp"]) {
            case (let unixNode?, nil):
                guard let path = string(unixNode, "dnstap.unix") else { return nil }
                destination = .unix(path: ConfigPaths.resolve(path, relativeTo: file))
            case (nil, let tcpNode?):
                guard let text = string(tcpNode, "dnstap.tcp") else { return nil }
                guard let (address, port) = Self.addressAndPort(text) else {
                    error(tcpNode, "dnstap.tcp: '\(text)' is not ADDRESS:PORT (an IP address, [IPv6]:PORT for IPv6, port 1-65535)")
                    return nil
                }
                destination = .tcp(address: address, port: port)
            case (nil, nil):
                error(node, "dnstap: one of 'unix' (a socket path) or 'tcp' (\"ADDRESS:PORT\") is required")
                return nil
            case (_?, _?):
                error(node, "dnstap: 'unix' and 'tcp' exclude each other; name one collector")
                return nil
            }
            var config = DnstapConfig(destination: destination)
            config.line = node.mark?.line ?? 0
            if let identity = mapping["identity"] { config.identity = string(identity, "dnstap.identity") }
            if let version = mapping["version"] { config.version = string(version, "dnstap.version") }
            if let actions = mapping["actions"] {
                (config.actions, config.sendsNoMatch) = loggedActions(actions, "dnstap.actions")
            }
            if let buffer = mapping["buffer_frames"],
               let frames = integer(buffer, "dnstap.buffer_frames", DnstapConfig.bufferFrameRange) {
                config.bufferFrames = frames
            }
            return config
        }

        /// `192.0.2.1:6000` or `[2001:db8::1]:6000`.
        static func addressAndPort(_ text: String) -> (IPAddress, UInt16)? {
            guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]), port > 0
            else { return nil }
            var host = text[..<colon]
            if host.hasPrefix("[") {
                guard host.hasSuffix("]") else { return nil }
                host = host.dropFirst().dropLast()
                guard let address = IPAddress(host), !address.isIPv4 else { return nil }
                return (address, port)
            }
            guard let address = IPAddress(host), address.isIPv4 else { return nil }
            return (address, port)
        }

        /// A domain list (`domain_lists`) or an address list (`ip_lists`):
        /// the same sources, refresh and limits; inline entries under
        /// `domains` or `addresses`.
        mutating func list(_ node: Node, kind: ListKind) -> DomainListConfig? {
            let noun = kind.noun
            let inlineKey = kind == .domains ? "domains" : "addresses"
            guard let mapping = mapping(node, "a \(noun)") else { return nil }
            checkKeys(mapping, allowed: Set(["name", inlineKey, "file", "url", "zone", "refresh", "max_size", "format", "allow_empty"]
                                            + (kind == .domains ? ["match_subdomains"] : [])), in: noun)
            guard let nameNode = mapping["name"], let name = string(nameNode, "\(noun) name") else {
                if mapping["name"] == nil { error(node, "a \(noun) needs a 'name'") }
                return nil
            }
            let line = node.mark?.line ?? 0
            var format = ListFormat.auto
            if let formatNode = mapping["format"], let value: ListFormat = enumeration(formatNode, "format") {
                if kind.formats.contains(value) {
                    format = value
                } else {
                    error(formatNode, "\(noun) '\(name)': format must be one of \(kind.formats.map(\.rawValue).joined(separator: ", "))")
                }
            }
            var matchSubdomains = false
            if let flag = mapping["match_subdomains"], let value = bool(flag, "match_subdomains") {
                matchSubdomains = value
            }
            var allowEmpty = false
            if let flag = mapping["allow_empty"], let value = bool(flag, "allow_empty") {
                allowEmpty = value
            }
            let sources = [inlineKey, "file", "url", "zone"].filter { mapping[$0] != nil }
            guard sources.count == 1 else {
                error(node, sources.isEmpty ? "\(noun) '\(name)': needs '\(inlineKey)', 'file', 'url' or 'zone'"
                    : "\(noun) '\(name)': give one of '\(inlineKey)', 'file', 'url' or 'zone', not \(sources.joined(separator: " and "))")
                return nil
            }
            if sources[0] != "url", mapping["refresh"] != nil {
                error(mapping["refresh"], "\(noun) '\(name)': 'refresh' only applies to a 'url' list")
            }
            if sources[0] == inlineKey {
                for key in ["max_size", "allow_empty"] where mapping[key] != nil {
                    error(mapping[key], "\(noun) '\(name)': '\(key)' only applies to a 'file', 'url' or 'zone' list")
                }
            }
            var maximumSize: Int? = nil
            if let sizeNode = mapping["max_size"] {
                guard let bytes = byteSize(sizeNode), bytes > 0 else {
                    error(sizeNode, "max_size: expected a size like 500K, 64M or 1G")
                    return nil
                }
                maximumSize = bytes
            }
            switch sources[0] {
            case "zone":
                if format != .auto && format != .rpz { error(mapping["format"], "\(noun) '\(name)': a zone is read as rpz") }
                guard let zone = zoneSource(mapping["zone"]!, list: name) else { return nil }
                // A zone is what its primary serves, signed and complete: empty, or
                // mostly triggers of another kind, is a state of it, not a collapse.
                var list = DomainListConfig(name: name, source: .zone(zone), format: .rpz, matchSubdomains: matchSubdomains,
                                            kind: kind, line: line, allowEmpty: mapping["allow_empty"] == nil ? true : allowEmpty)
                if let maximumSize { list.maximumFileBytes = maximumSize }
                return list
            case inlineKey:
                let entries = mapping[inlineKey]!
                let names = sequence(entries, inlineKey).compactMap { string($0, kind == .domains ? "a domain" : "an address") }
                return DomainListConfig(name: name, source: .inline(names), format: kind == .domains ? .domains : .addresses,
                                        matchSubdomains: matchSubdomains, kind: kind, line: entries.mark?.line ?? line)
            case "file":
                guard let listFile = string(mapping["file"]!, "file") else { return nil }
                var list = DomainListConfig(name: name, source: .file(ConfigPaths.resolve(listFile, relativeTo: file)),
                                            format: format, matchSubdomains: matchSubdomains, kind: kind, line: line,
                                            allowEmpty: allowEmpty)
                if let maximumSize { list.maximumFileBytes = maximumSize }
                return list
            default:
                let urlNode = mapping["url"]!
                guard let url = string(urlNode, "url") else { return nil }
                guard url.hasPrefix("http://") || url.hasPrefix("https://"), url.count > 8 else {
                    error(urlNode, "\(noun) '\(name)': url must start with http:// or https://")
                    return nil
                }
                var remote = RemoteSource(url: url, refreshSeconds: RemoteSource.defaultRefreshSeconds,
                                          maximumBytes: RemoteSource.defaultMaximumBytes)
                if let refreshNode = mapping["refresh"] {
                    guard let seconds = duration(refreshNode), seconds >= 1 else {
                        error(refreshNode, "refresh: expected a duration like 90s, 30m, 4h or 1d")
                        return nil
                    }
                    remote.refreshSeconds = seconds
                }
                if let maximumSize { remote.maximumBytes = maximumSize }
                return DomainListConfig(name: name, source: .url(remote), format: format,
                                        matchSubdomains: matchSubdomains, kind: kind, line: line, allowEmpty: allowEmpty)
            }
        }

        /// `zone: {name: rpz.example, primaries: [ADDRESS[:PORT]...], tsig: {name, algorithm, secret_file}}`.
        mutating func zoneSource(_ node: Node, list: String) -> ZoneSource? {
            guard let mapping = mapping(node, "zone") else { return nil }
            checkKeys(mapping, allowed: ["name", "primaries", "tsig"], in: "zone")
            guard let nameNode = mapping["name"], let text = string(nameNode, "zone name") else {
                error(node, "domain list '\(list)': zone needs a 'name' (the RPZ's apex)")
                return nil
            }
            let absolute = text.hasSuffix(".") ? text : text + "."
            guard absolute != ".", DomainName(text: absolute.dropLast()) != nil else {
                error(nameNode, "domain list '\(list)': zone name '\(text)' is not a domain name")
                return nil
            }
            guard let primariesNode = mapping["primaries"] else {
                error(node, "domain list '\(list)': zone needs 'primaries' (addresses of the servers to transfer it from)")
                return nil
            }
            let items = primariesNode.sequence.map(Array.init) ?? [primariesNode]
            let primaries = items.compactMap { item -> ServerAddress? in
                guard let value = string(item, "a primary") else { return nil }
                guard let address = ServerAddress(value, defaultPort: 53) else {
                    error(item, "domain list '\(list)': primary '\(value)' is not ADDRESS or ADDRESS:PORT")
                    return nil
                }
                return address
            }
            guard !primaries.isEmpty, primaries.count == items.count else {
                if items.isEmpty { error(primariesNode, "domain list '\(list)': zone needs at least one primary") }
                return nil
            }
            var key: TSIGKeyConfig? = nil
            if let tsigNode = mapping["tsig"] {
                guard let tsig = self.mapping(tsigNode, "tsig") else { return nil }
                checkKeys(tsig, allowed: ["name", "algorithm", "secret_file"], in: "tsig")
                guard let keyName = tsig["name"].flatMap({ string($0, "tsig name") }),
                      let secretFile = tsig["secret_file"].flatMap({ string($0, "secret_file") }) else {
                    error(tsigNode, "domain list '\(list)': tsig needs 'name' and 'secret_file'")
                    return nil
                }
                let algorithm = tsig["algorithm"].flatMap { string($0, "algorithm") }?.lowercased() ?? "hmac-sha256"
                guard TSIGKeyConfig.algorithms.contains(algorithm) else {
                    error(tsig["algorithm"], "tsig algorithm must be one of \(TSIGKeyConfig.algorithms.joined(separator: ", "))")
                    return nil
                }
                key = TSIGKeyConfig(name: keyName, algorithm: algorithm, secretFile: ConfigPaths.resolve(secretFile, relativeTo: file))
            }
            return ZoneSource(zone: absolute.lowercased(), primaries: primaries, tsig: key)
        }

        /// `90s`, `30m`, `4h`, `1d`, or plain seconds.
        func duration(_ node: Node) -> Int? {
            guard let text = node.string?.lowercased(), !text.isEmpty else { return nil }
            let units: [Character: Int] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
            if let unit = text.last, let factor = units[unit], let value = Int(text.dropLast()) {
                // An overflowing value is no duration (an error), never a trap.
                let (seconds, overflow) = value.multipliedReportingOverflow(by: factor)
                return overflow ? nil : seconds
            }
            return Int(text)
        }

        /// `500K`, `64M`, `1G` (powers of 1024), or plain bytes.
        func byteSize(_ node: Node) -> Int? {
            guard let text = node.string?.uppercased(), !text.isEmpty else { return nil }
            let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
            var digits = Substring(text)
            if digits.hasSuffix("B") { digits = digits.dropLast() }
            if let unit = digits.last, let factor = units[unit], let value = Int(digits.dropLast()) {
                let (bytes, overflow) = value.multipliedReportingOverflow(by: factor)
                return overflow ? nil : bytes
            }
            return Int(digits)
        }

        mutating func ruleGroup(_ node: Node) -> RuleGroupConfig? {
            guard let mapping = mapping(node, "a rule group") else { return nil }
            checkKeys(mapping, allowed: ["name", "priority", "clients", "rules"], in: "rule group")
            guard let nameNode = mapping["name"], let name = string(nameNode, "rule group name") else {
                if mapping["name"] == nil { error(node, "a rule group needs a 'name'") }
                return nil
            }
            guard let priorityNode = mapping["priority"] else {
                error(node, "rule group '\(name)' needs a 'priority'")
                return nil
            }
            guard let priority = integer(priorityNode, "priority", 0...Int(Int32.max)) else { return nil }
            var clients: [ClientSelector] = []
            if let clientsNode = mapping["clients"] {
                for item in sequence(clientsNode, "clients") {
                    guard let text = string(item, "a client network") else { continue }
                    if let selector = ClientSelector(text) {
                        clients.append(selector)
                    } else {
                        error(item, "rule group '\(name)': '\(text)' is not an address, CIDR prefix or MAC address")
                    }
                }
                if clients.isEmpty { error(clientsNode, "rule group '\(name)': 'clients' is empty; omit it to mean all clients") }
                if let family = ClientSelector.onlyFamily(clients) {
                    let other = family == .v4 ? "IPv6" : "IPv4"
                    warning(clientsNode,
                        "rule group '\(name)': 'clients' names \(family == .v4 ? "IPv4" : "IPv6") prefixes only, so its hosts' \(other) queries fall outside it; add their \(other) prefixes or MAC addresses")
                }
            }
            var rules: [RuleConfig] = []
            if let rulesNode = mapping["rules"] {
                for item in sequence(rulesNode, "rules") {
                    if let rule = rule(item, group: name) { rules.append(rule) }
                }
            }
            var seen: [Int: String] = [:]
            for rule in rules {
                if let other = seen[rule.priority] {
                    diagnostics.append(Diagnostic(.error, file: file, line: rule.line,
                        "rule group '\(name)': rules '\(other)' and '\(rule.name)' share priority \(rule.priority)"))
                }
                seen[rule.priority] = rule.name
            }
            return RuleGroupConfig(name: name, priority: priority, clients: clients,
                                   rules: rules.sorted { $0.priority < $1.priority }, line: node.mark?.line ?? 0)
        }

        mutating func rule(_ node: Node, group: String) -> RuleConfig? {
            guard let mapping = mapping(node, "a rule") else { return nil }
            checkKeys(mapping, allowed: ["name", "priority", "domain_list", "threat", "confidence", "ip_list",
                                         "rebinding_protection", "exempt_domain_lists", "redirection", "action",
                                         "block_response", "override", "qtypes"],
                      in: "rule")
            guard let name = mapping["name"].flatMap({ string($0, "rule name") }) else {
                if mapping["name"] == nil { error(node, "a rule in group '\(group)' needs a 'name'") }
                return nil
            }
            let place = "rule '\(group)/\(name)'"
            let matchKeys = ["domain_list", "threat", "ip_list", "rebinding_protection"].filter { mapping[$0] != nil }
            guard let priorityNode = mapping["priority"], let actionNode = mapping["action"], matchKeys.count == 1 else {
                error(node, "\(place) needs 'priority', 'action' and one of 'domain_list', 'threat', 'ip_list' or 'rebinding_protection'"
                      + (matchKeys.count > 1 ? ", not \(matchKeys.joined(separator: " and "))" : ""))
                return nil
            }
            guard let priority = integer(priorityNode, "priority", 0...Int(Int32.max)),
                  let action: RuleAction = enumeration(actionNode, "action"),
                  let match = ruleMatch(mapping, action: action, place: place) else { return nil }
            var response = BlockResponse.nxdomain
            if let responseNode = mapping["block_response"] {
                guard let value: BlockResponse = enumeration(responseNode, "block_response") else { return nil }
                if action != .block { error(responseNode, "\(place): block_response only applies to action BLOCK") }
                response = value
            }
            var override: OverrideRecord? = nil
            if let overrideNode = mapping["override"] {
                override = overrideRecord(overrideNode, place: place)
                if override == nil { return nil }
            }
            if response == .override, override == nil {
                error(node, "\(place): block_response OVERRIDE needs 'override: {type, value, ttl}'")
                return nil
            }
            if response != .override, let overrideNode = mapping["override"] {
                error(overrideNode, "\(place): 'override' is only used with block_response OVERRIDE")
            }
            var queryTypes: [QueryType]? = nil
            if let typesNode = mapping["qtypes"] {
                var types: [QueryType] = []
                for item in sequence(typesNode, "qtypes") {
                    guard let text = item.string else { continue }
                    if let type = QueryType(mnemonic: text) {
                        types.append(type)
                    } else {
                        error(item, "\(place): '\(text)' is not a query type (A, AAAA, TXT, … or TYPEnnn)")
                    }
                }
                queryTypes = types
            }
            var redirection = RedirectionAction.inspect
            if let redirectionNode = mapping["redirection"] {
                // Route 53's names (INSPECT_REDIRECTION_DOMAIN, TRUST_REDIRECTION_DOMAIN) are taken too.
                let suffix = "_REDIRECTION_DOMAIN"
                let routeName = redirectionNode.string.map { $0.uppercased() }.flatMap { text in
                    text.hasSuffix(suffix) ? String(text.dropLast(suffix.count)) : nil
                }
                guard let value = routeName.flatMap(RedirectionAction.init(rawValue:))
                        ?? enumeration(redirectionNode, "redirection") as RedirectionAction? else { return nil }
                if mapping["domain_list"] == nil, mapping["threat"] == nil {
                    error(redirectionNode, "\(place): 'redirection' applies to rules on names ('domain_list' or 'threat')")
                }
                redirection = value
            }
            return RuleConfig(name: name, priority: priority, match: match, action: action,
                              blockResponse: response, override: override, queryTypes: queryTypes,
                              line: node.mark?.line ?? 0, redirection: redirection)
        }

        /// A rule's `domain_list`, or its `threat` with its `confidence`
        /// (Route 53: a threat rule blocks or alerts, never allows; a false
        /// positive is let through by an ALLOW rule of a list before it).
        mutating func ruleMatch(_ mapping: Node.Mapping, action: RuleAction, place: String) -> RuleMatch? {
            if let exempt = mapping["exempt_domain_lists"], mapping["rebinding_protection"] == nil {
                error(exempt, "\(place): 'exempt_domain_lists' only applies to a rule with 'rebinding_protection'")
            }
            if let listNode = mapping["ip_list"] {
                return string(listNode, "ip_list").map(RuleMatch.ipList)
            }
            if let flagNode = mapping["rebinding_protection"] {
                guard let flag = bool(flagNode, "rebinding_protection") else { return nil }
                guard flag else {
                    error(flagNode, "\(place): 'rebinding_protection' is either true or left out")
                    return nil
                }
                if action == .allow {
                    error(flagNode, "\(place): a rebinding rule can only BLOCK or ALERT; exempt names with 'exempt_domain_lists'")
                    return nil
                }
                let exempt = mapping["exempt_domain_lists"].map { sequence($0, "exempt_domain_lists").compactMap { string($0, "a domain list") } }
                return .rebinding(exempt: exempt ?? [])
            }
            if let listNode = mapping["domain_list"] {
                if let confidence = mapping["confidence"] {
                    error(confidence, "\(place): 'confidence' only applies to a rule with 'threat'")
                }
                return string(listNode, "domain_list").map(RuleMatch.domainList)
            }
            guard let threatNode = mapping["threat"], let text = string(threatNode, "threat") else { return nil }
            guard let threat = Threat(configName: text) else {
                error(threatNode, "\(place): threat must be one of \(Threat.allCases.map(\.configName).joined(separator: ", "))")
                return nil
            }
            if action == .allow {
                error(threatNode, "\(place): a threat rule can only BLOCK or ALERT; let a false positive through with an ALLOW rule of a domain list at a lower priority number")
                return nil
            }
            guard let levelNode = mapping["confidence"] else {
                error(threatNode, "\(place): a threat rule needs 'confidence: LOW, MEDIUM or HIGH'")
                return nil
            }
            guard let levelText = string(levelNode, "confidence"), let level = ConfidenceLevel(configName: levelText) else {
                error(levelNode, "\(place): confidence must be LOW, MEDIUM or HIGH")
                return nil
            }
            return .threat(threat, level)
        }

        mutating func threatDetection(_ node: Node, config path: String) -> ThreatDetectionConfig {
            var settings = ThreatDetectionConfig()
            settings.line = node.mark?.line ?? 0
            guard let mapping = mapping(node, "threat_detection") else { return settings }
            checkKeys(mapping, allowed: ["model", "public_suffix_list", "tunnel_pairs"], in: "threat_detection")
            if let model = mapping["model"].flatMap({ string($0, "threat_detection.model") }) {
                settings.model = ConfigPaths.resolve(model, relativeTo: path)
            }
            if let list = mapping["public_suffix_list"].flatMap({ string($0, "threat_detection.public_suffix_list") }) {
                settings.publicSuffixList = ConfigPaths.resolve(list, relativeTo: path)
            }
            if let pairs = mapping["tunnel_pairs"].flatMap({ integer($0, "threat_detection.tunnel_pairs", 1024...1_048_576) }) {
                settings.tunnelPairs = pairs
            }
            return settings
        }

        mutating func overrideRecord(_ node: Node, place: String) -> OverrideRecord? {
            guard let mapping = mapping(node, "override") else { return nil }
            checkKeys(mapping, allowed: ["type", "value", "ttl"], in: "override")
            guard let typeNode = mapping["type"], let valueNode = mapping["value"],
                  let typeText = string(typeNode, "override.type"), let value = string(valueNode, "override.value") else {
                error(node, "\(place): override needs 'type' and 'value'")
                return nil
            }
            var ttl: UInt32 = 300
            if let ttlNode = mapping["ttl"], let parsed = integer(ttlNode, "override.ttl", 0...Int(Int32.max)) {
                ttl = UInt32(parsed)
            }
            switch typeText.uppercased() {
            case "A":
                guard let address = IPAddress(value), address.isIPv4 else {
                    error(valueNode, "\(place): '\(value)' is not an IPv4 address")
                    return nil
                }
                return OverrideRecord(type: .a, ttl: ttl, data: address.bytes)
            case "AAAA":
                guard let address = IPAddress(value), !address.isIPv4 else {
                    error(valueNode, "\(place): '\(value)' is not an IPv6 address")
                    return nil
                }
                return OverrideRecord(type: .aaaa, ttl: ttl, data: address.bytes)
            case "CNAME":
                guard let name = DomainName(text: value), name.labelCount > 0 else {
                    error(valueNode, "\(place): '\(value)' is not a domain name")
                    return nil
                }
                return OverrideRecord(type: .cname, ttl: ttl, data: name.lowercasedWire + [0])
            default:
                error(typeNode, "\(place): override type must be CNAME, A or AAAA")
                return nil
            }
        }

        mutating func checkReferences(_ config: DnsgateConfig) {
            // One name space for both kinds: a list's name is its cached copy's file name too.
            var allNames: Set<String> = []
            for list in config.domainLists + config.ipLists where !allNames.insert(list.name).inserted {
                diagnostics.append(Diagnostic(.error, file: file, line: list.line, "list '\(list.name)' is defined twice"))
            }
            let listNames = Set(config.domainLists.map(\.name))
            let addressListNames = Set(config.ipLists.map(\.name))
            var priorities: [Int: String] = [:]
            var groupNames: Set<String> = []
            for group in config.ruleGroups {
                if !groupNames.insert(group.name).inserted {
                    diagnostics.append(Diagnostic(.error, file: file, line: group.line, "rule group '\(group.name)' is defined twice"))
                }
                if let other = priorities[group.priority] {
                    diagnostics.append(Diagnostic(.error, file: file, line: group.line,
                        "rule groups '\(other)' and '\(group.name)' share priority \(group.priority)"))
                }
                priorities[group.priority] = group.name
                for rule in group.rules {
                    var missing: [String] = []
                    switch rule.match {
                    case .domainList(let list) where !listNames.contains(list):
                        missing = ["domain list '\(list)'" + (addressListNames.contains(list) ? " (an ip list by that name: use 'ip_list')" : "")]
                    case .ipList(let list) where !addressListNames.contains(list):
                        missing = ["ip list '\(list)'" + (listNames.contains(list) ? " (a domain list by that name: use 'domain_list')" : "")]
                    case .rebinding(let exempt):
                        missing = exempt.filter { !listNames.contains($0) }.map { "domain list '\($0)'" }
                    default:
                        break
                    }
                    for what in missing {
                        diagnostics.append(Diagnostic(.error, file: file, line: rule.line,
                            "rule '\(group.name)/\(rule.name)' uses \(what), which is not defined"))
                    }
                }
            }
        }
    }
}

extension YamlError {
    var line: Int {
        switch self {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _):
            return mark.line
        default:
            return 0
        }
    }
    var summary: String {
        switch self {
        case .scanner(_, let problem, _, _), .parser(_, let problem, _, _), .composer(_, let problem, _, _):
            return problem
        default:
            return "\(self)"
        }
    }
}

extension StringProtocol where SubSequence == Substring {
    var trimmingSpaces: Substring {
        let start = firstIndex { !$0.isWhitespace } ?? endIndex
        let end = lastIndex { !$0.isWhitespace }.map(index(after:)) ?? start
        return self[start..<Swift.max(start, end)]
    }
}
