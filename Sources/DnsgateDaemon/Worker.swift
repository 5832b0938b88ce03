// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import DnsgatePolicy
import Foundation
import NetfilterQueue
import Synchronization

/// Settings every worker shares.
struct WorkerSettings: Sendable {
    var failMode: FailMode
    var mark: UInt32
}

/// Decides every packet of one queue, on a thread of its own. Nothing in the
/// per-packet path allocates: the queue, the injector and the log ring are
/// all preallocated, and decoding and deciding work on inline values.
final class Worker: @unchecked Sendable {
    // @unchecked: `queue` and `injector` are touched only by this worker's thread
    // once `run` starts; everything shared is Sendable.
    let counters: WorkerCounters
    private let queue: PacketQueue
    private let injector: PacketInjector
    private let policies: PolicyHolder
    private let settings: WorkerSettings
    private let log: QueryLog?
    private let running: RunState

    /// This worker's index in every `PolicyState.ruleHits`.
    let index: Int

    init(index: Int, queueNumber: UInt16, policies: PolicyHolder, settings: WorkerSettings, log: QueryLog?,
         running: RunState) throws {
        self.index = index
        queue = try PacketQueue(number: queueNumber, failOpen: settings.failMode == .open)
        injector = try PacketInjector(mark: settings.mark)
        counters = WorkerCounters(queue: queueNumber)
        self.policies = policies
        self.settings = settings
        self.log = log
        self.running = running
    }

    var overflowAccepted: UInt64 { queue.overflowAccepted }

    func run(onError: (SystemError) -> Void) {
        while running.isRunning {
            let state = policies.state
            do {
                try queue.receive { packet in handle(packet, state: state) }
            } catch {
                counters.verdictFailures.increment()
                onError(error)
            }
        }
    }

    @inline(__always)
    func handle(_ packet: Span<UInt8>, state: PolicyState) -> Verdict {
        counters.received.increment()
        let verdict: Verdict
        switch QueryDecoder.decode(packet: packet) {
        case .notDNS:
            counters.notDNS.increment()
            verdict = settings.failMode == .open ? .accept : .drop
        case .query(let query):
            verdict = decide(query, packet: packet, state: state)
        }
        if verdict == .accept { counters.accepted.increment() } else { counters.dropped.increment() }
        return verdict
    }

    @inline(__always)
    func decide(_ query: DNSQuery, packet: Span<UInt8>, state: PolicyState) -> Verdict {
        let policy = state.policy
        guard let ruleIndex = policy.decide(name: query.name, type: query.type, client: query.source) else {
            counters.noMatch.increment()
            return .accept
        }
        state.ruleHits[index][ruleIndex].hits.increment()
        let rule = policy.rules[ruleIndex]
        if let log, log.actions.contains(rule.action) { record(query, ruleIndex: ruleIndex, policy: policy, in: log) }
        switch rule.action {
        case .allow:
            counters.allow.increment()
            return .accept
        case .alert:
            counters.alert.increment()
            return .accept
        case .block:
            counters.block.increment()
            guard let kind = rule.forgedAnswer else {
                counters.drop.increment()
                return .drop
            }
            let sent: Bool
            do {
                sent = try injector.send { output in
                    ForgedAnswerBuilder.build(answering: query, packet: packet, kind: kind,
                                              settings: policy.answerSettings, extraText: rule.extraText.span,
                                              into: &output)
                }
            } catch {
                sent = false
            }
            if sent {
                counters.answered.increment()
                switch kind {
                case .nxdomain: counters.nxdomain.increment()
                case .nodata: counters.nodata.increment()
                case .refused: counters.refused.increment()
                case .override: counters.override.increment()
                }
            } else {
                counters.injectFailures.increment()
            }
            return .drop
        }
    }

    private func record(_ query: DNSQuery, ruleIndex: Int, policy: CompiledPolicy, in log: QueryLog) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        log.append(QueryLogRecord(
            seconds: now.tv_sec, microseconds: now.tv_nsec / 1000, source: query.source, sourcePort: query.sourcePort,
            destination: query.destination, destinationPort: query.destinationPort, name: query.name,
            type: query.type, queryClass: query.queryClass, ruleIndex: ruleIndex, policy: policy))
    }
}
