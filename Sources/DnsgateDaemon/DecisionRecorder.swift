// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import DnsgatePolicy
import Foundation
import Synchronization

/// One decision, copied by value into a preallocated ring: the packet path
/// never formats, allocates or writes.
enum Transport: Sendable { case udp, tcp }

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
    var decision: Decision
    var policy: CompiledPolicy
}

/// Takes BLOCK decisions (for the top-talkers window) and the decisions the
/// query log wants, and handles them on a thread of its own: Route 53
/// Resolver–style JSON lines, and `TopTalkers`. When the ring is full, records
/// are dropped and counted, never waited for.
final class DecisionRecorder: Sendable {
    private struct Ring {
        var records: [DecisionRecord?]
        var head = 0
        var count = 0
    }

    let capacity: Int
    /// The query log's file ("-" = stdout); nil when there is no log.
    let path: String?
    /// Actions the query log records.
    let logActions: Set<RuleAction>
    let top = TopTalkers()
    private let ring: Mutex<Ring>
    private let reopenRequested = Atomic<Bool>(false)
    /// Records the ring had no room for.
    let droppedRecords = Atomic<UInt64>(0)
    let writtenRecords = Atomic<UInt64>(0)
    /// Records the output did not take (full disk, read-only file system, no reader).
    let lostRecords = Atomic<UInt64>(0)
    /// The query log's current error, for the stats socket.
    let lastError = Mutex<String?>(nil)

    init(log: QueryLogConfig?, capacity: Int = 8192) {
        path = log?.path
        logActions = log?.actions ?? []
        self.capacity = capacity
        ring = Mutex(Ring(records: Array(repeating: nil, count: capacity)))
    }

    /// Whether a decision with this outcome is recorded at all.
    @inline(__always)
    func wants(_ action: RuleAction) -> Bool { action == .block || logActions.contains(action) }

    /// Called on the packet path.
    func append(_ record: DecisionRecord) {
        let stored = ring.withLock { ring -> Bool in
            guard ring.count < capacity else { return false }
            ring.records[(ring.head + ring.count) % capacity] = record
            ring.count += 1
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
        var batch: [DecisionRecord] = []
        var output: [UInt8] = []
        var recordEnds: [Int] = []
        var formatter = QueryLogFormatter()
        var reportedError: String?
        while true {
            batch.removeAll(keepingCapacity: true)
            ring.withLock { ring in
                while ring.count > 0, batch.count < 1024 {
                    if let record = ring.records[ring.head] { batch.append(record) }
                    ring.records[ring.head] = nil
                    ring.head = (ring.head + 1) % capacity
                    ring.count -= 1
                }
            }
            if reopenRequested.exchange(false, ordering: .relaxed) { writer?.reopen() }
            if !batch.isEmpty {
                output.removeAll(keepingCapacity: true)
                recordEnds.removeAll(keepingCapacity: true)
                for record in batch {
                    let outcome = record.policy.outcome(of: record.decision)
                    if outcome.action == .block {
                        top.add(name: record.name, client: record.source, at: record.seconds)
                    }
                    if logActions.contains(outcome.action) {
                        formatter.append(record, outcome: outcome, to: &output)
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
            } else if !running() {
                break
            } else {
                usleep(20_000)
            }
        }
    }
}
