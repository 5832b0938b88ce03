// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import DnsgatePolicy
import Foundation
import NetfilterQueue
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
    /// What a response whose answer cannot be read gets: as `fail_mode` says
    /// (a resolver's client parses it, not a server).
    var undecodableAnswer = PacketAction.drop
    /// Clients' hardware addresses, for responses when groups name MACs.
    let neighbours = NeighbourCache()

    /// What becomes of a message.
    enum Ruling {
        /// On to its server (or, a response, to its client).
        case pass
        /// Nowhere, unanswered.
        case drop
        /// Dropped and answered with a forged answer to `question` (the blocked
        /// one), on behalf of rule `rule`. For a response blocked on its
        /// answer (`stage` `.answer`), `question` is the query it answers.
        case answer(question: DNSQuery, kind: ForgedAnswerKind, rule: Int, stage: Stage)
    }

    /// Which stage a decision was made in: on a query's question, or on a
    /// resolver's answer.
    enum Stage { case question, answer }

    /// Rules on one message as the decoder left it; `packet` holds the DNS
    /// message at its `dnsOffset`. Counts the packet as received, and as
    /// accepted or dropped, in its stage: a response from port 53 to a
    /// client is decided on its answer (`ruleResponse`), anything else on
    /// its question.
    @inline(__always)
    func rule(_ decoded: DecodeResult, packet: Span<UInt8>, transport: Transport, state: PolicyState,
              mac: MACAddress?) -> Ruling {
        switch decoded {
        case .query(let response) where response.isAnswerToClient:
            return ruleResponse(decoded, packet: packet, transport: transport, state: state,
                                mac: state.policy.namesMACAddresses ? neighbours.hardwareAddress(of: response.destination) : nil)
        case .unreadableAnswer:
            counters.answers.received.increment()
            return undecodableResponse()
        default:
            break
        }
        counters.received.increment()
        let ruling = ruleUncounted(decoded, packet: packet, transport: transport, state: state, mac: mac)
        if case .pass = ruling { counters.accepted.increment() } else { counters.dropped.increment() }
        return ruling
    }

    /// Rules on a response (QR=1) from a resolver on what it answers: the
    /// names its answer redirects to and the addresses it carries (see
    /// `CompiledPolicy.inspect`). Blocked, it is dropped, and its client gets
    /// the blocking rule's answer to its question instead. Counted in the
    /// answer stage; one that cannot be read is `not_dns` (in both stages'
    /// counters) and goes as `undecodableAnswer` says, but for one without a
    /// question and an answer (a FORMERR, say), which passes.
    func ruleResponse(_ decoded: DecodeResult, packet: Span<UInt8>, transport: Transport, state: PolicyState,
                      mac: MACAddress?) -> Ruling {
        let counts = counters.answers
        counts.received.increment()
        let response: DNSQuery
        switch decoded {
        case .query(let decodedResponse):
            response = decodedResponse
        case .notDNS, .unreadableAnswer:
            return undecodableResponse()
        }
        let policy = state.policy
        let message = packet.extracting(response.dnsOffset..<(response.dnsOffset + response.dnsLength))
        var alerted = false
        let verdict = policy.inspect(response: response, message: message, client: response.destination, mac: mac) { finding in
            state.ruleHits[index][finding.decision.ruleIndex].answerHits.increment()
            if finding.outcome.action == .alert { alerted = true }
            if recorder.wants(finding.outcome.action) {
                recordAnswer(response, message: message, finding: finding, transport: transport,
                             generation: policy.generation)
            }
        }
        let ruling: Ruling
        switch verdict {
        case .trusted:
            counts.trusted.increment()
            ruling = .pass
        case .passed(let matched):
            if alerted {
                counts.alert.increment()
            } else if matched {
                counts.allow.increment()
            } else {
                counts.noMatch.increment()
            }
            ruling = .pass
        case .malformed:
            return undecodableResponse()
        case .blocked(let finding):
            counts.block.increment()
            // Without a question (a stub may read the answers all the same)
            // there is nothing to answer: dropped.
            if let kind = finding.outcome.forgedAnswer, response.questionCount > 0 {
                ruling = .answer(question: response.queryItAnswers, kind: kind, rule: finding.decision.ruleIndex,
                                 stage: .answer)
            } else {
                ruling = .drop
            }
        }
        if case .pass = ruling { counts.accepted.increment() } else { counts.dropped.increment() }
        return ruling
    }

    /// A response that cannot be read: `not_dns` in both stages.
    private func undecodableResponse() -> Ruling {
        let counts = counters.answers
        counts.notDNS.increment()
        counters.received.increment()
        counters.notDNS.increment()
        let ruling: Ruling = undecodableAnswer == .pass ? .pass : .drop
        if case .pass = ruling {
            counters.accepted.increment()
            counts.accepted.increment()
        } else {
            counters.dropped.increment()
            counts.dropped.increment()
        }
        return ruling
    }


    @inline(__always)
    private func ruleUncounted(_ decoded: DecodeResult, packet: Span<UInt8>, transport: Transport,
                               state: PolicyState, mac: MACAddress?) -> Ruling {
        let query: DNSQuery
        switch decoded {
        case .notDNS, .unreadableAnswer:
            counters.notDNS.increment()
            return undecodable == .pass ? .pass : .drop
        case .query(let decodedQuery):
            query = decodedQuery
        }
        let message = packet.extracting(query.dnsOffset..<(query.dnsOffset + query.dnsLength))
        if query.isResponse {
            // A response sent to a server resolves nothing; it is dropped if
            // it names a blocked name, in case some server reads it anyway.
            // Until every list has a copy in fail_mode closed, nothing passes undecided.
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
        return .answer(question: question, kind: kind, rule: decision.ruleIndex, stage: .question)
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
        query.forEachQuestion(in: message) { question in
            guard let (decision, outcome) = classify(question, message: message, transport: transport, state: state,
                                                     mac: mac) else {
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
        query.forEachQuestion(in: message) { question in
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

    /// Decides one question: counts it, logs it, and returns the rule's
    /// decision and outcome, or nil when no rule matches.
    @inline(__always)
    private func classify(_ query: DNSQuery, message: Span<UInt8>, transport: Transport, state: PolicyState,
                          mac: MACAddress?) -> (Decision, Outcome)? {
        let policy = state.policy
        // Without threat rules, not even the clock is read.
        let threats = policy.threatModels == nil ? ThreatAssessment()
            : policy.assess(name: query.name, type: query.type, client: query.source, now: Self.monotonicNanoseconds(),
                            tunnels: state.tunnels)
        guard let decision = policy.decide(name: query.name, type: query.type, client: query.source, mac: mac,
                                           threats: threats) else {
            counters.noMatch.increment()
            if recorder.recordsNoMatch {
                record(query, message: message, transport: transport, generation: policy.generation,
                       ruleIndex: DecisionRecord.noRule,
                       outcome: Outcome(action: .allow, blockResponse: .nxdomain))
            }
            return nil
        }
        state.ruleHits[index][decision.ruleIndex].hits.increment()
        let outcome = policy.outcome(of: decision)
        if recorder.wants(outcome.action) {
            let finding = policy.rules[decision.ruleIndex].threat.map { threats[$0.threat] } ?? .benign
            record(query, message: message, transport: transport, generation: policy.generation,
                   ruleIndex: decision.ruleIndex, entryOutcome: decision.entryOutcome, outcome: outcome, threat: finding)
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
    /// Hands one decision to the recorder (for the query log, dnstap and top
    /// talkers). When dnstap sends this decision, the record carries the query's
    /// message too (a copy of at most `MessageCopy.capacity` bytes into the
    /// record, no allocation); no other decision pays for the copy.
    @inline(__always)
    private func record(_ query: DNSQuery, message: Span<UInt8>, transport: Transport, generation: Int,
                        ruleIndex: Int, entryOutcome: Int = -1, outcome: Outcome, threat: ThreatFinding = .benign) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        recorder.append(DecisionRecord(
            seconds: now.tv_sec, microseconds: now.tv_nsec / 1000, source: query.source,
            sourcePort: query.sourcePort, destination: query.destination,
            destinationPort: query.destinationPort, name: query.name, type: query.type,
            queryClass: query.queryClass, transport: transport, generation: generation,
            ruleIndex: ruleIndex, action: outcome.action, blockResponse: outcome.blockResponse, threat: threat,
            detail: recorder.copiesQuery(matched: ruleIndex != DecisionRecord.noRule, action: outcome.action)
                ? .query(MessageCopy(message)) : .none,
            entryOutcome: entryOutcome),
            from: index)
    }

    /// Hands one decision on a response's answer to the recorder.
    private func recordAnswer(_ response: DNSQuery, message: Span<UInt8>, finding: borrowing AnswerFinding,
                              transport: Transport, generation: Int) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        // Addressed as the query was: from the client to its resolver.
        recorder.append(DecisionRecord(
            seconds: now.tv_sec, microseconds: now.tv_nsec / 1000, source: response.destination,
            sourcePort: response.destinationPort, destination: response.source, destinationPort: response.sourcePort,
            name: response.name, type: response.type, queryClass: response.queryClass, transport: transport,
            generation: generation, ruleIndex: finding.decision.ruleIndex, action: finding.outcome.action,
            blockResponse: finding.outcome.blockResponse, threat: finding.threat,
            detail: .answer(LoggedAnswer(response, message: message, finding: finding)),
            entryOutcome: finding.decision.entryOutcome),
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

/// The hardware addresses of clients the gateway has seen, for responses
/// when groups name MAC addresses: a response carries its resolver's (or
/// router's) hardware address, not its client's. A lookup in the kernel's
/// neighbour table is a netlink dump, so its result is kept a while. One per
/// decider, used by its thread alone; bounded.
final class NeighbourCache: @unchecked Sendable {
    // @unchecked: touched only by the thread of the decider that owns it.
    private var known: [IPAddress: (mac: MACAddress?, until: UInt64)] = [:]
    static let capacity = 4096
    static let lifetime: UInt64 = 30_000_000_000
    /// An unknown address is asked again sooner: its entry may be on its way.
    static let unknownLifetime: UInt64 = 2_000_000_000

    func hardwareAddress(of client: IPAddress) -> MACAddress? {
        let now = QueryJudge.monotonicNanoseconds()
        if let entry = known[client], entry.until > now { return entry.mac }
        let mac = NeighbourTable.hardwareAddress(of: client.bytes).map(MACAddress.init(value:))
        if known.count >= Self.capacity { known.removeAll(keepingCapacity: true) }
        known[client] = (mac, now &+ (mac == nil ? Self.unknownLifetime : Self.lifetime))
        return mac
    }
}

extension WorkerCounters {
    /// Counts a forged answer that was sent.
    func countAnswer(_ kind: ForgedAnswerKind, stage: QueryJudge.Stage) {
        guard stage == .question else {
            answers.answered.increment()
            return
        }
        answered.increment()
        switch kind {
        case .nxdomain: nxdomain.increment()
        case .nodata: nodata.increment()
        case .refused: refused.increment()
        case .override: override.increment()
        }
    }
}
