// SPDX-License-Identifier: GPL-2.0-or-later
import Synchronization

/// One worker's counters. Each worker owns its own object, so counters are
/// written by one thread only and never share a cache line with another
/// worker's; readers (the stats socket) sum across workers.
final class WorkerCounters: Sendable {
    /// A cache line of nothing on each side, so that two workers' counters,
    /// allocated next to each other, never share a line.
    private let leadingPad: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
    let queue: UInt16
    let received = Atomic<UInt64>(0)
    let accepted = Atomic<UInt64>(0)
    let dropped = Atomic<UInt64>(0)
    let answered = Atomic<UInt64>(0)
    let allow = Atomic<UInt64>(0)
    let block = Atomic<UInt64>(0)
    let alert = Atomic<UInt64>(0)
    let noMatch = Atomic<UInt64>(0)
    /// Queries no rule matched, dropped because a remote list has no copy yet
    /// in fail_mode closed (also counted in `noMatch`).
    let noMatchDropped = Atomic<UInt64>(0)
    let notDNS = Atomic<UInt64>(0)
    /// Responses (QR=1) sent to port 53: passed, since no server resolves them.
    let notQuery = Atomic<UInt64>(0)
    let nxdomain = Atomic<UInt64>(0)
    let nodata = Atomic<UInt64>(0)
    let refused = Atomic<UInt64>(0)
    let override = Atomic<UInt64>(0)
    let drop = Atomic<UInt64>(0)
    let injectFailures = Atomic<UInt64>(0)
    let verdictFailures = Atomic<UInt64>(0)
    /// The answer stage: responses from port 53, decided on what they answer.
    let answers = AnswerCounters()
    private let trailingPad: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)

    init(queue: UInt16) { self.queue = queue }
}

/// The answer stage's counters, one object per decider like `WorkerCounters`.
final class AnswerCounters: Sendable {
    let received = Atomic<UInt64>(0)
    let accepted = Atomic<UInt64>(0)
    let dropped = Atomic<UInt64>(0)
    /// Blocked responses replaced by a forged answer to their question (UDP).
    let answered = Atomic<UInt64>(0)
    /// Blocked responses whose client connection was reset (TCP).
    let reset = Atomic<UInt64>(0)
    /// One verdict per response: the question's ALLOW trusted the answer,
    /// the first BLOCK, else ALERT when a rule alerted, else ALLOW when a
    /// rule allowed, else no match; `notDNS` for an unreadable answer section.
    let trusted = Atomic<UInt64>(0)
    let allow = Atomic<UInt64>(0)
    let block = Atomic<UInt64>(0)
    let alert = Atomic<UInt64>(0)
    let noMatch = Atomic<UInt64>(0)
    let notDNS = Atomic<UInt64>(0)
}

final class RuleHitCounter: Sendable {
    /// Questions the rule decided.
    let hits = Atomic<UInt64>(0)
    /// Names and addresses of answers the rule matched.
    let answerHits = Atomic<UInt64>(0)
}

extension Atomic where Value == UInt64 {
    /// Single-writer increment: a plain load and store, no locked instruction.
    @inline(__always)
    func increment() {
        store(load(ordering: .relaxed) &+ 1, ordering: .relaxed)
    }
    var value: UInt64 { load(ordering: .relaxed) }
}

extension StatsSnapshot {
    /// Adds one decider's counters (a queue worker's or the TCP relay's).
    mutating func add(_ c: WorkerCounters) {
        packets.received += c.received.value
        packets.accepted += c.accepted.value
        packets.dropped += c.dropped.value
        packets.answered += c.answered.value
        verdicts.allow += c.allow.value
        verdicts.block += c.block.value
        verdicts.alert += c.alert.value
        verdicts.noMatch += c.noMatch.value
        verdicts.noMatchDropped += c.noMatchDropped.value
        verdicts.notDns += c.notDNS.value
        verdicts.notQuery += c.notQuery.value
        responses.nxdomain += c.nxdomain.value
        responses.nodata += c.nodata.value
        responses.refused += c.refused.value
        responses.override += c.override.value
        responses.drop += c.drop.value
        errors.injectFailures += c.injectFailures.value
        errors.verdictFailures += c.verdictFailures.value
        let a = c.answers
        answers.packets.received += a.received.value
        answers.packets.accepted += a.accepted.value
        answers.packets.dropped += a.dropped.value
        answers.packets.answered += a.answered.value
        answers.packets.reset += a.reset.value
        answers.verdicts.trusted += a.trusted.value
        answers.verdicts.allow += a.allow.value
        answers.verdicts.block += a.block.value
        answers.verdicts.alert += a.alert.value
        answers.verdicts.noMatch += a.noMatch.value
        answers.verdicts.notDns += a.notDNS.value
    }
}
