// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import DnsgatePolicy
import Foundation
import Synchronization

/// One decision, copied by value into a preallocated ring: the packet path
/// never formats, allocates or writes.
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
    let writtenRecords = Atomic<UInt64>(0)

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
                var text = ""
                var written: UInt64 = 0
                for record in batch {
                    let outcome = record.policy.outcome(of: record.decision)
                    if outcome.action == .block {
                        top.add(name: record.name.lowercasedText, client: record.source.description, at: record.seconds)
                    }
                    if logActions.contains(outcome.action) {
                        text += Self.format(record) + "\n"
                        written += 1
                    }
                }
                if written > 0 { handle?.write(Data(text.utf8)) }
                writtenRecords.wrappingAdd(written, ordering: .relaxed)
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

    static func format(_ record: DecisionRecord) -> String {
        let rule = record.policy.rules[record.decision.ruleIndex]
        let outcome = record.policy.outcome(of: record.decision)
        var fields: [(String, String)] = [
            ("query_timestamp", timestamp(seconds: record.seconds, microseconds: record.microseconds)),
            ("srcaddr", record.source.description),
            ("srcport", String(record.sourcePort)),
            ("dstaddr", record.destination.description),
            ("dstport", String(record.destinationPort)),
            ("transport", "UDP"),
            ("query_name", record.name.text + "."),
            ("query_type", record.type.description),
            ("query_class", record.queryClass.description),
            ("firewall_rule_group", rule.group),
            ("firewall_rule", rule.name),
            ("firewall_domain_list", rule.listName),
            ("firewall_rule_action", outcome.action.rawValue),
        ]
        if outcome.action == .block { fields.append(("block_response", outcome.blockResponse.rawValue)) }
        return "{" + fields.map { "\(jsonString($0.0)):\(jsonString($0.1))" }.joined(separator: ",") + "}"
    }

    /// RFC 3339 in UTC with microseconds.
    static func timestamp(seconds: Int, microseconds: Int) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                      Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), microseconds)
    }

    static func jsonString(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20: result += String(format: "\\u%04x", scalar.value)
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }
}
