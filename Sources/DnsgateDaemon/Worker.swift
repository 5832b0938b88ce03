// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import DnsgatePolicy
import Foundation
import NetfilterQueue
import Synchronization

/// Settings every worker shares.
struct WorkerSettings: Sendable {
    var failMode: FailMode
    var queueLength: UInt32
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
    private let recorder: DecisionRecorder
    /// DNS-over-TCP connections this worker follows (touched by its thread only).
    private var streams = TCPStreams()
    private let running: RunState

    /// This worker's index in every `PolicyState.ruleHits`.
    let index: Int

    init(index: Int, queueNumber: UInt16, policies: PolicyHolder, settings: WorkerSettings, recorder: DecisionRecorder,
         running: RunState) throws {
        self.index = index
        queue = try PacketQueue(number: queueNumber, maximumBacklog: settings.queueLength,
                                failOpen: settings.failMode == .open)
        injector = try PacketInjector(mark: settings.mark)
        counters = WorkerCounters(queue: queueNumber)
        self.policies = policies
        self.settings = settings
        self.recorder = recorder
        self.running = running
    }

    /// Decides packets until the daemon stops. The thread is pinned to `cpu`
    /// when given, so each queue's packets stay on one core's caches.
    func run(cpu: Int?, onError: (SystemError) -> Void) {
        if let cpu {
            do {
                try PacketQueue.pinCurrentThread(to: cpu)
            } catch {
                onError(error)
            }
        }
        var swaps = policies.swapCount
        var state = policies.state
        /// Takes a swapped-in policy: before every packet, so the first packet
        /// after a reload sees it, and between batches, so an idle queue lets go
        /// of the replaced one.
        func takeSwappedPolicy() {
            let current = policies.swapCount
            if current != swaps {
                swaps = current
                state = policies.state
            }
        }
        while running.isRunning {
            takeSwappedPolicy()
            do {
                try queue.receive { packet, wireLength in
                    takeSwappedPolicy()
                    return handle(packet, wireLength: wireLength, state: state)
                }
            } catch {
                counters.verdictFailures.increment()
                onError(error)
            }
        }
    }

    @inline(__always)
    func handle(_ packet: Span<UInt8>, wireLength: Int, state: PolicyState) -> Verdict {
        counters.received.increment()
        let verdict: Verdict
        switch QueryDecoder.decode(packet: packet, wireLength: wireLength) {
        case .notDNS:
            counters.notDNS.increment()
            verdict = failVerdict
        case .query(let query):
            verdict = decide(query, packet: packet, state: state)
        case .tcp(let segment):
            verdict = decideTCP(segment, packet: packet, state: state)
        }
        if verdict == .accept { counters.accepted.increment() } else { counters.dropped.increment() }
        return verdict
    }

    var failVerdict: Verdict { settings.failMode == .open ? .accept : .drop }

    /// Decides a query: counts it, logs it, and returns the rule's decision
    /// and outcome, or nil when no rule matches.
    @inline(__always)
    func classify(_ query: DNSQuery, transport: Transport, state: PolicyState) -> (Decision, Outcome)? {
        let policy = state.policy
        guard let decision = policy.decide(name: query.name, type: query.type, client: query.source) else {
            counters.noMatch.increment()
            return nil
        }
        state.ruleHits[index][decision.ruleIndex].hits.increment()
        let outcome = policy.outcome(of: decision)
        if recorder.wants(outcome.action) {
            record(query, transport: transport, decision: decision, policy: policy)
        }
        switch outcome.action {
        case .allow: counters.allow.increment()
        case .alert: counters.alert.increment()
        case .block: counters.block.increment()
        }
        return (decision, outcome)
    }

    /// A segment of DNS over TCP: every query in it is decided; a blocked one
    /// ends the connection with a reset both ways (the query never reaches the
    /// server: its segment is dropped).
    func decideTCP(_ segment: TCPSegment, packet: Span<UInt8>, state: PolicyState) -> Verdict {
        let action = streams.read(segment, packet: packet) { query in
            classify(query, transport: .tcp, state: state)?.1.action != .block
        }
        switch action {
        case .pass:
            return .accept
        case .blocked:
            var sent = true
            do {
                sent = try injector.send { TCPResetBuilder.toClient(segment, into: &$0) } && sent
                sent = try injector.send { TCPResetBuilder.toServer(segment, into: &$0) } && sent
            } catch {
                sent = false
            }
            if sent { counters.tcpReset.increment() } else { counters.injectFailures.increment() }
            return .drop
        case .holdBack:
            counters.tcpHeldBack.increment()
            return .drop
        case .unknownStream, .notDNS:
            counters.notDNS.increment()
            return failVerdict
        }
    }

    @inline(__always)
    func decide(_ query: DNSQuery, packet: Span<UInt8>, state: PolicyState) -> Verdict {
        let policy = state.policy
        guard let (decision, outcome) = classify(query, transport: .udp, state: state) else { return .accept }
        switch outcome.action {
        case .allow, .alert:
            return .accept
        case .block:
            guard let kind = outcome.forgedAnswer else {
                counters.drop.increment()
                return .drop
            }
            let extraText = policy.rules[decision.ruleIndex].extraText
            let sent: Bool
            do {
                sent = try injector.send { output in
                    ForgedAnswerBuilder.build(answering: query, packet: packet, kind: kind,
                                              settings: policy.answerSettings,
                                              extraText: extraText.span,
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

    private func record(_ query: DNSQuery, transport: Transport, decision: Decision, policy: CompiledPolicy) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        recorder.append(DecisionRecord(
            seconds: now.tv_sec, microseconds: now.tv_nsec / 1000, source: query.source, sourcePort: query.sourcePort,
            destination: query.destination, destinationPort: query.destinationPort, name: query.name,
            type: query.type, queryClass: query.queryClass, transport: transport, decision: decision, policy: policy))
    }
}
