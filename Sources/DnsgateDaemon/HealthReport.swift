// SPDX-License-Identifier: GPL-2.0-or-later
public import Foundation

/// What makes the firewall unhealthy, for `dnsgate health` (from the stats
/// and the machine) and the HTTP `/healthz` (from inside the daemon).
public enum HealthReport {
    /// Why the daemon is not enforcing: no policy, or a queue it serves that
    /// the kernel does not list as bound (its packets then follow the rules'
    /// fail mode, unjudged). Empty when it enforces.
    public static func enforcementProblems(policyGeneration: Int, servedQueues: [UInt16],
                                           boundQueues: Set<UInt16>) -> [String] {
        var problems: [String] = []
        if policyGeneration < 1 { problems.append("no policy is loaded") }
        if servedQueues.isEmpty { problems.append("the daemon serves no queue") }
        for queue in servedQueues where !boundQueues.contains(queue) {
            problems.append("NFQUEUE \(queue) is not bound in this network namespace")
        }
        return problems
    }

    /// `dnsgate health`: the enforcement problems, queues the installed rules
    /// feed that the daemon does not serve, and remote lists not fetched
    /// within `maxFeedAge` seconds.
    public static func problems(_ stats: StatsSnapshot, boundQueues: Set<UInt16>,
                                fedQueues: (queues: Set<UInt16>, source: String)?,
                                maxFeedAge: TimeInterval, now: Date) -> [String] {
        let served = stats.queues.map(\.queue)
        var problems = enforcementProblems(policyGeneration: stats.policy.generation, servedQueues: served,
                                           boundQueues: boundQueues)
        if let (fed, source) = fedQueues {
            for queue in fed.subtracting(served).sorted() {
                problems.append("the installed rules (\(source)) send packets to NFQUEUE \(queue), which the daemon does not serve")
            }
        }
        let dates = ISO8601DateFormatter()
        for list in stats.lists where list.url != nil {
            guard let text = list.lastSuccess, let fetched = dates.date(from: text) else {
                problems.append("remote list \(list.name) was never fetched" + (list.lastError.map { ": \($0)" } ?? ""))
                continue
            }
            let age = now.timeIntervalSince(fetched)
            if age > maxFeedAge {
                problems.append("remote list \(list.name) is stale: last fetched \(Int(age)) s ago (at \(text))"
                    + (list.lastError.map { "; last error: \($0)" } ?? ""))
            }
        }
        return problems
    }
}
