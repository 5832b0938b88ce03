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

/// The running firewall: one worker per queue, the stats socket, the query log
/// and signal handling (SIGTERM/SIGINT stop, SIGHUP reloads, SIGUSR1 reopens the log).
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
    let reloadFailures = Atomic<UInt64>(0)
    /// What the shipped rules had queued when the daemon started (see `RuleCounters`).
    private let queuedAtStart = Mutex<UInt64?>(nil)
    private let reloadLock = Mutex<Int>(1)  // holds the last generation number
    let feeds: Feeds

    /// Loads the config, fetches remote lists that have no copy yet, compiles
    /// the policy and binds the queues; throws with every problem when any of
    /// that fails.
    public init(configPath: String, logger: Logger) throws {
        MemoryTuning.returnLargeBlocksToSystem()
        self.configPath = configPath
        self.logger = logger
        feeds = Feeds(logger: logger)
        let (config, result) = Self.load(configPath, generation: 1, feeds: feeds)
        for diagnostic in result.diagnostics where diagnostic.severity == .warning {
            logger.warning("\(diagnostic)")
        }
        guard let config, let policy = result.policy, !result.hasErrors else {
            throw DaemonError(description: result.diagnostics.filter { $0.severity == .error }.map(\.description)
                .joined(separator: "\n"))
        }
        self.config = config
        // One set of rule-hit counters per queue worker, and one for the TCP relay.
        policies = PolicyHolder(PolicyState(policy: policy, workers: config.queues.count + 1))
        // One ring per queue worker and one for the TCP relay.
        recorder = DecisionRecorder(log: config.queryLog, deciders: config.queues.count + 1)
        recorder.policyInForce(policy)
        let settings = WorkerSettings(undecodable: config.undecodable, overload: config.onOverload,
                                      queueLength: config.queueLength, mark: Self.answerMark)
        chaser = try TargetChaser(mark: Self.answerMark)
        var workers: [Worker] = []
        for (index, queue) in config.queues.enumerated() {
            workers.append(try Worker(index: index, queueNumber: queue, policies: policies, settings: settings,
                                      recorder: recorder, chaser: chaser, running: runState))
        }
        self.workers = workers
        for failure in workers.compactMap(\.queueSettingFailure) { logger.warning("\(failure)") }
        relay = TCPRelay(judgeIndex: workers.count, policies: policies, recorder: recorder, chaser: chaser,
                         mark: Self.answerMark,
                         undecodable: config.undecodable)
        logger.info("policy generation 1: \(policy.rules.count) rules, \(policy.domainCount) names in \(policy.lists.count) lists")
    }

    /// Reads the config and compiles it from what is on disk (remote lists
    /// from their cached copies: the feed thread fetches, never this path).
    /// Off the packet path.
    static func load(_ path: String, generation: Int,
                     feeds: Feeds) -> (DnsgateConfig?, PolicyCompiler.Result) {
        // The daemon never explains, so it keeps no line numbers.
        let compiler = PolicyCompiler(keepLines: false, readBoundedFile: readFileBytes)
        let (config, diagnostics) = compiler.readConfig(absoluteConfigPath(path))
        guard let config else { return (nil, PolicyCompiler.Result(policy: nil, lists: [], diagnostics: diagnostics)) }
        if !diagnostics.contains(where: { $0.severity == .error }) {
            feeds.configure(config)
        }
        return (config, compiler.compile(config, configDiagnostics: diagnostics, generation: generation))
    }

    /// Runs until SIGTERM or SIGINT.
    public func run() throws {
        // Read on this thread, before any worker is pinned: the affinity the process was started with.
        let workerCPUs = try Deployment.workerCPUs(config, workers: workers.count)
        for problem in Deployment.diagnostics(config) { logger.warning("\(problem)") }
        // The TCP port first: a second instance fails here, before it touches the stats socket.
        do {
            try relay.start(port: config.tcpPort)
        } catch {
            throw DaemonError(description: "listening for redirected DNS over TCP on port \(config.tcpPort): \(error)")
        }
        let listener = try makeListener()
        // Queues, raw sockets and the stats socket are open: nothing more needs root.
        if let user = config.user, getuid() == 0 {
            try Privileges.drop(to: user)
            logger.info("running as user \(user) with CAP_NET_ADMIN and CAP_NET_RAW only")
        }
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
        onSignal(SIGHUP) { [self] in _ = reload() }
        onSignal(SIGUSR1) { [self] in recorder.requestReopen() }

        let workersFinished = DispatchGroup()
        let finished = DispatchGroup()
        for worker in workers {
            // One allowed core per queue, in order (or as `worker_cpus` says); with
            // more queues than cores they share.
            let cpu = workerCPUs[worker.index]
            startThread(name: "dnsgate-q\(worker.counters.queue)", group: workersFinished) { [logger] in
                worker.run(cpu: cpu) { error in logger.error("queue \(worker.counters.queue): \(error)") }
            }
        }
        // Helpers yield to the workers on a shared core.
        startThread(name: "dnsgate-log", group: finished) { [recorder, logger] in
            PacketQueue.lowerCurrentThreadPriority()
            recorder.run(while: { runState.isRunning }, report: { logger.error("\($0)") })
        }
        startThread(name: "dnsgate-stats", group: finished) { [self] in
            PacketQueue.lowerCurrentThreadPriority()
            serveStats(listener)
        }
        // Not in `finished`: shutdown never waits on a fetch (it is cancelled).
        feeds.start(changed: { [self] in _ = reload() })
        logger.info("dnsgate \(Self.version) running: queues \(config.queues.map(String.init).joined(separator: ",")), fail_mode \(config.failMode.rawValue), undecodable \(config.undecodable.rawValue), on_overload \(config.onOverload.rawValue), TCP on port \(config.tcpPort), stats socket \(config.statsSocket)")
        stopped.wait()
        logger.info("stopping")
        // The queues first: each worker leaves its loop within a receive timeout,
        // then its queue is unbound, so the rules' fail mode applies at once.
        _ = workersFinished.wait(timeout: .now() + 2)
        for worker in workers { worker.releaseQueue() }
        feeds.stop()
        relay.stop()
        chaser.stop()
        // Helpers finish their round (the log drains); none may hold up the exit.
        if finished.wait(timeout: .now() + 3) == .timedOut { logger.warning("a helper thread did not stop in 3 s") }
        withExtendedLifetime(sources) {}
    }

    private func startThread(name: String, group: DispatchGroup, _ body: @escaping @Sendable () -> Void) {
        group.enter()
        let thread = Thread {
            // Foundation's Thread.name does not reach the kernel on Linux.
            PacketQueue.nameCurrentThread(name)
            body()
            group.leave()
        }
        thread.name = name
        thread.start()
    }

    private func makeListener() throws -> UnixListener {
        let directory = (config.statsSocket as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        return try UnixListener(path: config.statsSocket, mode: 0o660, group: config.statsSocketGroup)
    }

    /// Stats clients served at once; one more is told to come back later.
    static let maximumStatsClients = 32

    /// Each client on a thread of its own with a deadline for the whole
    /// exchange: idle or trickling clients cannot hold up `stats` or `reload`.
    private func serveStats(_ listener: UnixListener) {
        let active = Atomic<Int>(0)
        while runState.isRunning {
            do {
                guard let connection = try listener.accept(totalMilliseconds: 3000) else { continue }
                guard active.add(1, ordering: .relaxed).newValue <= Self.maximumStatsClients else {
                    active.subtract(1, ordering: .relaxed)
                    try? connection.write("error: busy, try again\n")
                    continue
                }
                let transfer = UncheckedConnection(connection)
                Thread.detachNewThread { [self] in
                    defer { active.subtract(1, ordering: .relaxed) }
                    answer(transfer.connection)
                }
            } catch {
                logger.warning("stats socket: \(error)")
            }
        }
    }

    private func answer(_ connection: UnixConnection) {
        do {
            let command = try connection.readLine().trimmingCharacters(in: .whitespaces)
            let text = reply(to: command, peer: connection.peerUserID)
            // A long reload must not use up the time left to write its outcome.
            connection.renewDeadline(milliseconds: 3000)
            try connection.write(text)
        } catch {
            logger.debug("stats socket client: \(error)")
        }
    }

    func reply(to command: String, peer: UInt32?) -> String {
        switch command {
        case "stats": return snapshot().json() + "\n"
        case "metrics": return snapshot().prometheus
        case "version": return "dnsgate \(Self.version)\n"
        case "top": return topJSON(limit: 10) + "\n"
        case "reload":
            // Only root or the daemon's own user may change state.
            guard let peer, peer == 0 || peer == getuid() else { return "error: reload is not permitted for this user\n" }
            let (ok, message) = reload()
            return (ok ? "ok: " : "error: ") + message + "\n"
        default:
            if command.hasPrefix("top "), let limit = Int(command.dropFirst(4)), (1...1000).contains(limit) {
                return topJSON(limit: limit) + "\n"
            }
            return "error: unknown command '\(command.prefix(64))' (stats, metrics, top [N], reload, version)\n"
        }
    }

    /// Re-reads the config and lists, compiles off the packet path and swaps
    /// the new policy in; a bad config leaves the running policy in force.
    func reload() -> (Bool, String) {
        reloadLock.withLock { generation in
            let (newConfig, result) = Self.load(configPath, generation: generation + 1,
                                                feeds: feeds)
            guard let newConfig, let policy = result.policy, !result.hasErrors else {
                reloadFailures.wrappingAdd(1, ordering: .relaxed)
                let problems = result.diagnostics.filter { $0.severity == .error }.map(\.description)
                logger.error("reload failed; the running policy stays in force:\n\(problems.joined(separator: "\n"))")
                return (false, "reload failed; the running policy stays in force\n" + problems.joined(separator: "\n"))
            }
            if newConfig.queues != config.queues || newConfig.failMode != config.failMode
                || newConfig.statsSocket != config.statsSocket || newConfig.tcpPort != config.tcpPort
                || newConfig.undecodable != config.undecodable || newConfig.onOverload != config.onOverload {
                logger.warning("queues, fail_mode, undecodable, on_overload, tcp_port and stats_socket take effect only after a restart")
            }
            generation += 1
            recorder.policyInForce(policy)
            policies.replace(with: PolicyState(policy: policy, workers: workers.count + 1))
            let message = "policy generation \(generation): \(policy.rules.count) rules, \(policy.domainCount) names"
            logger.info("reloaded: \(message)")
            return (true, message)
        }
    }

    func topJSON(limit: Int) -> String {
        let ranking = recorder.top.ranking(limit: limit, now: Int(Date().timeIntervalSince1970))
        let report = TopReport(windowSeconds: ranking.windowSeconds,
                               names: ranking.names.map { .init(name: $0.0, blocked: $0.1) },
                               clients: ranking.clients.map { .init(client: $0.0, blocked: $0.1) })
        return report.json
    }

    func snapshot() -> StatsSnapshot {
        let (state, hits) = policies.ruleHits()
        let policy = state.policy
        let iso = ISO8601DateFormatter()
        let loadedAt = iso.string(from: state.loadedAt)
        let kernel = KernelQueueStats.parse((try? String(contentsOfFile: "/proc/net/netfilter/nfnetlink_queue", encoding: .utf8)) ?? "")
        var snapshot = StatsSnapshot(
            version: Self.version, uptimeSeconds: Int(Date().timeIntervalSince(started)),
            failMode: config.failMode.rawValue, undecodable: config.undecodable.rawValue,
            onOverload: config.onOverload.rawValue,
            policy: .init(generation: policy.generation, rules: policy.rules.count, domains: policy.domainCount,
                          loadedAt: loadedAt))
        for counters in workers.map(\.counters) + [relay.counters, chaser.counters] {
            snapshot.add(counters)
        }
        for worker in workers {
            let c = worker.counters
            let k = kernel[c.queue]
            snapshot.queues.append(.init(queue: c.queue, received: c.received.value, waiting: k?.waiting ?? 0,
                                         kernelDropped: k?.kernelDropped ?? 0, userDropped: k?.userDropped ?? 0))
            // Without fail-open the kernel drops what finds the queue full and counts it.
            if config.onOverload == .drop {
                snapshot.packets.overflowDropped += (k?.kernelDropped ?? 0) + (k?.userDropped ?? 0)
            }
        }
        // With fail-open, what finds a queue full passes uncounted by the kernel:
        // it is what the rules queued since start, less what reached dnsgate.
        if config.onOverload == .pass, let start = queuedAtStart.withLock({ $0 }),
           let queued = RuleCounters.queuedPackets() {
            let handled = snapshot.queues.reduce(UInt64(0)) { $0 + $1.received + $1.waiting + $1.kernelDropped + $1.userDropped }
            snapshot.packets.overflowPassed = queued >= start + handled ? queued - start - handled : 0
        }
        let t = relay.tcp
        snapshot.tcp = .init(connections: t.accepted.value, open: t.open.value, refused: t.refused.value,
                             queries: relay.counters.received.value, relayed: relay.counters.accepted.value,
                             answersRelayed: t.answersRelayed.value,
                             upstreamFailures: t.upstreamFailures.value, idleClosed: t.idleClosed.value)
        let c = chaser.chase
        snapshot.overrideTargets = .init(queries: c.queries.value, failures: c.failures.value,
                                         cacheHits: c.cacheHits.value, overflows: c.overflows.value)
        snapshot.errors.reloadFailures = reloadFailures.load(ordering: .relaxed)
        snapshot.errors.queryLogDropped = recorder.droppedRecords.load(ordering: .relaxed)
        snapshot.queryLog = .init(written: recorder.writtenRecords.value, lost: recorder.lostRecords.value,
                                  lastError: recorder.lastError.withLock { $0 })
        snapshot.rules = policy.rules.enumerated().map {
            .init(group: $1.group, rule: $1.name, action: $1.action.rawValue, hits: hits[$0])
        }
        var listHits = [UInt64](repeating: 0, count: policy.lists.count)
        for (index, rule) in policy.rules.enumerated() { listHits[rule.listIndex] += hits[index] }
        snapshot.lists = policy.lists.enumerated().map { index, list in
            let feed = feeds.status(of: list.name)
            return .init(name: list.name, file: list.file, url: list.url, format: list.format.rawValue,
                         entries: list.entries, skippedLines: list.skippedLines, hits: listHits[index],
                         lastSuccess: list.url == nil ? loadedAt : feed?.lastSuccess.map { iso.string(from: $0) },
                         lastError: feed?.lastError)
        }
        return snapshot
    }
}

/// A connection handed from the accepting thread to the one that serves it,
/// which then owns it alone.
private struct UncheckedConnection: @unchecked Sendable {
    let connection: UnixConnection
    init(_ connection: UnixConnection) { self.connection = connection }
}
