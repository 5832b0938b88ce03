// SPDX-License-Identifier: GPL-2.0-or-later

/// What a config must agree with on the machine it runs on: the NFQUEUE
/// numbers the installed firewall rules send packets to, and the CPUs the
/// process may run on. Pure: the caller reads the rules (`iptables-save`,
/// `nft list ruleset`) and the affinity (`sched_getaffinity`).
public enum DeploymentCheck {
    /// Queues that the NFQUEUE rules of dnsgate's own `DNSGATE` chain in
    /// `iptables-save` (or `ip6tables-save`) output send packets to:
    /// `--queue-num N`, `--queue-balance A:B`, or queue 0 when neither is
    /// given. Other programs' queues (an inline IDS) are theirs, not ours.
    public static func queues(iptablesSave text: String) -> Set<UInt16> {
        var queues = Set<UInt16>()
        for line in text.split(separator: "\n") where line.hasPrefix("-A DNSGATE ") {
            let words = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let target = words.firstIndex(of: "-j"), target + 1 < words.count, words[target + 1] == "NFQUEUE" else {
                continue
            }
            var fed: ClosedRange<UInt16>? = 0...0
            for (index, word) in words.enumerated().dropFirst(target + 2) where index + 1 < words.count {
                if word == "--queue-num" { fed = range(words[index + 1], separator: ":") }
                if word == "--queue-balance" { fed = range(words[index + 1], separator: ":") }
            }
            if let fed { queues.formUnion(fed) }
        }
        return queues
    }

    /// Queues that the `queue` statements of `nft list ruleset` output (table
    /// `inet dnsgate`) send
    /// packets to: `queue num 0-1 …`, `queue flags bypass,fanout to 0-1`,
    /// `queue to 3`, or queue 0 for a bare `queue`. A queue chosen by an
    /// expression (`queue to symhash mod 2 map …`) cannot be read and is left out.
    public static func queues(nftRuleset text: String) -> Set<UInt16> {
        var queues = Set<UInt16>()
        var inDnsgateTable = false
        for line in text.split(separator: "\n") {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            // Only dnsgate's own table: other programs' queues are theirs.
            if line.hasPrefix("table ") { inDnsgateTable = words.count >= 3 && words[1] == "inet" && words[2] == "dnsgate" }
            guard inDnsgateTable, let statement = words.firstIndex(of: "queue") else { continue }
            var fed: ClosedRange<UInt16>? = 0...0
            for (index, word) in words.enumerated().dropFirst(statement + 1) where index + 1 < words.count {
                if word == "num" || word == "to" { fed = range(words[index + 1], separator: "-") }
            }
            if let fed { queues.formUnion(fed) }
        }
        return queues
    }

    /// `N` or `A<separator>B` with A ≤ B.
    static func range(_ text: Substring, separator: Character) -> ClosedRange<UInt16>? {
        let bounds = text.split(separator: separator, maxSplits: 1).map { UInt16($0) }
        guard let first = bounds.first ?? nil, let last = bounds.last ?? nil, first <= last else { return nil }
        return first...last
    }

    /// The config's `queues` against the queues installed rules feed (`fed`,
    /// read from `source`, e.g. "iptables-save"): an error for a queue the rules
    /// feed and the config does not bind (its packets are never decided: dropped
    /// without `--queue-bypass`, passed with it), a warning for a bound queue no
    /// rule feeds.
    public static func queueDiagnostics(_ config: DnsgateConfig, fed: Set<UInt16>, source: String) -> [Diagnostic] {
        let bound = Set(config.queues)
        var diagnostics: [Diagnostic] = []
        let unbound = fed.subtracting(bound).sorted()
        if !unbound.isEmpty {
            diagnostics.append(Diagnostic(.error, file: config.path, line: config.queuesLine,
                "queues: the installed rules (\(source)) send packets to NFQUEUE \(listed(unbound)), which queues: "
                    + "\(listed(config.queues.sorted())) does not bind: those queries are never decided "
                    + "(dropped by the fail-closed rules, passed by the fail-open ones)"))
        }
        let unfed = bound.subtracting(fed).sorted()
        if !fed.isEmpty, !unfed.isEmpty {
            diagnostics.append(Diagnostic(.warning, file: config.path, line: config.queuesLine,
                "queues: no installed rule (\(source)) sends packets to NFQUEUE \(listed(unfed)); its worker idles"))
        }
        return diagnostics
    }

    /// `worker_cpus` against the CPUs the process may run on (`allowed`, its
    /// inherited affinity): workers are pinned only within it, so a CPU
    /// outside it is an error.
    public static func workerCPUDiagnostics(_ config: DnsgateConfig, allowed: [Int]) -> [Diagnostic] {
        guard let configured = config.workerCPUs else { return [] }
        let outside = configured.filter { !allowed.contains($0) }
        guard !outside.isEmpty else { return [] }
        return [Diagnostic(.error, file: config.path, line: config.workerCPUsLine,
            "worker_cpus: CPU \(listed(outside.sorted())) is outside the CPUs this process may run on (\(listed(allowed))); "
                + "workers are pinned only within the affinity dnsgate is started with (taskset, systemd's CPUAffinity=)")]
    }

    /// The CPU each worker is pinned to, in queue order (nil: not pinned):
    /// `worker_cpus` as given (checked by `workerCPUDiagnostics`), `[]` for
    /// none, and by default worker i on the i-th allowed CPU, so that no worker
    /// leaves the inherited affinity.
    public static func workerCPUs(_ config: DnsgateConfig, allowed: [Int], workers: Int) -> [Int?] {
        (0..<workers).map { index -> Int? in
            if let configured = config.workerCPUs {
                return configured.isEmpty ? nil : configured[index % configured.count]
            }
            return allowed.isEmpty ? nil : allowed[index % allowed.count]
        }
    }

    /// "0-3,6" for [0, 1, 2, 3, 6].
    static func listed<Number: BinaryInteger>(_ numbers: [Number]) -> String {
        var parts: [String] = []
        var index = 0
        while index < numbers.count {
            var end = index
            while end + 1 < numbers.count, numbers[end + 1] == numbers[end] + 1 { end += 1 }
            parts.append(end > index ? "\(numbers[index])-\(numbers[end])" : "\(numbers[index])")
            index = end + 1
        }
        return parts.joined(separator: ",")
    }
}
