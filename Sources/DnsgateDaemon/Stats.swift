// SPDX-License-Identifier: GPL-2.0-or-later
import Foundation

/// The `stats` reply (SPEC §4). Keys are snake_case on the wire.
public struct StatsSnapshot: Codable, Sendable {
    public struct Policy: Codable, Sendable {
        public var generation: Int
        public var rules: Int
        public var domains: Int
        public var loadedAt: String
    }
    public struct Packets: Codable, Sendable {
        public var received: UInt64 = 0, accepted: UInt64 = 0, dropped: UInt64 = 0, answered: UInt64 = 0
        /// Packets that found their queue full and were let through undecided
        /// (`on_overload: pass`), or dropped (`on_overload: drop`).
        public var overflowPassed: UInt64 = 0, overflowDropped: UInt64 = 0
    }
    public struct Verdicts: Codable, Sendable {
        public var allow: UInt64 = 0, block: UInt64 = 0, alert: UInt64 = 0, noMatch: UInt64 = 0, notDns: UInt64 = 0
        /// Responses (QR=1) sent to port 53: passed, since no server resolves them.
        public var notQuery: UInt64 = 0
        /// Queries no rule matched that were dropped, not passed: fail_mode
        /// closed while a remote list has no copy yet (also in `noMatch`).
        public var noMatchDropped: UInt64 = 0
    }
    public struct Responses: Codable, Sendable {
        public var nxdomain: UInt64 = 0, nodata: UInt64 = 0, refused: UInt64 = 0, override: UInt64 = 0, drop: UInt64 = 0
    }
    /// The DNS-over-TCP relay (queries it decided also count in `packets`,
    /// `verdicts` and `responses`, one per message).
    public struct TCP: Codable, Sendable {
        public var connections: UInt64 = 0, open: UInt64 = 0, refused: UInt64 = 0, queries: UInt64 = 0
        public var relayed: UInt64 = 0, answersRelayed: UInt64 = 0, upstreamFailures: UInt64 = 0, idleClosed: UInt64 = 0
    }
    /// OVERRIDE CNAME targets asked of clients' resolvers (SPEC §3).
    public struct OverrideTargets: Codable, Sendable {
        public var queries: UInt64 = 0, failures: UInt64 = 0, cacheHits: UInt64 = 0, overflows: UInt64 = 0
    }
    public struct Rule: Codable, Sendable {
        public var group: String
        public var rule: String
        public var action: String
        public var hits: UInt64
    }
    public struct Queue: Codable, Sendable {
        public var queue: UInt16
        public var received: UInt64
        public var waiting: UInt64
        public var kernelDropped: UInt64
        public var userDropped: UInt64
    }
    public struct Errors: Codable, Sendable {
        public var injectFailures: UInt64 = 0
        public var reloadFailures: UInt64 = 0
        public var verdictFailures: UInt64 = 0
        public var queryLogDropped: UInt64 = 0
    }
    public struct List: Codable, Sendable {
        public var name: String
        /// The list file, or for a remote list its cached copy.
        public var file: String
        public var url: String?
        public var format: String
        public var entries: Int
        public var skippedLines: Int
        /// Queries decided by rules that use this list.
        public var hits: UInt64
        /// RFC 3339: when the list was last loaded (file) or fetched or confirmed unchanged (url).
        public var lastSuccess: String?
        public var lastError: String?

        /// Absent values are written as null, so every list has the same keys.
        public func encode(to encoder: Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(name, forKey: .name)
            try container.encode(file, forKey: .file)
            try container.encode(url, forKey: .url)
            try container.encode(format, forKey: .format)
            try container.encode(entries, forKey: .entries)
            try container.encode(skippedLines, forKey: .skippedLines)
            try container.encode(hits, forKey: .hits)
            try container.encode(lastSuccess, forKey: .lastSuccess)
            try container.encode(lastError, forKey: .lastError)
        }
    }

    public var version: String
    public var uptimeSeconds: Int
    public var failMode: String
    public var undecodable: String
    public var onOverload: String
    public var policy: Policy
    public var packets = Packets()
    public var verdicts = Verdicts()
    public var responses = Responses()
    public var tcp = TCP()
    public var overrideTargets = OverrideTargets()
    public var rules: [Rule] = []
    public var lists: [List] = []
    public var queues: [Queue] = []
    public var errors = Errors()

    public static func decode(_ json: String) throws -> StatsSnapshot {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(StatsSnapshot.self, from: Data(json.utf8))
    }

    public func json(pretty: Bool = false) -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys] : [.sortedKeys]
        return (try? String(decoding: encoder.encode(self), as: UTF8.self)) ?? "{}"
    }

    /// Prometheus text exposition format 0.0.4.
    public var prometheus: String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String, _ samples: [(String, UInt64)]) {
            out += "# HELP dnsgate_\(name) \(help)\n# TYPE dnsgate_\(name) \(type)\n"
            for (labels, value) in samples { out += "dnsgate_\(name)\(labels.isEmpty ? "" : "{\(labels)}") \(value)\n" }
        }
        func label(_ name: String, _ value: String) -> String {
            let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "\n", with: "\\n")
            return "\(name)=\"\(escaped)\""
        }
        family("build_info", "gauge", "Version of the running daemon.", [(label("version", version), 1)])
        family("uptime_seconds", "gauge", "Seconds since the daemon started.", [("", UInt64(uptimeSeconds))])
        family("policy_generation", "gauge", "Generation of the policy in force.", [("", UInt64(policy.generation))])
        family("policy_rules", "gauge", "Rules in the policy in force.", [("", UInt64(policy.rules))])
        family("policy_domains", "gauge", "Distinct names in the policy's lists.", [("", UInt64(policy.domains))])
        family("packets_total", "counter", "Queued packets by what happened to them.", [
            (label("outcome", "received"), packets.received), (label("outcome", "accepted"), packets.accepted),
            (label("outcome", "dropped"), packets.dropped), (label("outcome", "answered"), packets.answered),
        ])
        family("overflow_total", "counter", "Packets that found their queue full, by what the kernel did.", [
            (label("outcome", "passed"), packets.overflowPassed), (label("outcome", "dropped"), packets.overflowDropped),
        ])
        family("verdicts_total", "counter", "Decisions by verdict.", [
            (label("verdict", "allow"), verdicts.allow), (label("verdict", "block"), verdicts.block),
            (label("verdict", "alert"), verdicts.alert), (label("verdict", "no_match"), verdicts.noMatch),
            (label("verdict", "not_dns"), verdicts.notDns), (label("verdict", "not_query"), verdicts.notQuery),
        ])
        family("no_match_dropped_total", "counter",
               "Queries no rule matched, dropped while a remote list had no copy yet (fail_mode closed).",
               [("", verdicts.noMatchDropped)])
        family("responses_total", "counter", "Blocked queries by block response.", [
            (label("response", "nxdomain"), responses.nxdomain), (label("response", "nodata"), responses.nodata),
            (label("response", "refused"), responses.refused), (label("response", "override"), responses.override),
            (label("response", "drop"), responses.drop),
        ])
        family("tcp_connections_total", "counter", "DNS-over-TCP connections by what happened to them.", [
            (label("outcome", "accepted"), tcp.connections), (label("outcome", "refused"), tcp.refused),
            (label("outcome", "idle_closed"), tcp.idleClosed), (label("outcome", "upstream_failed"), tcp.upstreamFailures),
        ])
        family("tcp_connections_open", "gauge", "DNS-over-TCP connections open now.", [("", tcp.open)])
        family("tcp_messages_total", "counter", "DNS-over-TCP messages by direction.", [
            (label("kind", "query"), tcp.queries), (label("kind", "relayed"), tcp.relayed),
            (label("kind", "answer_relayed"), tcp.answersRelayed),
        ])
        family("override_target_total", "counter", "OVERRIDE CNAME targets by how they were found.", [
            (label("outcome", "asked"), overrideTargets.queries), (label("outcome", "failed"), overrideTargets.failures),
            (label("outcome", "kept_copy"), overrideTargets.cacheHits),
            (label("outcome", "overflow"), overrideTargets.overflows),
        ])
        family("rule_hits_total", "counter", "Queries each rule decided.",
               rules.map { ("\(label("group", $0.group)),\(label("rule", $0.rule)),\(label("action", $0.action))", $0.hits) })
        family("list_hits_total", "counter", "Queries decided by rules using each list.",
               lists.map { (label("list", $0.name), $0.hits) })
        family("list_entries", "gauge", "Entries loaded per list.", lists.map { (label("list", $0.name), UInt64($0.entries)) })
        family("list_fetch_failing", "gauge", "1 when the last fetch of a remote list failed.",
               lists.filter { $0.url != nil }.map { (label("list", $0.name), $0.lastError == nil ? 0 : 1) })
        family("queue_received_total", "counter", "Packets received per queue.",
               queues.map { (label("queue", String($0.queue)), $0.received) })
        family("queue_kernel_dropped_total", "counter", "Packets the kernel dropped because the queue was full.",
               queues.map { (label("queue", String($0.queue)), $0.kernelDropped) })
        family("queue_user_dropped_total", "counter", "Packets the kernel could not hand to dnsgate.",
               queues.map { (label("queue", String($0.queue)), $0.userDropped) })
        family("errors_total", "counter", "Failures by kind.", [
            (label("kind", "inject"), errors.injectFailures), (label("kind", "reload"), errors.reloadFailures),
            (label("kind", "verdict"), errors.verdictFailures), (label("kind", "query_log_dropped"), errors.queryLogDropped),
        ])
        return out
    }
}

/// The `top` reply: most-blocked names and clients over the sliding window.
public struct TopReport: Codable, Sendable {
    public struct Name: Codable, Sendable {
        public var name: String
        public var blocked: UInt64
    }
    public struct Client: Codable, Sendable {
        public var client: String
        public var blocked: UInt64
    }
    public var windowSeconds: Int
    public var names: [Name]
    public var clients: [Client]

    public static func decode(_ json: String) throws -> TopReport {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(TopReport.self, from: Data(json.utf8))
    }

    var json: String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys]
        return (try? String(decoding: encoder.encode(self), as: UTF8.self)) ?? "{}"
    }
}
