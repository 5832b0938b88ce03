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
    let droppedRecords = Atomic<UInt64>(0)

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

    /// The writer loop; returns when `running` turns false and the ring is drained.
    func run(while running: @escaping @Sendable () -> Bool) {
        var handle = openOutput()
        var batch: [DecisionRecord] = []
        var output: [UInt8] = []
        var formatter = QueryLogFormatter()
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
            if reopenRequested.exchange(false, ordering: .relaxed) {
                if handle !== FileHandle.standardOutput { try? handle?.close() }
                handle = openOutput()
            }
            if !batch.isEmpty {
                output.removeAll(keepingCapacity: true)
                var written: UInt64 = 0
                for record in batch {
                    let outcome = record.policy.outcome(of: record.decision)
                    if outcome.action == .block {
                        top.add(name: record.name, client: record.source, at: record.seconds)
                    }
                    if logActions.contains(outcome.action) {
                        formatter.append(record, outcome: outcome, to: &output)
                        written += 1
                    }
                }
                if written > 0 { handle?.write(Data(output)) }
            } else if !running() {
                break
            } else {
                usleep(20_000)
            }
        }
        if handle !== FileHandle.standardOutput { try? handle?.close() }
    }

    private func openOutput() -> FileHandle? {
        guard let path else { return nil }
        if path == "-" { return FileHandle.standardOutput }
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o640])
        }
        guard let handle = FileHandle(forWritingAtPath: path) else { return nil }
        handle.seekToEndOfFile()
        return handle
    }
}
