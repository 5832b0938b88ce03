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
    /// The tunnelling detector's table (all zero while no rule looks for tunnels).
    public struct Threats: Codable, Sendable {
        /// (client, registrable domain) pairs followed now, and the table's size.
        public var tunnelPairs: UInt64 = 0, tunnelCapacity: UInt64 = 0
        /// Pairs pushed out to make room for others.
        public var tunnelEvictions: UInt64 = 0
    }
    /// The answer stage: responses from resolvers, decided on the names their
    /// answers redirect to and the addresses they carry. Apart from
    /// `packets`, `verdicts` and `responses`, which count questions (a
    /// malformed response counts in `verdicts.not_dns` there too).
    public struct Answers: Codable, Sendable {
        public struct Packets: Codable, Sendable {
            public var received: UInt64 = 0, accepted: UInt64 = 0, dropped: UInt64 = 0, answered: UInt64 = 0
            public var reset: UInt64 = 0
            /// Answers that found their queue full and passed undecided (`on_overload: pass`).
            public var overflowPassed: UInt64 = 0
        }
        public struct Verdicts: Codable, Sendable {
            public var trusted: UInt64 = 0, allow: UInt64 = 0, block: UInt64 = 0, alert: UInt64 = 0
            public var noMatch: UInt64 = 0, notDns: UInt64 = 0
        }
        public var packets = Packets()
        public var verdicts = Verdicts()
    }
    public struct Rule: Codable, Sendable {
        public var group: String
        public var rule: String
        public var action: String
        /// Questions the rule decided.
        public var hits: UInt64
        /// Names and addresses of answers the rule matched.
        public var answerHits: UInt64 = 0
    }
    public struct Queue: Codable, Sendable {
        public var queue: UInt16
        /// Queries (and anything unreadable) the queue handed to dnsgate.
        public var received: UInt64
        /// Responses the queue handed to dnsgate (the answer stage).
        public var answersReceived: UInt64 = 0
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
    /// The query log's output: records written, records it did not take, and why.
    public struct QueryLog: Codable, Sendable {
        public var written: UInt64 = 0, lost: UInt64 = 0
        public var lastError: String?
    }
    /// The dnstap output (`dnstap:`): frames the collector took, frames lost
    /// (its buffer full while the collector was away or slow, or cut by a
    /// broken connection), frames waiting, whether a collector is connected
    /// and why not. Absent without `dnstap:`; decisions the rings had no
    /// room for are in `errors.query_log_dropped`, lost to dnstap too.
    public struct Dnstap: Codable, Sendable {
        public var frames: UInt64 = 0, dropped: UInt64 = 0, buffered: UInt64 = 0
        public var connected = false
        public var lastError: String?
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

    /// A zone followed from its primaries (`zone:` lists).
    public struct Zone: Codable, Sendable {
        public var list: String
        public var zone: String
        /// Serial of the copy in force; nil until the first transfer.
        public var serial: UInt32?
        public var records: Int = 0
        /// The primary that answered last.
        public var primary: String?
        /// RFC 3339: the last check, the last success (a transfer, or the
        /// primary confirming the serial held), the last transfer.
        public var lastCheck: String?
        public var lastSuccess: String?
        public var lastTransfer: String?
        public var lastError: String?
        /// The SOA expire has passed since the last success (the copy stays in force).
        public var expired = false
        public var refreshSeconds: UInt32?
        public var transfers = Transfers()
        public var notifies: UInt64 = 0

        public struct Transfers: Codable, Sendable {
            public var axfr: UInt64 = 0, ixfr: UInt64 = 0, upToDate: UInt64 = 0, failed: UInt64 = 0
        }

        /// Absent values are written as null, so every zone has the same keys.
        public func encode(to encoder: Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(list, forKey: .list)
            try container.encode(zone, forKey: .zone)
            try container.encode(serial, forKey: .serial)
            try container.encode(records, forKey: .records)
            try container.encode(primary, forKey: .primary)
            try container.encode(lastCheck, forKey: .lastCheck)
            try container.encode(lastSuccess, forKey: .lastSuccess)
            try container.encode(lastTransfer, forKey: .lastTransfer)
            try container.encode(lastError, forKey: .lastError)
            try container.encode(expired, forKey: .expired)
            try container.encode(refreshSeconds, forKey: .refreshSeconds)
            try container.encode(transfers, forKey: .transfers)
            try container.encode(notifies, forKey: .notifies)
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
    public var answers = Answers()
    public var tcp = TCP()
    public var overrideTargets = OverrideTargets()
    public var threats = Threats()
    public var rules: [Rule] = []
    public var lists: [List] = []
    public var queues: [Queue] = []
    public var errors = Errors()
    public var queryLog = QueryLog()
    public var zones: [Zone] = []
    /// NOTIFY messages not from a followed zone's primary, or badly signed.
    public var notifiesIgnored: UInt64 = 0
    public var dnstap: Dnstap? = nil

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

    /// One counter as every view shows it: its JSON section and key, its
    /// Prometheus family and label. `counters` is the one table the
    /// Prometheus output and the human table iterate, so they cannot drift.
    public struct Counter: Sendable {
        public var section: String
        public var name: String
        public var value: UInt64
        /// Family without the `dnsgate_` prefix, and the label that tells its samples apart.
        public var family: String
        public var label: (name: String, value: String)?
    }

    /// Type and help of every family in `counters`, in output order.
    static let counterFamilies: [(name: String, type: String, help: String)] = [
        ("packets_total", "counter", "Queued packets by what happened to them."),
        ("overflow_total", "counter", "Packets that found their queue full, by what the kernel did."),
        ("verdicts_total", "counter", "Decisions by verdict."),
        ("no_match_dropped_total", "counter",
         "Queries no rule matched, dropped while a remote list had no copy yet (fail_mode closed)."),
        ("responses_total", "counter", "Blocked queries by block response."),
        ("answer_packets_total", "counter", "Responses from resolvers (the answer stage) by what became of them."),
        ("answer_verdicts_total", "counter", "Responses by the answer stage's verdict."),
        ("tcp_connections_total", "counter", "DNS-over-TCP connections by what happened to them."),
        ("tcp_connections_open", "gauge", "DNS-over-TCP connections open now."),
        ("tcp_messages_total", "counter", "DNS-over-TCP messages by direction."),
        ("override_target_total", "counter", "OVERRIDE CNAME targets by how they were found."),
        ("tunnel_pairs", "gauge", "(client, registrable domain) pairs in the tunnelling detector's table; quiet ones stay until evicted."),
        ("tunnel_pairs_capacity", "gauge", "Pairs the tunnelling detector's table holds at most."),
        ("tunnel_evictions_total", "counter", "Pairs pushed out of the tunnelling detector's full table."),
        ("errors_total", "counter", "Failures by kind."),
        ("query_log_records_total", "counter", "Query-log records written."),
        ("query_log_failing", "gauge", "1 while the query log cannot be written."),
        ("dnstap_frames_total", "counter", "dnstap frames the collector took."),
        ("dnstap_dropped_total", "counter",
         "dnstap frames lost: the buffer was full while the collector was away or slow, or a connection broke mid-frame."),
        ("dnstap_buffered_frames", "gauge", "dnstap frames waiting for the collector."),
        ("dnstap_connected", "gauge", "1 while a dnstap collector has accepted the stream."),
    ]

    public var counters: [Counter] {
        func row(_ section: String, _ name: String, _ value: UInt64, _ family: String,
                 _ label: (String, String)? = nil) -> Counter {
            Counter(section: section, name: name, value: value, family: family, label: label)
        }
        return [
            row("packets", "received", packets.received, "packets_total", ("outcome", "received")),
            row("packets", "accepted", packets.accepted, "packets_total", ("outcome", "accepted")),
            row("packets", "dropped", packets.dropped, "packets_total", ("outcome", "dropped")),
            row("packets", "answered", packets.answered, "packets_total", ("outcome", "answered")),
            row("packets", "overflow_passed", packets.overflowPassed, "overflow_total", ("outcome", "passed")),
            row("packets", "overflow_dropped", packets.overflowDropped, "overflow_total", ("outcome", "dropped")),
            row("verdicts", "allow", verdicts.allow, "verdicts_total", ("verdict", "allow")),
            row("verdicts", "block", verdicts.block, "verdicts_total", ("verdict", "block")),
            row("verdicts", "alert", verdicts.alert, "verdicts_total", ("verdict", "alert")),
            row("verdicts", "no_match", verdicts.noMatch, "verdicts_total", ("verdict", "no_match")),
            row("verdicts", "no_match_dropped", verdicts.noMatchDropped, "no_match_dropped_total"),
            row("verdicts", "not_dns", verdicts.notDns, "verdicts_total", ("verdict", "not_dns")),
            row("verdicts", "not_query", verdicts.notQuery, "verdicts_total", ("verdict", "not_query")),
            row("responses", "nxdomain", responses.nxdomain, "responses_total", ("response", "nxdomain")),
            row("responses", "nodata", responses.nodata, "responses_total", ("response", "nodata")),
            row("responses", "refused", responses.refused, "responses_total", ("response", "refused")),
            row("responses", "override", responses.override, "responses_total", ("response", "override")),
            row("responses", "drop", responses.drop, "responses_total", ("response", "drop")),
            row("answers", "received", answers.packets.received, "answer_packets_total", ("outcome", "received")),
            row("answers", "accepted", answers.packets.accepted, "answer_packets_total", ("outcome", "accepted")),
            row("answers", "dropped", answers.packets.dropped, "answer_packets_total", ("outcome", "dropped")),
            row("answers", "answered", answers.packets.answered, "answer_packets_total", ("outcome", "answered")),
            row("answers", "reset", answers.packets.reset, "answer_packets_total", ("outcome", "reset")),
            row("answers", "overflow_passed", answers.packets.overflowPassed, "answer_packets_total",
                ("outcome", "overflow_passed")),
            row("answers", "trusted", answers.verdicts.trusted, "answer_verdicts_total", ("verdict", "trusted")),
            row("answers", "allow", answers.verdicts.allow, "answer_verdicts_total", ("verdict", "allow")),
            row("answers", "block", answers.verdicts.block, "answer_verdicts_total", ("verdict", "block")),
            row("answers", "alert", answers.verdicts.alert, "answer_verdicts_total", ("verdict", "alert")),
            row("answers", "no_match", answers.verdicts.noMatch, "answer_verdicts_total", ("verdict", "no_match")),
            row("answers", "not_dns", answers.verdicts.notDns, "answer_verdicts_total", ("verdict", "not_dns")),
            row("tcp", "connections", tcp.connections, "tcp_connections_total", ("outcome", "accepted")),
            row("tcp", "refused", tcp.refused, "tcp_connections_total", ("outcome", "refused")),
            row("tcp", "idle_closed", tcp.idleClosed, "tcp_connections_total", ("outcome", "idle_closed")),
            row("tcp", "upstream_failures", tcp.upstreamFailures, "tcp_connections_total", ("outcome", "upstream_failed")),
            row("tcp", "open", tcp.open, "tcp_connections_open"),
            row("tcp", "queries", tcp.queries, "tcp_messages_total", ("kind", "query")),
            row("tcp", "relayed", tcp.relayed, "tcp_messages_total", ("kind", "relayed")),
            row("tcp", "answers_relayed", tcp.answersRelayed, "tcp_messages_total", ("kind", "answer_relayed")),
            row("override_targets", "queries", overrideTargets.queries, "override_target_total", ("outcome", "asked")),
            row("override_targets", "failures", overrideTargets.failures, "override_target_total", ("outcome", "failed")),
            row("override_targets", "cache_hits", overrideTargets.cacheHits, "override_target_total",
                ("outcome", "kept_copy")),
            row("override_targets", "overflows", overrideTargets.overflows, "override_target_total",
                ("outcome", "overflow")),
            row("threats", "tunnel_pairs", threats.tunnelPairs, "tunnel_pairs"),
            row("threats", "tunnel_capacity", threats.tunnelCapacity, "tunnel_pairs_capacity"),
            row("threats", "tunnel_evictions", threats.tunnelEvictions, "tunnel_evictions_total"),
            row("errors", "inject_failures", errors.injectFailures, "errors_total", ("kind", "inject")),
            row("errors", "reload_failures", errors.reloadFailures, "errors_total", ("kind", "reload")),
            row("errors", "verdict_failures", errors.verdictFailures, "errors_total", ("kind", "verdict")),
            row("errors", "query_log_dropped", errors.queryLogDropped, "errors_total", ("kind", "query_log_dropped")),
            row("query_log", "lost", queryLog.lost, "errors_total", ("kind", "query_log_lost")),
            row("query_log", "written", queryLog.written, "query_log_records_total"),
            row("query_log", "failing", queryLog.lastError == nil ? 0 : 1, "query_log_failing"),
        ] + (dnstap.map { dnstap in
            // Only with `dnstap:`, like the JSON's section.
            [
                row("dnstap", "frames", dnstap.frames, "dnstap_frames_total"),
                row("dnstap", "dropped", dnstap.dropped, "dnstap_dropped_total"),
                row("dnstap", "buffered", dnstap.buffered, "dnstap_buffered_frames"),
                row("dnstap", "connected", dnstap.connected ? 1 : 0, "dnstap_connected"),
            ]
        } ?? [])
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
        let timestamps = ISO8601DateFormatter()
        func unixSeconds(_ text: String) -> UInt64? {
            timestamps.date(from: text).map { UInt64(max($0.timeIntervalSince1970, 0)) }
        }
        family("policy_loaded_timestamp_seconds", "gauge", "When the policy in force was loaded (Unix time).",
               unixSeconds(policy.loadedAt).map { [("", $0)] } ?? [])
        family("list_last_success_timestamp_seconds", "gauge",
               "When each list was last loaded, fetched or confirmed unchanged (Unix time).",
               lists.compactMap { list in list.lastSuccess.flatMap(unixSeconds).map { (label("list", list.name), $0) } })
        let table = counters
        for (name, type, help) in Self.counterFamilies {
            family(name, type, help, table.filter { $0.family == name }.map { counter in
                (counter.label.map { label($0.name, $0.value) } ?? "", counter.value)
            })
        }
        family("rule_hits_total", "counter", "Queries each rule decided.",
               rules.map { ("\(label("group", $0.group)),\(label("rule", $0.rule)),\(label("action", $0.action))", $0.hits) })
        family("rule_answer_hits_total", "counter", "Names and addresses of answers each rule matched.",
               rules.map { ("\(label("group", $0.group)),\(label("rule", $0.rule)),\(label("action", $0.action))", $0.answerHits) })
        family("list_hits_total", "counter", "Queries decided by rules using each list.",
               lists.map { (label("list", $0.name), $0.hits) })
        family("list_entries", "gauge", "Entries loaded per list.", lists.map { (label("list", $0.name), UInt64($0.entries)) })
        family("list_fetch_failing", "gauge", "1 when the last fetch of a remote list failed.",
               lists.filter { $0.url != nil }.map { (label("list", $0.name), $0.lastError == nil ? 0 : 1) })
        family("zone_serial", "gauge", "Serial of each followed zone's copy in force.",
               zones.compactMap { zone in zone.serial.map { (label("zone", zone.zone), UInt64($0)) } })
        family("zone_records", "gauge", "Records in each followed zone's copy.",
               zones.map { (label("zone", $0.zone), UInt64($0.records)) })
        family("zone_last_success_timestamp_seconds", "gauge",
               "When each zone was last transferred or confirmed current by a primary (Unix time).",
               zones.compactMap { zone in zone.lastSuccess.flatMap(unixSeconds).map { (label("zone", zone.zone), $0) } })
        family("zone_failing", "gauge", "1 when the last check of a zone failed on every primary.",
               zones.map { (label("zone", $0.zone), $0.lastError == nil ? 0 : 1) })
        family("zone_expired", "gauge", "1 when a zone's SOA expire passed since its last success (its copy stays in force).",
               zones.map { (label("zone", $0.zone), $0.expired ? 1 : 0) })
        family("zone_transfers_total", "counter", "Zone checks by outcome: axfr, ixfr, up_to_date, failed.",
               zones.flatMap { zone in
                   [("axfr", zone.transfers.axfr), ("ixfr", zone.transfers.ixfr), ("up_to_date", zone.transfers.upToDate),
                    ("failed", zone.transfers.failed)].map { ("\(label("zone", zone.zone)),\(label("kind", $0.0))", $0.1) }
               })
        family("zone_notifies_total", "counter", "NOTIFY messages answered per zone.",
               zones.map { (label("zone", $0.zone), $0.notifies) })
        family("notifies_ignored_total", "counter", "NOTIFY messages ignored: not from a followed zone's primary, or badly signed.",
               [("", notifiesIgnored)])
        family("queue_received_total", "counter", "Queries (and unreadable packets) received per queue.",
               queues.map { (label("queue", String($0.queue)), $0.received) })
        family("queue_answers_received_total", "counter", "Responses received per queue (the answer stage).",
               queues.map { (label("queue", String($0.queue)), $0.answersReceived) })
        family("queue_kernel_dropped_total", "counter", "Packets the kernel dropped because the queue was full.",
               queues.map { (label("queue", String($0.queue)), $0.kernelDropped) })
        family("queue_user_dropped_total", "counter", "Packets the kernel could not hand to dnsgate.",
               queues.map { (label("queue", String($0.queue)), $0.userDropped) })
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
