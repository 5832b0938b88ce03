// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import DnsgatePolicy
import Foundation
import NetfilterQueue
import Synchronization

/// Settings every worker shares.
struct WorkerSettings: Sendable {
    /// What a UDP/53 packet that cannot be read as a question gets.
    var undecodable: PacketAction
    /// What a response whose answer cannot be read gets.
    var undecodableAnswer: PacketAction
    /// What a packet that finds the queue full gets (the kernel applies it).
    var overload: PacketAction
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
    private let judge: QueryJudge
    /// Set once, before `run`: made after the privilege drop (see `Daemon.init`).
    private var chaser: TargetChaser?
    private let running: RunState

    /// This worker's index in every `PolicyState.ruleHits`.
    let index: Int
    /// An optional queue setting the kernel refused, for the daemon to warn about.
    var queueSettingFailure: SystemError? { queue.optionalSettingFailure }

    init(index: Int, queueNumber: UInt16, policies: PolicyHolder, settings: WorkerSettings, recorder: DecisionRecorder,
         running: RunState) throws {
        self.index = index
        queue = try PacketQueue(number: queueNumber, maximumBacklog: settings.queueLength,
                                failOpen: settings.overload == .pass)
        injector = try PacketInjector(mark: settings.mark)
        counters = WorkerCounters(queue: queueNumber)
        judge = QueryJudge(counters: counters, recorder: recorder, index: index, undecodable: settings.undecodable,
                           undecodableAnswer: settings.undecodableAnswer)
        self.policies = policies
        self.settings = settings
        self.running = running
    }

    /// Decides packets until the daemon stops. The thread is pinned to `cpu`
    /// when given, so each queue's packets stay on one core's caches.
    func run(cpu: Int?, onError: (SystemError) -> Void) {
        if let cpu {
            do {
                try CurrentThread.pin(to: cpu)
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
                try queue.receive { packet, wireLength, hardwareAddress in
                    takeSwappedPolicy()
                    return handle(packet, wireLength: wireLength, mac: hardwareAddress.map(MACAddress.init(value:)),
                                  state: state)
                }
            } catch {
                counters.verdictFailures.increment()
                onError(error)
            }
        }
        // Unbound by this thread, the only one that used it: the rules' fail
        // mode applies from here on.
        queue.release()
    }

    /// OVERRIDE CNAME answers get their target's records through `chaser`.
    func answerCNAMETargets(with chaser: TargetChaser) { self.chaser = chaser }

    @inline(__always)
    func handle(_ packet: Span<UInt8>, wireLength: Int, mac: MACAddress?, state: PolicyState) -> Verdict {
        switch judge.rule(QueryDecoder.decode(packet: packet, wireLength: wireLength), packet: packet,
                          transport: .udp, state: state, mac: mac) {
        case .pass:
            return .accept
        case .drop:
            return .drop
        case .answer(let question, let kind, let rule, let stage):
            let policy = state.policy
            guard let chaser, let key = TargetChaser.key(for: question, kind: kind) else {
                sendAnswer(to: question, kind: kind, rule: rule, stage: stage, packet: packet, policy: policy, chase: nil)
                return .drop
            }
            if let chased = chaser.cached(key) {
                sendAnswer(to: question, kind: kind, rule: rule, stage: stage, packet: packet, policy: policy,
                           chase: chased)
            } else {
                // Rare (once per target, resolver and TTL): the copy is the only allocation.
                chaser.answerLater(packet: (0..<packet.count).map { packet[$0] }, question: question, kind: kind,
                                   key: key, settings: policy.answerSettings, extraText: policy.rules[rule].extraText,
                                   stage: stage)
            }
            return .drop
        }
    }

    /// Forges the answer from the raw socket; counts it or its failure.
    private func sendAnswer(to question: DNSQuery, kind: ForgedAnswerKind, rule: Int, stage: QueryJudge.Stage,
                            packet: Span<UInt8>, policy: CompiledPolicy, chase: ChasedTarget?) {
        let extraText = policy.rules[rule].extraText
        let sent: Bool
        do {
            sent = try injector.send { output in
                ForgedAnswerBuilder.build(answering: question, packet: packet, kind: kind,
                                          settings: policy.answerSettings, extraText: extraText.span, chase: chase,
                                          into: &output)
            }
        } catch {
            sent = false
        }
        if sent { counters.countAnswer(kind, stage: stage) } else { counters.injectFailures.increment() }
    }
}
