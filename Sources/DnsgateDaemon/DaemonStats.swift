// SPDX-License-Identifier: GPL-2.0-or-later
import DnsgatePolicy
import Foundation
import NetfilterQueue

/// What the stats socket's commands answer: the counters of every part of the
/// daemon, gathered into one snapshot.
extension Daemon {
    func reply(to command: String, peer: UInt32?) -> String {
        switch command {
        case "stats": return snapshot().json() + "\n"
        case "metrics": return snapshot().prometheus
        case "version": return "dnsgate \(Self.version)\n"
        case "top": return topJSON(limit: 10) + "\n"
        case "reload":
            // Only root or the daemon's own user may change state.
            guard let peer, peer == 0 || peer == getuid() else { return "error: reload is not permitted for this user\n" }
            let (ok, message) = reloader.reload()
            return (ok ? "ok: " : "error: ") + message + "\n"
        default:
            if command.hasPrefix("top "), let limit = Int(command.dropFirst(4)), (1...1000).contains(limit) {
                return topJSON(limit: limit) + "\n"
            }
            return "error: unknown command '\(command.prefix(64))' (stats, metrics, top [N], reload, version)\n"
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
        let kernel = KernelQueueStats.parse((try? String(contentsOfFile: KernelQueueStats.path, encoding: .utf8)) ?? "")
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
            snapshot.queues.append(.init(queue: c.queue, received: c.received.value,
                                         answersReceived: c.answers.received.value, waiting: k?.waiting ?? 0,
                                         kernelDropped: k?.kernelDropped ?? 0, userDropped: k?.userDropped ?? 0))
            // Without fail-open the kernel drops what finds the queue full and counts it.
            if config.onOverload == .drop {
                snapshot.packets.overflowDropped += (k?.kernelDropped ?? 0) + (k?.userDropped ?? 0)
            }
        }
        // With fail-open, what finds a queue full passes uncounted by the kernel:
        // it is what the rules queued since start, less what reached dnsgate;
        // queries and answers apart (what waits or the kernel dropped counts
        // against the queries).
        if config.onOverload == .pass, let start = queuedAtStart.withLock({ $0 }),
           let queued = RuleCounters.queuedPackets() {
            let answersHandled = snapshot.queues.reduce(UInt64(0)) { $0 + $1.answersReceived }
            // Unreadable answers count in both stages' `received`: once is enough.
            let unreadableAnswers = workers.reduce(UInt64(0)) { $0 + $1.counters.answers.notDNS.value }
            let handled = snapshot.queues.reduce(UInt64(0)) { $0 + $1.received + $1.waiting + $1.kernelDropped + $1.userDropped }
                - min(unreadableAnswers, snapshot.queues.reduce(UInt64(0)) { $0 + $1.received })
            func overflow(_ queued: UInt64, _ start: UInt64, _ handled: UInt64) -> UInt64 {
                queued >= start + handled ? queued - start - handled : 0
            }
            snapshot.packets.overflowPassed = overflow(queued.questions, start.questions, handled)
            snapshot.answers.packets.overflowPassed = overflow(queued.answers, start.answers, answersHandled)
        }
        let t = relay.tcp
        snapshot.tcp = .init(connections: t.accepted.value, open: t.open.value, refused: t.refused.value,
                             queries: relay.counters.received.value, relayed: relay.counters.accepted.value,
                             answersRelayed: t.answersRelayed.value,
                             upstreamFailures: t.upstreamFailures.value, idleClosed: t.idleClosed.value)
        let c = chaser.chase
        snapshot.overrideTargets = .init(queries: c.queries.value, failures: c.failures.value,
                                         cacheHits: c.cacheHits.value, overflows: c.overflows.value)
        if let tunnels = state.tunnels {
            snapshot.threats = .init(tunnelPairs: UInt64(tunnels.count), tunnelCapacity: UInt64(tunnels.capacity),
                                     tunnelEvictions: UInt64(tunnels.evictions))
        }
        snapshot.errors.reloadFailures = reloader.failures.load(ordering: .relaxed)
        snapshot.errors.queryLogDropped = recorder.droppedRecords.load(ordering: .relaxed)
        snapshot.queryLog = .init(written: recorder.writtenRecords.value, lost: recorder.lostRecords.value,
                                  lastError: recorder.lastError.withLock { $0 })
        if let dnstap = recorder.dnstap {
            snapshot.dnstap = .init(frames: dnstap.sentFrames.value, dropped: dnstap.droppedFrames.value,
                                    buffered: UInt64(dnstap.bufferedFrames.load(ordering: .relaxed)),
                                    connected: dnstap.isConnected.load(ordering: .relaxed),
                                    lastError: dnstap.lastError.withLock { $0 })
        }
        snapshot.rules = policy.rules.enumerated().map {
            .init(group: $1.group, rule: $1.name, action: $1.action.rawValue, hits: hits[$0].questions,
                  answerHits: hits[$0].answers)
        }
        // Domain lists, then ip lists (one name space): a rule's hits in both stages count for its list.
        var listHits = [UInt64](repeating: 0, count: policy.lists.count + policy.addressLists.count)
        for (index, rule) in policy.rules.enumerated() {
            let list = rule.listIndex >= 0 ? rule.listIndex
                : rule.addressListIndex >= 0 ? policy.lists.count + rule.addressListIndex : -1
            if list >= 0 { listHits[list] += hits[index].questions + hits[index].answers }
        }
        snapshot.lists = (policy.lists + policy.addressLists).enumerated().map { index, list in
            let feed = feeds.status(of: list.name)
            let zone = zones.status(of: list.name)
            return .init(name: list.name, file: list.file, url: list.url, format: list.format.rawValue,
                         entries: list.entries, skippedLines: list.skippedLines, hits: listHits[index],
                         lastSuccess: list.url == nil ? loadedAt
                            : (feed?.lastSuccess ?? zone?.lastSuccess).map { iso.string(from: $0) },
                         lastError: feed?.lastError ?? zone?.lastError)
        }
        let now = Date()
        snapshot.zones = zones.statuses().map { list, status in
            .init(list: list, zone: status.zone, serial: status.serial, records: status.records, primary: status.primary,
                  lastCheck: status.lastCheck.map { iso.string(from: $0) },
                  lastSuccess: status.lastSuccess.map { iso.string(from: $0) },
                  lastTransfer: status.lastTransfer.map { iso.string(from: $0) }, lastError: status.lastError,
                  expired: status.expired(now: now), refreshSeconds: status.refresh,
                  transfers: .init(axfr: status.axfr, ixfr: status.ixfr, upToDate: status.upToDate, failed: status.failures),
                  notifies: status.notifies)
        }
        snapshot.notifiesIgnored = zones.ignoredNotifies.load(ordering: .relaxed)
        return snapshot
    }
}
