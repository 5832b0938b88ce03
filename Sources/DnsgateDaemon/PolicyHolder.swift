// SPDX-License-Identifier: GPL-2.0-or-later
import DnsgatePolicy
import Foundation
import Synchronization
import ThreatDetection

/// A compiled policy with its per-rule hit counters, one array per worker so
/// that no two workers write the same counter.
final class PolicyState: Sendable {
    let policy: CompiledPolicy
    let loadedAt = Date()
    /// `ruleHits[worker][rule]`.
    let ruleHits: [[RuleHitCounter]]
    /// What the tunnelling detector has seen, when some rule looks for tunnels.
    let tunnels: TunnelTracker?
    /// The table size asked for (`threat_detection.tunnel_pairs`).
    let tunnelPairs: Int

    /// `previous` is the state this one replaces: what its tunnelling
    /// detector has seen carries over a reload that keeps a tunnel rule and
    /// the table's size (a new size starts an empty table).
    init(policy: CompiledPolicy, workers: Int, tunnelPairs: Int = ThreatDetectionConfig().tunnelPairs,
         previous: PolicyState? = nil) {
        self.policy = policy
        self.tunnelPairs = tunnelPairs
        ruleHits = (0..<workers).map { _ in policy.rules.map { _ in RuleHitCounter() } }
        if policy.threatsInUse.contains(.tunneling) {
            if let previous, previous.tunnelPairs == tunnelPairs, let kept = previous.tunnels {
                tunnels = kept
            } else {
                tunnels = TunnelTracker(capacity: tunnelPairs)
            }
        } else {
            tunnels = nil
        }
    }

    func hits(ofRule index: Int) -> RuleHits {
        ruleHits.reduce(RuleHits()) { $0 + RuleHits($1[index]) }
    }
}

/// A rule's hits in both stages.
struct RuleHits: Sendable {
    var questions: UInt64 = 0
    var answers: UInt64 = 0

    init() {}
    init(_ counter: RuleHitCounter) {
        questions = counter.hits.value
        answers = counter.answerHits.value
    }

    static func + (lhs: RuleHits, rhs: RuleHits) -> RuleHits {
        var sum = lhs
        sum.questions &+= rhs.questions
        sum.answers &+= rhs.answers
        return sum
    }
}

/// The policy in force. Workers check for a swap before every packet and at
/// every receive timeout; a reload swaps in a new policy atomically, and the
/// old one is freed as soon as no worker holds it (within one receive timeout).
/// Rule hits of replaced policies are kept by rule name.
final class PolicyHolder: Sendable {
    /// The hit counters of a replaced policy, without the policy itself.
    private struct Retired {
        var keys: [String]
        var ruleHits: [[RuleHitCounter]]
    }

    private struct Guarded {
        var current: PolicyState
        /// Counters of the policy replaced last: a worker may still be counting a packet on them.
        var previous: Retired?
        /// Hits of older generations, by "group/rule".
        var retiredHits: [String: RuleHits] = [:]
    }
    private let guarded: Mutex<Guarded>
    /// Bumped after every swap: workers compare it per packet (a plain load of
    /// a line no one writes in between) and take the lock only when it moved.
    private let swaps = Atomic<Int>(0)

    init(_ state: PolicyState) { guarded = Mutex(Guarded(current: state)) }

    var state: PolicyState { guarded.withLock { $0.current } }

    /// The number of swaps so far, with acquire ordering: a worker that sees a
    /// new count and then reads `state` gets the new policy.
    var swapCount: Int { swaps.load(ordering: .acquiring) }

    func replace(with state: PolicyState) {
        guarded.withLock { guarded in
            if let previous = guarded.previous { Self.fold(previous, into: &guarded.retiredHits) }
            let old = guarded.current
            guarded.previous = Retired(keys: old.policy.rules.map(Self.key), ruleHits: old.ruleHits)
            guarded.current = state
        }
        swaps.wrappingAdd(1, ordering: .releasing)
    }

    /// Hits per rule of the current policy, including those its namesakes in
    /// earlier generations counted.
    /// The lock is held only to copy what it guards (the counters themselves
    /// are atomics): the TCP relay takes it for every message, and a scraper
    /// must not keep it waiting while the totals are summed.
    func ruleHits() -> (PolicyState, [RuleHits]) {
        var (totals, previous, current) = guarded.withLock { ($0.retiredHits, $0.previous, $0.current) }
        if let previous { Self.fold(previous, into: &totals) }
        let hits = current.policy.rules.indices.map { index in
            current.hits(ofRule: index) + (totals[Self.key(current.policy.rules[index])] ?? RuleHits())
        }
        return (current, hits)
    }

    private static func key(_ rule: CompiledRule) -> String { rule.group + "/" + rule.name }

    private static func fold(_ retired: Retired, into totals: inout [String: RuleHits]) {
        for (index, key) in retired.keys.enumerated() {
            totals[key] = (totals[key] ?? RuleHits()) + retired.ruleHits.reduce(RuleHits()) { $0 + RuleHits($1[index]) }
        }
    }
}
