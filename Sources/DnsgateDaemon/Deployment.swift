// SPDX-License-Identifier: GPL-2.0-or-later
public import DnsgatePolicy
import Dispatch
import Foundation
import NetfilterQueue

/// Reads what a config must agree with on this machine (the firewall rules
/// installed in this network namespace, the CPUs this process may run on) and
/// checks the config against it with `DeploymentCheck`. Shared by `dnsgate
/// check`, `dnsgate health` and the daemon's start.
public enum Deployment {
    /// The queues the installed NFQUEUE rules feed, and where that was read;
    /// nil when no rules can be read (not root, no tools) or none queue: then
    /// there is nothing to compare, and nothing is said.
    public static func fedQueues() -> (queues: Set<UInt16>, source: String)? {
        var queues = Set<UInt16>()
        var sources: [String] = []
        for tool in ["iptables-save", "ip6tables-save"] {
            if let text = output(of: tool, []) {
                let fed = DeploymentCheck.queues(iptablesSave: text)
                if !fed.isEmpty { sources.append(tool) }
                queues.formUnion(fed)
            }
        }
        // iptables-nft rules show in both; a union counts them once.
        if let text = output(of: "nft", ["list", "ruleset"]) {
            let fed = DeploymentCheck.queues(nftRuleset: text)
            if !fed.isEmpty { sources.append("nft") }
            queues.formUnion(fed)
        }
        return queues.isEmpty ? nil : (queues, sources.joined(separator: ", "))
    }

    /// The config's queues against the installed rules (nothing when there
    /// are none to read) and its `worker_cpus` against this process's CPUs.
    public static func diagnostics(_ config: DnsgateConfig) -> [Diagnostic] {
        var diagnostics: [Diagnostic] = []
        if let (fed, source) = fedQueues() {
            diagnostics += DeploymentCheck.queueDiagnostics(config, fed: fed, source: source)
        }
        if let allowed = try? CurrentThread.allowedCPUs() {
            diagnostics += DeploymentCheck.workerCPUDiagnostics(config, allowed: allowed)
        }
        return diagnostics
    }

    /// The CPU of each worker, within the CPUs this process may run on (read
    /// on the calling thread, before any worker is pinned); throws when
    /// `worker_cpus` names one outside them.
    public static func workerCPUs(_ config: DnsgateConfig, workers: Int) throws -> [Int?] {
        let allowed: [Int]
        do {
            allowed = try CurrentThread.allowedCPUs()
        } catch {
            throw DaemonError(description: "\(error)")
        }
        let problems = DeploymentCheck.workerCPUDiagnostics(config, allowed: allowed)
        guard problems.isEmpty else { throw DaemonError(description: problems.map(\.description).joined(separator: "\n")) }
        return DeploymentCheck.workerCPUs(config, allowed: allowed, workers: workers)
    }

    /// What `tool` prints when it succeeds within 5 s; nil when it is not
    /// installed, fails (e.g. without CAP_NET_ADMIN) or hangs.
    static func output(of tool: String, _ arguments: [String]) -> String? {
        let folders = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
            + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        guard let path = folders.map({ $0 + "/" + tool }).first(where: { FileManager.default.isExecutableFile(atPath: $0) })
        else { return nil }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            return nil
        }
        // Read while it runs, so that a large ruleset cannot fill the pipe and stall it.
        let collected = DataCollector()
        let reader = Thread { collected.store(output.fileHandleForReading.readDataToEndOfFile()) }
        reader.start()
        for _ in 0..<500 where process.isRunning { usleep(10_000) }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
            return nil
        }
        process.waitUntilExit()
        guard process.terminationStatus == 0, let data = collected.wait(seconds: 5) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}

/// Hands a reader thread's bytes to the thread waiting for them.
private final class DataCollector: @unchecked Sendable {
    // @unchecked: `data` is written once before `done` is signalled and read after.
    private var data: Data?
    private let done = DispatchSemaphore(value: 0)

    func store(_ bytes: Data) {
        data = bytes
        done.signal()
    }

    func wait(seconds: Int) -> Data? {
        done.wait(timeout: .now() + .seconds(seconds)) == .success ? data : nil
    }
}
