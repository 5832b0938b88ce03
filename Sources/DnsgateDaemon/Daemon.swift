// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import DnsgatePolicy
import Dispatch
import Foundation
public import Logging
import NetfilterQueue
import Synchronization

/// Whether the daemon is still running; shared by every thread.
final class RunState: Sendable {
    private let flag = Atomic<Bool>(true)
    var isRunning: Bool { flag.load(ordering: .relaxed) }
    func stop() { flag.store(false, ordering: .relaxed) }
}

/// Why the daemon could not start.
public struct DaemonError: Error, CustomStringConvertible {
    public var description: String
}

/// Reads files for the policy compiler.
public func readFileBytes(_ path: String) throws -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else {
        let reason = FileManager.default.fileExists(atPath: path) ? "permission denied or not a file" : "no such file"
        throw DaemonError(description: reason)
    }
    return [UInt8](data)
}

/// The running firewall's lifecycle: builds the deciders (one worker per
/// queue, the TCP relay), the query log, the CNAME chaser, the policy reloader
/// and the stats server, runs them on threads of their own, handles signals
/// (SIGTERM/SIGINT stop, SIGHUP reloads, SIGUSR1 reopens the log) and stops
/// them in order, the queues first. Its stats are in `DaemonStats.swift`.
public final class Daemon: Sendable {
    public static let version = "0.1.0"
    /// Firewall mark of every packet dnsgate sends; the shipped rules let such packets pass unqueued.
    public static let answerMark: UInt32 = 0x444e53

    let configPath: String
    let config: DnsgateConfig
    let logger: Logger
    let policies: PolicyHolder
    let workers: [Worker]
    let relay: TCPRelay
    let chaser: TargetChaser
    let recorder: DecisionRecorder
    let runState = RunState()
    let started = Date()
    /// What the shipped rules had queued when the daemon started (see `RuleCounters`).
    let queuedAtStart = Mutex<RuleCounters.Queued?>(nil)
    let feeds: Feeds
    let zones: Zones
    let reloader: PolicyReloader
    let listener: UnixListener
    /// `metrics_listen`: Prometheus over HTTP.
    let metrics = MetricsServer()

    /// Loads the config and compiles the policy from what is on disk (remote
    /// lists from their cached copies: the feed thread fetches), binds the
    /// queues, opens the stats socket and drops privileges; throws with every
    /// problem when any of that fails.
    public init(configPath: String, logger: Logger) throws {
        MemoryTuning.returnLargeBlocksToSystem()
        MemoryTuning.limitHeaps()
        self.configPath = configPath
        self.logger = logger
        feeds = Feeds(logger: logger)
        // The zones are configured once their NOTIFY sockets are bound, below.
        let (loaded, result) = PolicyReloader.load(configPath, generation: 1, feeds: feeds, zones: nil)
        for diagnostic in result.diagnostics where diagnostic.severity == .warning {
            logger.warning("\(diagnostic)")
        }
        let config: DnsgateConfig, policy: CompiledPolicy
        do {
            guard let loaded else { throw PolicyError(result.diagnostics.filter { $0.severity == .error }) }
            config = loaded
            policy = try result.requirePolicy()
        } catch {
            throw DaemonError(description: "\(error)")
        }
        self.config = config
        // One set of rule-hit counters per queue worker, and one for the TCP relay.
        policies = PolicyHolder(PolicyState(policy: policy, workers: config.queues.count + 1,
                                            tunnelPairs: config.threatDetection.tunnelPairs))
        // One ring per queue worker and one for the TCP relay.
        let dnstap = config.dnstap.map { [logger] dnstap in
            DnstapOutput(dnstap, defaultIdentity: Self.hostName(), defaultVersion: "dnsgate \(Self.version)") {
                if let problem = $0 {
                    logger.error("dnstap: \(problem); frames wait in the buffer (then are dropped, counted) until it works")
                } else {
                    logger.info("dnstap: collector \(dnstap.destination) accepted the stream")
                }
            }
        }
        recorder = DecisionRecorder(log: config.queryLog, dnstap: dnstap, deciders: config.queues.count + 1)
        recorder.policyInForce(policy)
        let settings = WorkerSettings(undecodable: config.undecodable, undecodableAnswer: config.undecodableAnswer,
                                      overload: config.onOverload,
                                      queueLength: config.queueLength, mark: Self.answerMark)
        // The queues first: a second instance fails here, before it touches anything.
        var workers: [Worker] = []
        for (index, queue) in config.queues.enumerated() {
            workers.append(try Worker(index: index, queueNumber: queue, policies: policies, settings: settings,
                                      recorder: recorder, running: runState))
        }
        self.workers = workers
        for failure in workers.compactMap(\.queueSettingFailure) { logger.warning("\(failure)") }
        listener = try Self.makeListener(config)
        do {
            zones = try Zones(logger: logger, mark: Self.answerMark, notifyListen: config.notifyListen)
        } catch {
            throw DaemonError(description: "\(error)")
        }
        zones.configure(config)
        // Queues, raw sockets and the stats socket are open: nothing more needs root.
        // Before any other thread exists: a thread keeps its capabilities
        // through the change of user only if it makes the change itself, and
        // new threads inherit the main thread's two.
        if let user = config.user, getuid() == 0 {
            try Privileges.drop(to: user)
            logger.info("running as user \(user) with CAP_NET_ADMIN and CAP_NET_RAW only")
        }
        chaser = try TargetChaser(mark: Self.answerMark)
        for worker in workers { worker.answerCNAMETargets(with: chaser) }
        relay = TCPRelay(judgeIndex: workers.count, policies: policies, recorder: recorder, chaser: chaser,
                         mark: Self.answerMark,
                         undecodable: config.undecodable, undecodableAnswer: config.undecodableAnswer)
        reloader = PolicyReloader(configPath: configPath, logger: logger, feeds: feeds, zones: zones, policies: policies,
                                  recorder: recorder, deciders: config.queues.count + 1, startedWith: config,
                                  metrics: metrics)
        logger.info("policy generation 1: \(policy.rules.count) rules, \(policy.listSummary)")
    }

    /// Runs until SIGTERM or SIGINT.
    public func run() throws {
        // Read on this thread, before any worker is pinned: the affinity the process was started with.
        let workerCPUs = try Deployment.workerCPUs(config, workers: workers.count)
        for problem in Deployment.diagnostics(config) { logger.warning("\(problem)") }
        do {
            try relay.start(port: config.tcpPort)
        } catch {
            throw DaemonError(description: "listening for redirected DNS over TCP on port \(config.tcpPort): \(error)")
        }
        startMetricsEndpoint()
        // Only fail-open overflow needs the rules' own counters (see `snapshot`).
        if config.onOverload == .pass { queuedAtStart.withLock { $0 = RuleCounters.queuedPackets() } }
        let stopped = DispatchSemaphore(value: 0)
        var sources: [DispatchSourceSignal] = []
        func onSignal(_ number: Int32, _ handler: @escaping @Sendable () -> Void) {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler(handler: handler)
            source.resume()
            sources.append(source)
        }
        let runState = self.runState
        onSignal(SIGTERM) { runState.stop(); stopped.signal() }
        onSignal(SIGINT) { runState.stop(); stopped.signal() }
        onSignal(SIGHUP) { [reloader] in _ = reloader.reload() }
        onSignal(SIGUSR1) { [self] in recorder.requestReopen() }

        let workersFinished = DispatchGroup()
        let finished = DispatchGroup()
        for worker in workers {
            // One allowed core per queue, in order (or as `worker_cpus` says); with
            // more queues than cores they share.
            let cpu = workerCPUs[worker.index]
            startThread("dnsgate-q\(worker.counters.queue)", group: workersFinished) { [logger] in
                worker.run(cpu: cpu) { error in logger.error("queue \(worker.counters.queue): \(error)") }
            }
        }
        // Helpers yield to the workers on a shared core.
        startThread("dnsgate-log", group: finished, helper: true) { [recorder, logger] in
            recorder.run(while: { runState.isRunning }, report: { logger.error("\($0)") })
        }
        let statsServer = StatsServer(listener: listener, logger: logger, running: runState) { [self] command, peer in
            reply(to: command, peer: peer)
        }
        startThread("dnsgate-stats", group: finished, helper: true) {
            statsServer.serve()
        }
        // Not in `finished`: shutdown never waits on a fetch (it is cancelled).
        feeds.start(changed: { [reloader] in _ = reloader.reload() })
        zones.start(changed: { [reloader] in _ = reloader.reload() })
        let metricsNote = metrics.address.map { ", metrics on http://\($0)/metrics" } ?? ""
        logger.info("dnsgate \(Self.version) running: queues \(config.queues.map(String.init).joined(separator: ",")), fail_mode \(config.failMode.rawValue), undecodable \(config.undecodable.rawValue), on_overload \(config.onOverload.rawValue), TCP on port \(config.tcpPort), stats socket \(config.statsSocket)\(metricsNote)")
        stopped.wait()
        logger.info("stopping")
        // The queues first: each worker leaves its loop within a receive timeout,
        // then its queue is unbound, so the rules' fail mode applies at once.
        _ = workersFinished.wait(timeout: .now() + 2)
        feeds.stop()
        zones.stop()
        // The chaser before the relay: a pending target answers on the relay's loop.
        chaser.stop()
        relay.stop()
        metrics.stop()
        // Helpers finish their round (the log drains); none may hold up the exit.
        if finished.wait(timeout: .now() + 3) == .timedOut { logger.warning("a helper thread did not stop in 3 s") }
        withExtendedLifetime(sources) {}
    }

    /// Serves `metrics_listen` when set. An address that cannot be bound (in
    /// use, not this host's) is logged and the daemon goes on enforcing: a
    /// monitoring endpoint must not take the firewall down; a reload tries
    /// again, and Prometheus sees the target down meanwhile.
    private func startMetricsEndpoint() {
        let routes = MetricsRoutes(metrics: { [self] in snapshot().prometheus },
                                   healthProblems: { [self] in healthProblems() })
        do {
            try metrics.start(routes: routes, on: config.metricsListen)
        } catch {
            logger.error("metrics_listen \(config.metricsListen.map(String.init(describing:)) ?? "-"): \(error); enforcing without the HTTP metrics endpoint (the stats socket's metrics command still answers); a reload tries again")
        }
    }

    /// Why the daemon is not enforcing, for `/healthz`: stopping, no policy, or
    /// a served queue the kernel does not list as bound.
    func healthProblems() -> [String] {
        guard runState.isRunning else { return ["the daemon is stopping"] }
        guard let text = try? String(contentsOfFile: KernelQueueStats.path, encoding: .utf8) else {
            return ["cannot read \(KernelQueueStats.path), so whether the queues are bound is unknown"]
        }
        return HealthReport.enforcementProblems(policyGeneration: policies.state.policy.generation,
                                                servedQueues: config.queues,
                                                boundQueues: Set(KernelQueueStats.parse(text).keys))
    }

    /// The kernel's host name, as `hostname` prints it (Foundation's may ask
    /// the DNS for a canonical name, and the DNS may be this daemon's to pass).
    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "dnsgate" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func makeListener(_ config: DnsgateConfig) throws -> UnixListener {
        let directory = (config.statsSocket as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        return try UnixListener(path: config.statsSocket, mode: 0o660, group: config.statsSocketGroup)
    }
}
