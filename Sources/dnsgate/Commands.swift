// SPDX-License-Identifier: GPL-2.0-or-later
public import ArgumentParser
import DNSWire
import DnsgateDaemon
import DnsgatePolicy
import Foundation
public import Logging
import NetfilterQueue
import ThreatDetection

/// A runtime failure: printed to stderr, exit status 1.
struct CommandFailure: Error {
    var message: String
}

struct Dnsgate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dnsgate",
        abstract: "Egress DNS firewall for Linux gateways (NFQUEUE).",
        discussion: """
            iptables or nftables rules divert the DNS queries that cross the gateway to NFQUEUE \
            queues and TCP/53 to a local listener; `dnsgate run` decides each query against the \
            policy in the config and lets it through, drops it, or answers it with a forged answer.

            Files: /etc/dnsgate/dnsgate.yaml (config; `dnsgate check` validates it), \
            /run/dnsgate/dnsgate.sock (stats socket: stats, metrics, top, reload, version), \
            /var/log/dnsgate/ (query log), /var/cache/dnsgate/ (last good copies of remote lists), \
            systemd units dnsgate.service (the daemon) and dnsgate-firewall.service (the rules, \
            kept through crashes and restarts, removed by a stop on request).

            Signals to `dnsgate run`: SIGHUP reloads the config and lists, SIGUSR1 reopens the \
            query log (logrotate), SIGTERM and SIGINT stop.

            Exit status: 0 success, 1 runtime failure (for `check`, an invalid config; for \
            `health`, a problem found), 2 usage error.
            """,
        version: Daemon.version,
        subcommands: [Run.self, Check.self, Explain.self, Classify.self, Stats.self, Reload.self, Health.self]
    )
}

struct ConfigOption: ParsableArguments {
    @Option(name: .long, help: "Config file.")
    var config = "/etc/dnsgate/dnsgate.yaml"
}

struct SocketOption: ParsableArguments {
    @Option(name: .long, help: "Stats socket (default: stats_socket of /etc/dnsgate/dnsgate.yaml, else /run/dnsgate/dnsgate.sock).")
    var socket: String?

    @Option(name: .long, help: ArgumentHelp("Seconds to wait for the daemon's whole reply (default: 300 for reload, else 5).",
                                            valueName: "seconds"))
    var timeout: Int?

    func validate() throws {
        if let timeout, !(1...3600).contains(timeout) { throw ValidationError("--timeout must be from 1 to 3600 seconds") }
    }

    var path: String {
        if let socket { return socket }
        if let bytes = try? readFileBytes("/etc/dnsgate/dnsgate.yaml"),
           case let (config?, _) = ConfigReader.read(yaml: String(decoding: bytes, as: UTF8.self),
                                                     path: "/etc/dnsgate/dnsgate.yaml") {
            return config.statsSocket
        }
        return "/run/dnsgate/dnsgate.sock"
    }

    /// Sends one command and reads the whole reply, connecting included, within
    /// `--timeout` (else `defaultSeconds`): a daemon that accepts and never
    /// answers cannot hang the CLI. An empty reply is a failure.
    func request(_ command: String, defaultSeconds: Int = 5) throws -> String {
        let seconds = timeout ?? defaultSeconds
        let reply: String
        do {
            let connection = try UnixConnection(connectingTo: path, timeoutMilliseconds: Int32(seconds * 1000))
            try connection.write(command + "\n")
            reply = try connection.readAll()
        } catch where error.errno == ETIMEDOUT {
            throw CommandFailure(message: "dnsgate: no reply from the daemon at \(path) within \(seconds) s (\(error.operation))")
        } catch {
            throw CommandFailure(message: "dnsgate: cannot talk to the daemon at \(path): \(error)")
        }
        guard !reply.isEmpty else {
            throw CommandFailure(message: "dnsgate: the daemon at \(path) closed the connection without a reply")
        }
        return reply
    }
}

extension Dnsgate {
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run the firewall in the foreground; logs go to stderr.")
        @OptionGroup var options: ConfigOption
        @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
        var logLevel: Logger.Level = .info

        func run() throws {
            let level = logLevel
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
            let logger = Logger(label: "dnsgate")
            do {
                let daemon = try Daemon(configPath: options.config, logger: logger)
                try daemon.run()
            } catch {
                throw CommandFailure(message: "dnsgate: \(error)")
            }
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate the config and its lists; print a summary. Exit 0 when valid, 1 with every problem listed.")
        @OptionGroup var options: ConfigOption

        func run() throws {
            let compiler = PolicyCompiler(readBoundedFile: readFileBytes)
            let (config, result) = compiler.load(configPath: absoluteConfigPath(options.config), generation: 1)
            for summary in result.lists {
                let info = summary.info
                let source = info.inline ? "inline" : info.file
                var line = "list \(info.name): \(info.format.rawValue), \(info.entries) entries, \(info.skippedLines) lines skipped"
                if !info.skipReasons.isEmpty {
                    line += " (" + info.skipReasons.sorted { $0.value > $1.value }.map { "\($0.value) \($0.key)" }
                        .joined(separator: ", ") + ")"
                }
                print(line + " [\(source)]")
            }
            if let models = result.policy?.threatModels {
                let threats = Threat.allCases.filter { result.policy!.threatsInUse.contains($0) }.map(\.configName)
                print("threat detection (\(threats.joined(separator: ", "))): model \(models.modelFile), "
                    + "public suffix list \(models.suffixFile)")
            }
            // The config against this machine: installed rules' queues, allowed CPUs.
            let diagnostics = result.diagnostics + (config.map(Deployment.diagnostics) ?? [])
            for diagnostic in diagnostics { print(diagnostic) }
            let errors = diagnostics.filter { $0.severity == .error }.count
            guard let config, let policy = result.policy, errors == 0 else {
                throw CommandFailure(message: "\(options.config): invalid, \(errors) error(s)")
            }
            print("\(options.config): valid; \(config.ruleGroups.count) rule groups, \(policy.rules.count) rules, "
                + "\(policy.listSummary); queues \(config.queues.map(String.init).joined(separator: ",")), fail_mode \(config.failMode.rawValue)")
        }
    }

    struct Explain: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the decision for a query and which group, rule and list entry produced it.")
        @Argument(help: "The query name.") var name: String
        @Option(help: "Query type (A, AAAA, TXT, … or TYPEnnn).") var type = "A"
        @Option(help: "Client address.") var client = "192.0.2.1"
        @Option(help: "Client MAC address (for groups that name MAC addresses).") var mac: String?
        @Option(name: .customLong("answer"),
                help: ArgumentHelp("A record of the resolver's answer, in chain order: CNAME:NAME, DNAME:NAME, A:ADDRESS or AAAA:ADDRESS (repeat the option). Shows how the answer stage decides the response.",
                                   valueName: "TYPE:VALUE"))
        var answers: [String] = []
        @OptionGroup var options: ConfigOption

        func validate() throws {
            for answer in answers where ExplainedRecord(text: answer) == nil {
                throw ValidationError("'\(answer)' is not an answer record (CNAME:NAME, DNAME:NAME, A:ADDRESS or AAAA:ADDRESS)")
            }
            guard QueryType(mnemonic: type) != nil else { throw ValidationError("'\(type)' is not a query type") }
            guard IPAddress(client) != nil else { throw ValidationError("'\(client)' is not an IP address") }
            if let mac, MACAddress(mac) == nil { throw ValidationError("'\(mac)' is not a MAC address") }
            guard DomainName(text: name) != nil else { throw ValidationError("'\(name)' is not a domain name") }
        }

        func run() throws {
            let compiler = PolicyCompiler(readBoundedFile: readFileBytes)
            let (loadedConfig, result) = compiler.load(configPath: absoluteConfigPath(options.config), generation: 1)
            guard let policy = result.policy, let loadedConfig, !result.hasErrors else {
                throw CommandFailure(message: result.diagnostics.filter { $0.severity == .error }.map(\.description)
                    .joined(separator: "\n"))
            }
            let queryName = DomainName(text: name)!, queryType = QueryType(mnemonic: type)!, address = IPAddress(client)!
            let hardware = mac.flatMap { MACAddress($0) }
            // The scores are shown whether or not a rule names a threat.
            var models = policy.threatModels
            if models == nil {
                models = compiler.loadThreatModels(loadedConfig.threatDetection, configPath: loadedConfig.path).0
            }
            let threats = models?.assess(name: queryName, type: queryType, client: address, now: 0, names: true,
                                         tunnels: TunnelTracker(capacity: 1024))
            let explanation = policy.explain(name: queryName, type: queryType, client: address, mac: hardware,
                                             threats: threats)
            print("query:   \(queryName.text). \(queryType) from \(address)\(hardware.map { " (\($0))" } ?? "")")
            for group in explanation.groupsConsidered {
                print("group:   \(group.name): \(group.applies ? "applies to this client" : "not for this client")")
            }
            print("lists containing the name: \(explanation.listsContainingName.isEmpty ? "none" : explanation.listsContainingName.joined(separator: ", "))")
            if let threats {
                // The policy may have no models of its own (no threat rule): ask the loaded ones.
                let starts = models?.suffixes.registrableDomainStarts(queryName)
                let scored = starts?.icann.map { queryName.text(fromLabel: $0) }
                let tunnelUnit = starts?.all.map { queryName.text(fromLabel: $0) }
                print("threats: registrable domain \(scored ?? "none (a public suffix): not scored") "
                    + "(ICANN section: DGA and DICT_DGA score its first label)")
                print("  the tunnel detector counts per \(tunnelUnit ?? "none (a public suffix): not counted") "
                    + "(ICANN and PRIVATE sections: a platform's tenant is its own domain)")
                for threat in Threat.allCases {
                    let finding = threats[threat]
                    let note = threat == .tunneling ? " (this name alone; the daemon also weighs the client's recent queries)" : ""
                    print("  \(threat.configName): score \(String(format: "%.3f", finding.score)), level \(finding.level.configName)\(note)")
                }
            }
            defer { if !answers.isEmpty { explainAnswer(policy, name: queryName, type: queryType, client: address, mac: hardware) } }
            guard let decision = explanation.decision else {
                if policy.dropsUnmatched {
                    print("decision: no rule matches; dropped while \(policy.listsAwaitingFirstCopy.joined(separator: ", ")) "
                        + "has no copy yet (fail_mode closed: no_match_dropped)")
                } else {
                    print("decision: no rule matches; the query goes through (no_match)")
                }
                return
            }
            let rule = policy.rules[decision.ruleIndex]
            let outcome = policy.outcome(of: decision)
            var text = outcome.action.rawValue
            if outcome.action == .block { text += " (\(outcome.blockResponse.rawValue))" }
            if outcome.action == .alert { text += " (passed and logged)" }
            let source = decision.entryOutcome >= 0 ? " (the list entry's own action)" : ""
            let match = rule.threat.map { "threat \($0.threat.configName) at \($0.level.configName) or above" } ?? "list \(rule.listName)"
            print("decision: \(text) by rule \(rule.group)/\(rule.name), \(match)\(source)")
            if let entry = explanation.matchedEntry {
                print("entry:   \(entry.text) (\(entry.kind)) at \(entry.file):\(entry.line)")
            }
        }

        /// The answer stage's view of a response carrying `answers`.
        func explainAnswer(_ policy: CompiledPolicy, name: DomainName, type: QueryType, client: IPAddress,
                           mac: MACAddress?) {
            let records = answers.compactMap(ExplainedRecord.init(text:))
            let (verdict, findings) = policy.explainAnswer(name: name, type: type, client: client, mac: mac,
                                                           records: records)
            print("answer:  \(answers.joined(separator: " "))")
            for finding in findings {
                let rule = policy.rules[finding.decision.ruleIndex]
                let subject: String
                switch finding.subject {
                case .question(let name): subject = "question \(name.text)."
                case .redirection(let name): subject = "redirection to \(name.text)."
                case .address(let address):
                    let translated = policy.nat64Translation(address)
                    let notes = [translated.map { "NAT64 for \($0)" },
                                 CompiledPolicy.localUseClass(address, translated: translated)?.rawValue].compactMap { $0 }
                    subject = "address \(address)" + (notes.isEmpty ? "" : " (\(notes.joined(separator: ", ")))")
                }
                var action = finding.outcome.action.rawValue
                if finding.outcome.action == .block { action += " (\(finding.outcome.blockResponse.rawValue))" }
                let match = rule.threat.map { "threat \($0.threat.configName)" }
                    ?? (rule.rebindingExemptions != nil ? "rebinding protection" : "list \(rule.listName)")
                let entry = policy.entry(of: finding).map { ", entry \($0.text) at \($0.file):\($0.line)" } ?? ""
                print("  \(subject): \(action) by rule \(rule.group)/\(rule.name), \(match)\(entry)")
            }
            switch verdict {
            case .trusted(let decision):
                let rule = policy.rules[decision.ruleIndex]
                print("answer decision: trusted: ALLOW with redirection TRUST by rule \(rule.group)/\(rule.name); the whole answer goes through")
            case .passed(let matched):
                print("answer decision: passed\(matched ? "" : " (no rule matches a name or address of the answer)")")
            case .blocked(let finding):
                let rule = policy.rules[finding.decision.ruleIndex]
                let response = finding.outcome.forgedAnswer == nil ? "dropped unanswered"
                    : "dropped; the client gets \(finding.outcome.blockResponse.rawValue) for \(name.text). (over TCP, its connection is reset)"
                print("answer decision: BLOCK by rule \(rule.group)/\(rule.name): the response is \(response)")
            case .malformed(let reason):
                print("answer decision: the answer cannot be read (\(reason.rawValue))")
            }
        }
    }

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the daemon's counters.")
        @OptionGroup var socket: SocketOption
        @Flag(help: "Print the raw JSON.") var json = false
        @Flag(help: "Print the Prometheus text exposition instead.") var metrics = false
        @Flag(help: "Print the most blocked names and clients of the last 10 minutes.") var top = false
        @Option(help: "How many names and clients --top lists.") var limit = 10

        func validate() throws {
            guard (1...1000).contains(limit) else { throw ValidationError("--limit must be from 1 to 1000") }
        }

        func run() throws {
            if metrics {
                print(try socket.request("metrics"), terminator: "")
                return
            }
            if top {
                guard let report = try reply("top \(limit)", TopReport.decode) else { return }
                print("most blocked over the last \(report.windowSeconds / 60) minutes")
                Dnsgate.printRanking("names", report.names.map { ($0.name, $0.blocked) })
                Dnsgate.printRanking("clients", report.clients.map { ($0.client, $0.blocked) })
                return
            }
            guard let stats = try reply("stats", StatsSnapshot.decode) else { return }
            print(StatsTable(stats).text)
        }

        /// Asks the daemon; with --json prints the reply as it came and returns nil.
        func reply<Report>(_ command: String, _ decode: (String) throws -> Report) throws -> Report? {
            let text = try socket.request(command)
            if json {
                print(text, terminator: text.hasSuffix("\n") ? "" : "\n")
                return nil
            }
            guard let report = try? decode(text) else {
                throw CommandFailure(message: "dnsgate: unexpected reply from the daemon: \(text.prefix(200))")
            }
            return report
        }
    }

    /// One ranking of `stats --top`: counts right-padded, then the key.
    static func printRanking(_ title: String, _ rows: [(String, UInt64)]) {
        print(title)
        for (key, count) in rows { print("  " + String(count).padding(toLength: 8, withPad: " ", startingAt: 0) + " " + key) }
        if rows.isEmpty { print("  (none)") }
    }

    struct Reload: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-read the config and lists (same as SIGHUP); print the outcome.")
        @OptionGroup var socket: SocketOption

        func run() throws {
            // A reload of millions of names takes seconds: wait for its outcome.
            let reply = try socket.request("reload", defaultSeconds: 300)
            print(reply, terminator: reply.hasSuffix("\n") ? "" : "\n")
            guard reply.hasPrefix("ok") else { throw CommandFailure(message: "dnsgate: reload failed") }
        }
    }

    struct Health: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Exit 0 when the firewall is healthy; otherwise print why and exit 1 (for monitoring).",
            discussion: """
                Healthy: the daemon answers on its stats socket, a policy is loaded, every queue it \
                serves is bound in this network namespace, every queue the installed rules feed is \
                one it serves (checked when the rules can be read, as root), and no remote list's \
                last successful fetch is older than --max-feed-age.
                """)
        @OptionGroup var socket: SocketOption
        @Option(help: ArgumentHelp("A remote list not fetched successfully for this long is stale.", valueName: "seconds"))
        var maxFeedAge = 2 * 86400

        func validate() throws {
            guard maxFeedAge > 0 else { throw ValidationError("--max-feed-age must be positive") }
        }

        func run() throws {
            let text = try socket.request("stats")
            guard let stats = try? StatsSnapshot.decode(text) else {
                throw CommandFailure(message: "unhealthy: unexpected reply from the daemon: \(text.prefix(200))")
            }
            let kernel = (try? String(contentsOfFile: KernelQueueStats.path, encoding: .utf8))
                .map(KernelQueueStats.parse) ?? [:]
            let problems = HealthReport.problems(stats, boundQueues: Set(kernel.keys), fedQueues: Deployment.fedQueues(),
                                                 maxFeedAge: TimeInterval(maxFeedAge), now: Date())
            guard problems.isEmpty else {
                for problem in problems { print("unhealthy: \(problem)") }
                throw CommandFailure(message: "dnsgate health: \(problems.count) problem(s)")
            }
            let feeds = stats.lists.filter { $0.url != nil }.count
            print("healthy: policy generation \(stats.policy.generation) (\(stats.policy.rules) rules, "
                + "\(stats.policy.domains) names), queues \(stats.queues.map { String($0.queue) }.joined(separator: ",")) bound"
                + (feeds > 0 ? ", \(feeds) remote list(s) fresh" : ""))
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// The human form of `dnsgate stats`.
struct StatsTable {
    let stats: StatsSnapshot
    init(_ stats: StatsSnapshot) { self.stats = stats }

    var text: String {
        var lines: [String] = []
        func row(_ name: String, _ value: some CustomStringConvertible) {
            let label = name.count < 22 ? name.padding(toLength: 22, withPad: " ", startingAt: 0) : name + "  "
            lines.append("  " + label + String(describing: value))
        }
        lines.append("dnsgate \(stats.version), up \(stats.uptimeSeconds)s, fail_mode \(stats.failMode), undecodable \(stats.undecodable), on_overload \(stats.onOverload)")
        lines.append("policy generation \(stats.policy.generation): \(stats.policy.rules) rules, \(stats.policy.domains) names")
        var section = ""
        for counter in stats.counters {
            if counter.section != section {
                section = counter.section
                lines.append(section.replacingOccurrences(of: "_", with: " "))
            }
            row(counter.name, counter.value)
        }
        if let error = stats.queryLog.lastError { row("query_log_error", error) }
        if let error = stats.dnstap?.lastError { row("dnstap_error", error) }
        lines.append("rules")
        for rule in stats.rules {
            // Questions, then the names and addresses of answers it matched, when there are any.
            row("\(rule.group)/\(rule.rule)", "\(rule.hits)  \(rule.action)" + (rule.answerHits > 0 ? "  (answers: \(rule.answerHits))" : ""))
        }
        lines.append("lists")
        for list in stats.lists {
            var detail = "\(list.entries) entries, \(list.hits) hits, \(list.format)"
            if list.url != nil {
                detail += ", fetched \(list.lastSuccess ?? "never")"
                if let error = list.lastError { detail += ", last error: \(error)" }
            }
            row(list.name, detail)
        }
        lines.append("queues")
        for queue in stats.queues {
            row("queue \(queue.queue)", "received \(queue.received), kernel_dropped \(queue.kernelDropped), user_dropped \(queue.userDropped)")
        }
        return lines.joined(separator: "\n")
    }
}
