// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import DnsgatePolicy
import Foundation

/// Decides a decoded query on every one of its questions, for the UDP workers
/// and the TCP relay alike: counts each verdict, counts the rule's hit and
/// records what the query log and the top talkers want. Allocation-free.
struct QueryJudge {
    let counters: WorkerCounters
    let recorder: DecisionRecorder
    /// This decider's index in every `PolicyState.ruleHits`.
    let index: Int

    enum Judgement {
        /// No question is blocked: the query goes on to its server.
        case pass
        /// `question` is blocked: answer it as `outcome` says. For a later
        /// question of a message with several, `question` is that question
        /// (marked compressed, so a forged answer writes its name out).
        case block(question: DNSQuery, decision: Decision, outcome: Outcome)
    }

    /// Decides every question of `query` (decoded from `message`); the first
    /// blocked one decides the whole message, since a server would answer it.
    func judge(_ query: DNSQuery, message: Span<UInt8>, transport: Transport, state: PolicyState,
               mac: MACAddress?) -> Judgement {
        if let (decision, outcome) = classify(query, transport: transport, state: state, mac: mac),
           outcome.action == .block {
            return .block(question: query, decision: decision, outcome: outcome)
        }
        var offset = query.questionEnd
        for _ in 1..<max(query.questionCount, 1) {  // the decoder read them all once: each is well formed
            guard case .success(let next) = QueryDecoder.readQuestion(message, at: offset) else { break }
            var question = query
            question.name = next.name
            question.type = next.type
            question.queryClass = next.queryClass
            question.questionCompressed = true
            question.questionEnd = next.end
            if let (decision, outcome) = classify(question, transport: transport, state: state, mac: mac),
               outcome.action == .block {
                return .block(question: question, decision: decision, outcome: outcome)
            }
            offset = next.end
        }
        return .pass
    }

    /// Decides one question: counts it, logs it, and returns the rule's
    /// decision and outcome, or nil when no rule matches.
    @inline(__always)
    private func classify(_ query: DNSQuery, transport: Transport, state: PolicyState,
                          mac: MACAddress?) -> (Decision, Outcome)? {
        let policy = state.policy
        guard let decision = policy.decide(name: query.name, type: query.type, client: query.source, mac: mac) else {
            counters.noMatch.increment()
            return nil
        }
        state.ruleHits[index][decision.ruleIndex].hits.increment()
        let outcome = policy.outcome(of: decision)
        if recorder.wants(outcome.action) {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            recorder.append(DecisionRecord(
                seconds: now.tv_sec, microseconds: now.tv_nsec / 1000, source: query.source,
                sourcePort: query.sourcePort, destination: query.destination,
                destinationPort: query.destinationPort, name: query.name, type: query.type,
                queryClass: query.queryClass, transport: transport, decision: decision, policy: policy))
        }
        switch outcome.action {
        case .allow: counters.allow.increment()
        case .alert: counters.alert.increment()
        case .block: counters.block.increment()
        }
        return (decision, outcome)
    }
}

extension WorkerCounters {
    /// Counts a forged answer that was sent.
    func countAnswer(_ kind: ForgedAnswerKind) {
        answered.increment()
        switch kind {
        case .nxdomain: nxdomain.increment()
        case .nodata: nodata.increment()
        case .refused: refused.increment()
        case .override: override.increment()
        }
    }
}
