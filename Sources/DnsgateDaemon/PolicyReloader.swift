// SPDX-License-Identifier: GPL-2.0-or-later
import DnsgatePolicy
import Foundation
import Logging
import NetfilterQueue
import Synchronization

/// Owns the policy's sources — the config file and the remote lists' feeds —
/// and puts new policies into force: reads and compiles off the packet path,
/// then swaps the result in for every decider at once. A config or list that
/// does not compile leaves the running policy in force.
final class PolicyReloader: Sendable {
    let configPath: String
    let logger: Logger
    let feeds: Feeds
    let zones: Zones
    let policies: PolicyHolder
    let recorder: DecisionRecorder
    /// Rule-hit counter sets per policy: the queue workers' and the TCP relay's.
    let deciders: Int
    /// The settings the daemon started with; changes to them wait for a restart.
    let startedWith: DnsgateConfig
    let failures = Atomic<UInt64>(0)
    /// `metrics_listen` follows the config in force.
    let metrics: MetricsServer
    private let generation = Mutex<Int>(1)

    init(configPath: String, logger: Logger, feeds: Feeds, zones: Zones, policies: PolicyHolder, recorder: DecisionRecorder,
         deciders: Int, startedWith: DnsgateConfig, metrics: MetricsServer) {
        self.configPath = configPath
        self.logger = logger
        self.feeds = feeds
        self.zones = zones
        self.policies = policies
        self.recorder = recorder
        self.deciders = deciders
        self.startedWith = startedWith
        self.metrics = metrics
    }

    /// Reads the config and compiles it from what is on disk (remote lists
    /// from their cached copies: the feed thread fetches, never this path).
    static func load(_ path: String, generation: Int, feeds: Feeds, zones: Zones?) -> (DnsgateConfig?, PolicyCompiler.Result) {
        // The daemon never explains, so it keeps no line numbers.
        let compiler = PolicyCompiler(keepLines: false, readBoundedFile: readFileBytes)
        let (config, diagnostics) = compiler.readConfig(absoluteConfigPath(path))
        guard let config else { return (nil, PolicyCompiler.Result(policy: nil, lists: [], diagnostics: diagnostics)) }
        let result = compiler.compile(config, configDiagnostics: diagnostics, generation: generation)
        // The feeds follow the config in force: a rejected one changes none of them.
        if !result.hasErrors {
            feeds.configure(config)
            zones?.configure(config)
            let unusable = result.lists.filter { $0.info.url != nil && $0.info.awaitingFirstCopy }.map(\.info.name)
            feeds.copiesUnusable(unusable)
            zones?.copiesUnusable(unusable)
        }
        return (config, result)
    }

    /// Re-reads the config and lists and swaps the new policy in; one reload
    /// at a time. Returns whether it worked, and what to tell the operator.
    func reload() -> (Bool, String) {
        generation.withLock { generation in
            let (config, result) = Self.load(configPath, generation: generation + 1, feeds: feeds, zones: zones)
            let policy: CompiledPolicy
            let tunnelPairs: Int
            let metricsListen: ServerAddress?
            do {
                guard let config else { throw PolicyError(result.diagnostics.filter { $0.severity == .error }) }
                policy = try result.requirePolicy()
                tunnelPairs = config.threatDetection.tunnelPairs
                metricsListen = config.metricsListen
                warnAboutRestartOnlySettings(config)
            } catch {
                failures.wrappingAdd(1, ordering: .relaxed)
                logger.error("reload failed; the running policy stays in force:\n\(error)")
                return (false, "reload failed; the running policy stays in force\n\(error)")
            }
            generation += 1
            recorder.policyInForce(policy)
            let previous = policies.state
            let state = PolicyState(policy: policy, workers: deciders, tunnelPairs: tunnelPairs, previous: previous)
            if let tunnels = state.tunnels, tunnels !== previous.tunnels, previous.tunnels != nil {
                logger.notice("tunnel table now holds \(tunnels.capacity) pairs; what the old one had seen is dropped")
            }
            policies.replace(with: state)
            MemoryTuning.releaseFreePages()
            var message = "policy generation \(generation): \(policy.rules.count) rules, \(policy.domainCount) names"
            logger.info("reloaded: \(message)")
            if let problem = applyMetricsListen(metricsListen) { message += "\nwarning: " + problem }
            return (true, message)
        }
    }

    /// Moves the HTTP endpoint to the config's `metrics_listen`; what went
    /// wrong, if anything (the policy is in force either way).
    private func applyMetricsListen(_ address: ServerAddress?) -> String? {
        do {
            try metrics.serve(on: address)
            return nil
        } catch {
            let serving = metrics.address.map { "still serving metrics on \($0)" } ?? "not serving metrics over HTTP"
            let problem = "metrics_listen \(address.map(String.init(describing:)) ?? "-"): \(error); \(serving)"
            logger.error("\(problem)")
            return problem
        }
    }

    private func warnAboutRestartOnlySettings(_ config: DnsgateConfig) {
        let running = startedWith
        if config.queues != running.queues || config.failMode != running.failMode
            || config.statsSocket != running.statsSocket || config.tcpPort != running.tcpPort
            || config.undecodable != running.undecodable || config.onOverload != running.onOverload
            || config.notifyListen != running.notifyListen || config.queryLog != running.queryLog
            || config.dnstap != running.dnstap {
            logger.warning("queues, fail_mode, undecodable, on_overload, tcp_port, stats_socket, notify_listen, query_log and dnstap take effect only after a restart")
        }
    }
}
