// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import DnsgatePolicy
import DnstapProto
import Foundation

/// Turns a recorded decision into dnstap messages, off the packet path (on
/// the log thread): a CLIENT_QUERY with the query's message for a decision
/// on a question; a CLIENT_RESPONSE with the answer the client got for a
/// block answered with a forged answer, which is forged again here by the
/// same pure builder as the decider used (its output depends only on the
/// query, the rule and the policy's settings), and for a decision on a
/// resolver's answer. The rule goes in the message's `Policy`.
struct DnstapEncoder {
    /// `Dnstap.identity` and `Dnstap.version`.
    let identity: Data
    let version: Data
    /// `Policy.type` of every message.
    static let policyType = "dnsgate"

    init(identity: String, version: String) {
        self.identity = Data(identity.utf8)
        self.version = Data(version.utf8)
    }

    /// The messages for `record`, with its generation's `labels` (nil when
    /// that generation is too old to be kept: the rule goes by number, and
    /// no forged answer is rebuilt).
    func messages(for record: DecisionRecord, labels: RuleLabels?) -> [Dnstap_Dnstap] {
        var base = Dnstap_Message()
        base.socketFamily = record.source.isIPv4 ? .inet : .inet6
        base.socketProtocol = record.transport == .tcp ? .tcp : .udp
        base.queryAddress = Data(record.source.bytes)
        base.queryPort = UInt32(record.sourcePort)
        base.responseAddress = Data(record.destination.bytes)
        base.responsePort = UInt32(record.destinationPort)
        base.queryTimeSec = UInt64(max(record.seconds, 0))
        base.queryTimeNsec = UInt32(record.microseconds * 1000)
        if let policy = Self.policy(for: record, labels: labels) { base.policy = policy }
        let outcome = Self.outcome(of: record, labels: labels)

        switch record.detail {
        case .answer(let answer):
            // Decided on the resolver's answer: over UDP the client gets the
            // forged answer when the rule answers, nothing when it drops, and
            // the resolver's answer when it passes; over TCP a block resets
            // the connection. (The query itself went by unrecorded.)
            var response = base
            response.type = .clientResponse
            response.responseTimeSec = base.queryTimeSec
            response.responseTimeNsec = base.queryTimeNsec
            if record.action == .block {
                if record.transport == .udp, let kind = outcome?.forgedAnswer,
                   let forged = Self.forgedAnswer(toResponse: answer.response, kind: kind, record: record, labels: labels) {
                    response.responseMessage = Data(forged)
                }
            } else if !answer.response.isCut {
                response.responseMessage = Data(answer.response.array)
            }
            return [wrap(response)]
        case .query(let copy):
            var query = base
            query.type = .clientQuery
            let message = copy.isCut ? Self.headerAndQuestion(of: copy) : copy.array
            query.queryMessage = Data(message)
            var messages = [wrap(query)]
            if record.action == .block, let kind = outcome?.forgedAnswer, let labels,
               let forged = Self.forgedAnswer(toQuery: message, kind: kind, record: record, labels: labels) {
                var response = base
                response.type = .clientResponse
                response.queryMessage = Data(message)
                response.responseTimeSec = base.queryTimeSec
                response.responseTimeNsec = base.queryTimeNsec
                response.responseMessage = Data(forged)
                messages.append(wrap(response))
            }
            return messages
        case .none:
            var query = base
            query.type = .clientQuery
            return [wrap(query)]
        }
    }

    private func wrap(_ message: Dnstap_Message) -> Dnstap_Dnstap {
        var frame = Dnstap_Dnstap()
        frame.identity = identity
        frame.version = version
        frame.type = .message
        frame.message = message
        return frame
    }

    /// The outcome that decided `record`: its RPZ entry's or its rule's.
    static func outcome(of record: DecisionRecord, labels: RuleLabels?) -> Outcome? {
        guard record.matched, let labels else { return nil }
        if record.entryOutcome >= 0 {
            return record.entryOutcome < labels.entryOutcomes.count ? labels.entryOutcomes[record.entryOutcome] : nil
        }
        return record.ruleIndex < labels.outcome.count ? labels.outcome[record.ruleIndex] : nil
    }

    /// `Policy`: the rule ("GROUP/RULE"), what it did in dnstap's terms, and
    /// what matched; nil when no rule matched.
    static func policy(for record: DecisionRecord, labels: RuleLabels?) -> Dnstap_Policy? {
        guard record.matched else { return nil }
        var policy = Dnstap_Policy()
        policy.type = policyType
        if let labels, record.ruleIndex < labels.rule.count {
            policy.rule = Data((labels.group[record.ruleIndex] + "/" + labels.rule[record.ruleIndex]).utf8)
        } else {
            policy.rule = Data("#\(record.ruleIndex) of generation \(record.generation)".utf8)
        }
        switch (record.action, record.blockResponse) {
        case (.allow, _), (.alert, _): policy.action = .pass
        case (.block, .nxdomain): policy.action = .nxdomain
        case (.block, .nodata): policy.action = .nodata
        case (.block, .drop): policy.action = .drop
        case (.block, .override): policy.action = .localData
        case (.block, .refused): break  // dnstap has no REFUSED: the forged answer's RCODE says it
        }
        if let answer = record.answer {
            if let address = answer.address {
                policy.match = .responseIp
                policy.value = Data(address.description.utf8)
            } else {
                policy.match = .qname
                let name = answer.redirection.labelCount > 0 ? answer.redirection : record.name
                policy.value = Data((name.text + ".").utf8)
            }
        } else {
            policy.match = .qname
            policy.value = Data((record.name.text + ".").utf8)
        }
        return policy
    }

    /// The forged answer the client got for a blocked query, built again
    /// from the query's message; nil when it cannot be (a message that does
    /// not decode). An OVERRIDE CNAME's chased target records are not in it.
    static func forgedAnswer(toQuery message: [UInt8], kind: ForgedAnswerKind, record: DecisionRecord,
                             labels: RuleLabels) -> [UInt8]? {
        var query = DNSQuery(source: record.source, sourcePort: record.sourcePort, destination: record.destination,
                             destinationPort: record.destinationPort, message: 0..<message.count,
                             packetLength: message.count)
        guard QueryDecoder.decodeMessage(message.span, into: &query) == nil else { return nil }
        // The blocked question (a message with several is answered for its first blocked one).
        var blocked = query
        query.forEachQuestion(in: message.span) { question in
            guard question.name == record.name, question.type == record.type else { return true }
            blocked = question
            return false
        }
        return build(answering: blocked, message: message, kind: kind, record: record, labels: labels)
    }

    /// The forged answer a client got in place of a resolver's blocked answer.
    static func forgedAnswer(toResponse copy: MessageCopy, kind: ForgedAnswerKind, record: DecisionRecord,
                             labels: RuleLabels?) -> [UInt8]? {
        guard let labels, !copy.isCut else { return nil }
        let message = copy.array
        var response = DNSQuery(source: record.destination, sourcePort: record.destinationPort,
                                destination: record.source, destinationPort: record.sourcePort,
                                message: 0..<message.count, packetLength: message.count)
        guard QueryDecoder.decodeMessage(message.span, into: &response) == nil else { return nil }
        return build(answering: response.queryItAnswers, message: message, kind: kind, record: record, labels: labels)
    }

    private static func build(answering query: DNSQuery, message: [UInt8], kind: ForgedAnswerKind,
                              record: DecisionRecord, labels: RuleLabels) -> [UInt8]? {
        guard record.ruleIndex < labels.extraText.count else { return nil }
        let extraText = labels.extraText[record.ruleIndex]
        var output = [UInt8](repeating: 0, count: ForgedAnswerBuilder.outputCapacity(forQueryOf: message.count))
        let end: Int?
        do {
            var span = output.mutableSpan
            end = ForgedAnswerBuilder.buildMessage(
                answering: query, message: message.span, kind: kind, settings: labels.answerSettings,
                extraText: extraText.span, udp: record.transport == .udp,
                into: &span, at: 0)
        }
        guard let end else { return nil }
        output.removeSubrange(end...)
        return output
    }

    /// A query longer than the record's copy, as its header and first
    /// question alone (counts set to match; EDNS left out): what a reader
    /// needs to see what was asked. The question ends within the copy, since
    /// a name is at most 255 bytes.
    static func headerAndQuestion(of copy: MessageCopy) -> [UInt8] {
        var bytes = copy.array
        var offset = 12
        // Bounded: every label moves `offset` forward; a pointer or a cut name ends the walk.
        while offset < bytes.count {
            let length = Int(bytes[offset])
            if length == 0 {
                offset += 1
                break
            }
            guard length < 64 else {
                offset = bytes.count  // a compression pointer cannot be in a first question
                break
            }
            offset += 1 + length
        }
        let questionEnd = offset + 4
        guard bytes.count >= 12, questionEnd <= bytes.count else { return Array(bytes.prefix(12)) }
        bytes.removeSubrange(questionEnd...)
        // QDCOUNT 1, ANCOUNT, NSCOUNT and ARCOUNT 0.
        bytes.replaceSubrange(4..<12, with: [0, 1, 0, 0, 0, 0, 0, 0])
        return bytes
    }
}
