// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import DnsgatePolicy
import Foundation
import ThreatDetection

/// Rules on every DNS message, for the UDP workers and the TCP relay alike:
/// what cannot be read, a response, a query on every one of its questions.
/// Counts each verdict and the rule's hit, and records what the query log and
/// the top talkers want. Allocation-free.
struct QueryJudge {
    let counters: WorkerCounters
    let recorder: DecisionRecorder
    /// This decider's index in every `PolicyState.ruleHits`.
    let index: Int
    /// What a message whose question cannot be read gets.
    let undecodable: PacketAction

    /// What becomes of a message.
    enum Ruling {
        /// On to its server.
        case pass
        /// Nowhere, unanswered.
        case drop
        /// Dropped and answered with a forged answer to `question` (the blocked
        /// one), on behalf of rule `rule`.
        case answer(question: DNSQuery, kind: ForgedAnswerKind, rule: Int)
    }

    /// Rules on one message as the decoder left it; `packet` holds the query's
    /// DNS message at its `dnsOffset`. Counts the packet as accepted or dropped.
    @inline(__always)
    func rule(_ decoded: DecodeResult, packet: Span<UInt8>, transport: Transport, state: PolicyState,
              mac: MACAddress?) -> Ruling {
        let ruling = ruleUncounted(decoded, packet: packet, transport: transport, state: state, mac: mac)
        if case .pass = ruling { counters.accepted.increment() } else { counters.dropped.increment() }
        return ruling
    }

    @inline(__always)
    private func ruleUncounted(_ decoded: DecodeResult, packet: Span<UInt8>, transport: Transport,
                               state: PolicyState, mac: MACAddress?) -> Ruling {
        let query: DNSQuery
        switch decoded {
        case .notDNS(let reason):
            guard reason.couldBeAQuery else {
                counters.notQuery.increment()
                // Until every list has a copy in fail_mode closed, nothing passes undecided.
                return state.policy.dropsUnmatched ? .drop : .pass
            }
            counters.notDNS.increment()
            return undecodable == .pass ? .pass : .drop
        case .query(let decodedQuery):
            query = decodedQuery
        }
        let message = packet.extracting(query.dnsOffset..<(query.dnsOffset + query.dnsLength))
        if query.isResponse {
            counters.notQuery.increment()
            let drop = state.policy.dropsUnmatched || blocksResponse(query, message: message, state: state, mac: mac)
            return drop ? .drop : .pass
        }
        let judgement = judge(query, message: message, transport: transport, state: state, mac: mac)
        if case .dropUnmatched = judgement {
            counters.noMatchDropped.increment()
            return .drop
        }
        guard case .block(let question, let decision, let outcome) = judgement else { return .pass }
        guard let kind = outcome.forgedAnswer else {
            counters.drop.increment()
            return .drop
        }
        return .answer(question: question, kind: kind, rule: decision.ruleIndex)
    }

    enum Judgement {
        /// No question is blocked: the query goes on to its server.
        case pass
        /// `question` is blocked: answer it as `outcome` says. For a later
        /// question of a message with several, `question` is that question
        /// (marked compressed, so a forged answer writes its name out).
        case block(question: DNSQuery, decision: Decision, outcome: Outcome)
        /// No rule matched a question, and the policy is not whole (fail_mode
        /// closed while a remote list has no copy yet): nothing passes undecided.
        case dropUnmatched
    }

    /// Decides every question of `query` (decoded from `message`); the first
    /// blocked one decides the whole message, since a server would answer it.
    private func judge(_ query: DNSQuery, message: Span<UInt8>, transport: Transport, state: PolicyState,
                       mac: MACAddress?) -> Judgement {
        var judgement = Judgement.pass
        var unmatched = false
        Self.forEachQuestion(of: query, in: message) { question in
            guard let (decision, outcome) = classify(question, transport: transport, state: state, mac: mac) else {
                unmatched = true
                return true
            }
            guard outcome.action == .block else { return true }
            judgement = .block(question: question, decision: decision, outcome: outcome)
            return false
        }
        if case .pass = judgement, unmatched, state.policy.dropsUnmatched { return .dropUnmatched }
        return judgement
    }

    /// Whether a response (QR=1) sent to port 53 names a blocked question.
    /// Servers do not resolve responses, so one passes (uncounted as a
    /// decision) unless it names a blocked name: then it is dropped, in case
    /// some server reads it anyway.
    private func blocksResponse(_ query: DNSQuery, message: Span<UInt8>, state: PolicyState, mac: MACAddress?) -> Bool {
        var blocked = false
        Self.forEachQuestion(of: query, in: message) { question in
            let policy = state.policy
            // The per-name detectors only: a response is no query for the tunnel table to count.
            let threats = policy.assess(name: question.name, type: question.type, client: question.source, now: 0,
                                        tunnels: nil)
            if let decision = policy.decide(name: question.name, type: question.type, client: question.source, mac: mac,
                                            threats: threats),
               policy.outcome(of: decision).action == .block {
                blocked = true
            }
            return !blocked
        }
        return blocked
    }

    /// Calls `body` with `query` as it stands for each of its questions, in
    /// order, until it returns false. A later question is marked compressed,
    /// so that a forged answer writes its name out.
    private static func forEachQuestion(of query: DNSQuery, in message: Span<UInt8>, _ body: (DNSQuery) -> Bool) {
        guard body(query) else { return }
        var offset = query.questionEnd
        for _ in 1..<max(query.questionCount, 1) {  // the decoder read them all once: each is well formed
            guard case .success(let next) = QueryDecoder.readQuestion(message, at: offset) else { return }
            var question = query
            question.name = next.name
            question.type = next.type
            question.queryClass = next.queryClass
            question.questionCompressed = true
            question.questionEnd = next.end
            guard body(question) else { return }
            offset = next.end
        }
    }

    /// Decides one question: counts it, logs it, and returns the rule's
    /// decision and outcome, or nil when no rule matches.
    @inline(__always)
    private func classify(_ query: DNSQuery, transport: Transport, state: PolicyState,
                          mac: MACAddress?) -> (Decision, Outcome)? {
        let policy = state.policy
        // Without threat rules, not even the clock is read.
        let threats = policy.threatModels == nil ? ThreatAssessment()
            : policy.assess(name: query.name, type: query.type, client: query.source, now: Self.monotonicNanoseconds(),
                            tunnels: state.tunnels)
        guard let decision = policy.decide(name: query.name, type: query.type, client: query.source, mac: mac,
                                           threats: threats) else {
            counters.noMatch.increment()
            if recorder.logsNoMatch {
                record(query, transport: transport, generation: policy.generation, ruleIndex: DecisionRecord.noRule,
                       outcome: Outcome(action: .allow, blockResponse: .nxdomain))
            }
            return nil
        }
        state.ruleHits[index][decision.ruleIndex].hits.increment()
        let outcome = policy.outcome(of: decision)
        if recorder.wants(outcome.action) {
            let finding = policy.rules[decision.ruleIndex].threat.map { threats[$0.threat] } ?? .benign
            record(query, transport: transport, generation: policy.generation, ruleIndex: decision.ruleIndex,
                   outcome: outcome, threat: finding)
        }
        switch outcome.action {
        case .allow: counters.allow.increment()
        case .alert: counters.alert.increment()
        case .block: counters.block.increment()
        }
        return (decision, outcome)
    }
}

extension QueryJudge {
    /// Hands one decision to the recorder (for the query log and top talkers).
    @inline(__always)
    private func record(_ query: DNSQuery, transport: Transport, generation: Int, ruleIndex: Int, outcome: Outcome,
                        threat: ThreatFinding = .benign) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        recorder.append(DecisionRecord(
            seconds: now.tv_sec, microseconds: now.tv_nsec / 1000, source: query.source,
            sourcePort: query.sourcePort, destination: query.destination,
            destinationPort: query.destinationPort, name: query.name, type: query.type,
            queryClass: query.queryClass, transport: transport, generation: generation,
            ruleIndex: ruleIndex, action: outcome.action, blockResponse: outcome.blockResponse, threat: threat),
            from: index)
    }

    /// For the tunnelling detector's windows: a coarse clock is read without
    /// a system call and its few milliseconds of grain are plenty.
    @inline(__always)
    static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
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
