// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import DnsgatePolicy
import Foundation
import Synchronization
import ThreatDetection

enum Transport: Sendable { case udp, tcp }

/// One decision, copied by value into its decider's preallocated ring: the
/// packet path never formats, allocates or writes, and holds no reference
/// (the policy is named by its generation, so a record keeps no replaced
/// policy alive and costs no reference counting).
struct DecisionRecord: Sendable {
    var seconds: Int
    var microseconds: Int
    var source: IPAddress
    var sourcePort: UInt16
    var destination: IPAddress
    var destinationPort: UInt16
    var name: DomainName
    var type: QueryType
    var queryClass: QueryClass
    var transport: Transport
    var generation: Int
    /// The deciding rule; `noRule` when none matched.
    var ruleIndex: Int
    var action: RuleAction
    var blockResponse: BlockResponse
    /// What the detector of a threat rule found.
    var threat = ThreatFinding.benign
    /// The query's message (for dnstap), or a response's answer, or neither:
    /// one inline buffer serves both, so a record is no larger for either.
    var detail = Detail.none
    /// The RPZ entry outcome that decided (`Decision.entryOutcome`), or -1 for the rule's own.
    var entryOutcome = -1

    enum Detail: Sendable {
        case none
        /// The query's DNS message, copied only while dnstap is on.
        case query(MessageCopy)
        /// For a decision on a response's answer: the answer, and what matched.
        case answer(LoggedAnswer)
    }

    static let noRule = -1
    var matched: Bool { ruleIndex != Self.noRule }

    var answer: LoggedAnswer? {
        if case .answer(let answer) = detail { return answer }
        return nil
    }
}

/// The first `capacity` bytes of a DNS message, copied inline: a memcpy into
/// the record, never an allocation.
struct MessageCopy: Sendable {
    static let capacity = 512
    var bytes = InlineArray<512, UInt8>(repeating: 0)
    var length = 0
    /// The message's own length: more than `length` when it was cut.
    var fullLength = 0
    var isCut: Bool { fullLength > length }

    init(_ source: Span<UInt8>) {
        length = min(source.count, Self.capacity)
        fullLength = source.count
        for offset in 0..<length { bytes[offset] = source[offset] }
    }

    /// The copied bytes, for code off the packet path.
    var array: [UInt8] { (0..<length).map { bytes[$0] } }
}

/// A response's answer as the query log shows it: the first bytes of its DNS
/// message (the answers past them are left out of the log), its RCODE, and
/// the name or address of it the rule matched.
struct LoggedAnswer: Sendable {
    var response: MessageCopy
    var answersStart = 0
    var responseCode: ResponseCode
    /// The name the answer redirected to that the rule matched; empty when
    /// the rule matched the question or an address.
    var redirection = DomainName()
    var address: IPAddress? = nil

    /// Copies what the log needs of `finding` in `response`.
    init(_ response: DNSQuery, message source: Span<UInt8>, finding: borrowing AnswerFinding) {
        self.response = MessageCopy(source)
        answersStart = response.answersStart
        responseCode = response.responseCode
        switch finding.subject {
        case .question: break
        case .redirection(let name): redirection = name
        case .address(let matched): address = matched
        }
    }
}

/// What the query log says about each rule of one policy generation: a few
/// strings per rule, kept for recent generations instead of the policy.
struct RuleLabels: Sendable {
    var group: [String]
    var rule: [String]
    var list: [String]
    /// A threat rule's threat and confidence threshold.
    var threat: [(threat: Threat, level: ConfidenceLevel)?]
    /// The query-log field naming the rule's list: a domain list, an ip list,
    /// or none for a rebinding rule.
    var listField: [String?]
    /// What dnstap needs to forge a block's answer again, as the decider did:
    /// each rule's outcome and EDE text, the RPZ entries' outcomes, the settings.
    var outcome: [Outcome]
    var extraText: [[UInt8]]
    var entryOutcomes: [Outcome]
    var answerSettings: ForgedAnswerSettings

    init(_ policy: CompiledPolicy) {
        group = policy.rules.map(\.group)
        rule = policy.rules.map(\.name)
        list = policy.rules.map(\.listName)
        threat = policy.rules.map(\.threat)
        outcome = policy.rules.map(\.outcome)
        extraText = policy.rules.map(\.extraText)
        entryOutcomes = policy.entryOutcomes
        answerSettings = policy.answerSettings
        listField = policy.rules.map { rule in
            rule.rebindingExemptions != nil ? nil : rule.addressListIndex >= 0 ? "firewall_ip_list" : "firewall_domain_list"
        }
    }
}

/// Takes BLOCK decisions (for the top-talkers window) and the decisions the
/// query log and dnstap want, and handles them on a thread of its own:
/// Route 53 Resolver–style JSON lines, dnstap frames, and `TopTalkers`.
///
/// Each decider (queue worker, TCP relay) has a ring of its own, so deciders
/// never wait for each other; the log thread takes a ring's records by
/// swapping its buffer for an empty one, so it holds a ring's lock only for
/// that swap, never while formatting, encoding or writing. When a ring is
/// full, records are dropped and counted, never waited for.
final class DecisionRecorder: Sendable {
    /// Labels of this many recent generations are kept for records still in a ring.
    static let keptGenerations = 4

    let capacity: Int
    /// The query log's file ("-" = stdout); nil when there is no log.
    let path: String?
    /// Actions the query log records.
    let logActions: Set<RuleAction>
    /// Whether the query log records queries no rule matched.
    let logsNoMatch: Bool
    /// The dnstap output, when configured; used by the log thread only.
    let dnstap: DnstapOutput?
    /// Actions some output (or the top talkers) wants recorded.
    let recordedActions: Set<RuleAction>
    /// Whether queries no rule matched are recorded (for the log or dnstap).
    let recordsNoMatch: Bool
    let top = TopTalkers()
    /// One decider's records, in an object of its own (a `Mutex` cannot sit in an array).
    private final class Ring: Sendable {
        let records: Mutex<[DecisionRecord]>
        init(capacity: Int) {
            var records: [DecisionRecord] = []
            records.reserveCapacity(capacity)
            self.records = Mutex(records)
        }
    }
    private let rings: [Ring]
    private let labels = Mutex<[Int: RuleLabels]>([:])
    private let reopenRequested = Atomic<Bool>(false)
    /// Records a ring had no room for (lost to the query log and dnstap alike).
    let droppedRecords = Atomic<UInt64>(0)
    let writtenRecords = Atomic<UInt64>(0)
    /// Records the output did not take (full disk, read-only file system, no reader).
    let lostRecords = Atomic<UInt64>(0)
    /// The query log's current error, for the stats socket.
    let lastError = Mutex<String?>(nil)

    /// - Parameter deciders: rings to make, one per decider index.
    init(log: QueryLogConfig?, dnstap: DnstapOutput? = nil, deciders: Int, capacity: Int = 8192) {
        path = log?.path
        logActions = log?.actions ?? []
        logsNoMatch = log?.logsNoMatch ?? false
        self.dnstap = dnstap
        recordedActions = logActions.union(dnstap?.actions ?? []).union([.block])
        recordsNoMatch = logsNoMatch || (dnstap?.sendsNoMatch ?? false)
        self.capacity = capacity
        rings = (0..<deciders).map { _ in Ring(capacity: capacity) }
    }

    /// Called for every policy that goes into force, before any record names it.
    func policyInForce(_ policy: CompiledPolicy) {
        let generationLabels = RuleLabels(policy)
        labels.withLock { kept in
            kept[policy.generation] = generationLabels
            for old in kept.keys where old <= policy.generation - Self.keptGenerations { kept[old] = nil }
        }
    }

    /// Whether the record of a decision carries the query's message: only
    /// when dnstap will send it, so that no other decision pays the copy.
    @inline(__always)
    func copiesQuery(matched: Bool, action: RuleAction) -> Bool {
        dnstap?.wants(matched: matched, action: action) ?? false
    }

    /// Whether a decision with this outcome is recorded at all.
    @inline(__always)
    func wants(_ action: RuleAction) -> Bool { recordedActions.contains(action) }

    /// Called on the packet path by decider `decider` only.
    @inline(__always)
    func append(_ record: DecisionRecord, from decider: Int) {
        let stored = rings[decider].records.withLock { records -> Bool in
            guard records.count < capacity else { return false }
            records.append(record)  // within the reserved capacity: no allocation
            return true
        }
        if !stored { droppedRecords.wrappingAdd(1, ordering: .relaxed) }
    }

    /// Ask the writer to reopen the file (SIGUSR1, after logrotate moved it).
    func requestReopen() { reopenRequested.store(true, ordering: .relaxed) }

    /// The writer loop; returns when `running` turns false and the ring is
    /// drained. `report` hears of each new query-log error (and of recovery).
    func run(while running: @escaping @Sendable () -> Bool, report: (String) -> Void) {
        let writer = path.map(QueryLogWriter.init(path:))
        writer?.open()
        var batch: [DecisionRecord] = []
        batch.reserveCapacity(capacity)
        var output: [UInt8] = []
        var recordEnds: [Int] = []
        var formatter = QueryLogFormatter()
        var reportedError: String?
        var dnstapLabels: (generation: Int, labels: RuleLabels?) = (-1, nil)
        var ringIndex = 0
        var idleRounds = 0
        while true {
            // One ring a round, in turn: its records swap out with the empty batch.
            batch.removeAll(keepingCapacity: true)
            rings[ringIndex].records.withLock { records in swap(&records, &batch) }
            ringIndex = (ringIndex + 1) % rings.count
            if reopenRequested.exchange(false, ordering: .relaxed) { writer?.reopen() }
            if !batch.isEmpty {
                output.removeAll(keepingCapacity: true)
                recordEnds.removeAll(keepingCapacity: true)
                for record in batch {
                    if record.action == .block {
                        top.add(name: record.name, client: record.source, at: record.seconds)
                    }
                    if let dnstap, dnstap.wants(record) {
                        if dnstapLabels.generation != record.generation {
                            dnstapLabels = (record.generation, labels.withLock { $0[record.generation] })
                        }
                        dnstap.send(record, labels: dnstapLabels.labels)
                    }
                    if record.matched ? logActions.contains(record.action) : logsNoMatch {
                        if formatter.generation != record.generation {
                            formatter.use(labels.withLock { $0[record.generation] }, generation: record.generation)
                        }
                        formatter.append(record, to: &output)
                        recordEnds.append(output.count)
                    }
                }
                if let writer, !recordEnds.isEmpty {
                    let written = writer.write(output, recordEnds: recordEnds)
                    writtenRecords.wrappingAdd(UInt64(written), ordering: .relaxed)
                    lostRecords.wrappingAdd(UInt64(recordEnds.count - written), ordering: .relaxed)
                    if writer.lastError != reportedError {
                        reportedError = writer.lastError
                        lastError.withLock { $0 = reportedError }
                        report(reportedError.map { "query log: \($0); records are counted as lost until it works" }
                               ?? "query log: writing again")
                    }
                }
                dnstap?.service()
                idleRounds = 0
            } else if idleRounds < rings.count {
                idleRounds += 1  // every ring looked at once more before sleeping or stopping
            } else if !running() {
                break
            } else {
                idleRounds = 0
                // Connects, handshakes and writes what waits, without waiting itself.
                dnstap?.service()
                usleep(20_000)
            }
        }
        dnstap?.finish()
    }
}
