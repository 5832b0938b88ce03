// SPDX-License-Identifier: GPL-2.0-or-later
import Foundation

/// Packets the shipped rules sent to the queues, read from the rules' own
/// counters (`iptables -L DNSGATE -v -x`, IPv4 and IPv6). A queue that is full
/// and fails open lets packets through without counting them anywhere; the
/// difference between what the rules queued and what reached dnsgate is
/// that overflow.
enum RuleCounters {
    static let tools = ["iptables", "ip6tables"]

    /// Packets the rules queued, by direction.
    struct Queued: Equatable {
        /// Queries (to port 53).
        var questions: UInt64 = 0
        /// Responses (from port 53).
        var answers: UInt64 = 0
    }

    /// Sums of the packet counters of the DNSGATE chain's NFQUEUE rules, or
    /// nil when no tool could be run or no such rule is loaded (nftables, or
    /// no rules).
    static func queuedPackets() -> Queued? {
        var total = Queued()
        var found = false
        for tool in tools {
            guard let output = run(tool, ["-w", "2", "-t", "filter", "-n", "-v", "-x", "-L", "DNSGATE"]) else { continue }
            if let packets = parse(output) {
                total.questions += packets.questions
                total.answers += packets.answers
                found = true
            }
        }
        return found ? total : nil
    }

    /// The NFQUEUE rules' packet counts in `iptables -L -v -x` output: the
    /// rule matching source port 53 queues answers, the other queries.
    static func parse(_ listing: String) -> Queued? {
        var total: Queued? = nil
        for line in listing.split(separator: "\n") where line.contains("NFQUEUE") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let packets = fields.first.flatMap({ UInt64($0) }) else { continue }
            var sum = total ?? Queued()
            if fields.contains("spt:53") { sum.answers += packets } else { sum.questions += packets }
            total = sum
        }
        return total
    }

    private static func run(_ tool: String, _ arguments: [String]) -> String? {
        guard let path = ["/usr/sbin/", "/sbin/", "/usr/bin/"].map({ $0 + tool })
            .first(where: FileManager.default.isExecutableFile(atPath:)) else { return nil }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            return nil
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}
