// SPDX-License-Identifier: GPL-2.0-or-later
import Testing
@testable import DnsgatePolicy

@Suite("Deployment check: installed rules' queues, allowed CPUs")
struct DeploymentCheckTests {
    @Test("iptables-save: the DNSGATE chain's --queue-balance, --queue-num, default queue 0; other chains' queues (an inline IDS) are not ours")
    func iptablesSave() {
        let text = """
        *filter
        :DNSGATE - [0:0]
        -A DNSGATE -m mark --mark 0x444e53 -m addrtype --src-type LOCAL -j RETURN
        -A DNSGATE -p udp -m udp --dport 53 -m conntrack --ctstate INVALID,NEW -j NFQUEUE --queue-balance 0:1 --queue-bypass
        -A DNSGATE -p udp -j NFQUEUE --queue-num 7
        -A DNSGATE -p tcp -m comment --comment "NFQUEUE --queue-num 9" -j ACCEPT
        -A SURICATA -p udp -j NFQUEUE --queue-num 3
        -A FORWARD -j NFQUEUE --queue-num 2
        COMMIT
        """
        #expect(DeploymentCheck.queues(iptablesSave: text) == [0, 1, 7])
    }

    @Test("nft list ruleset: table inet dnsgate only; old and new queue syntax, bare queue, expressions left out")
    func nftRuleset() {
        let text = """
        table ip filter {
        \tchain DNSGATE {
        \t\tudp dport 53 ct state invalid,new counter packets 0 bytes 0 queue num 0-1
        \t}
        }
        table inet dnsgate {
        \tchain divert {
        \t\tudp dport 53 queue flags bypass,fanout to 4-5
        \t\tudp dport 54 queue to 9
        \t\tudp dport 55 queue
        \t\tudp dport 56 queue to symhash mod 2
        \t}
        }
        """
        #expect(DeploymentCheck.queues(nftRuleset: text) == [0, 4, 5, 9], "table ip filter's queues 0-1 are not ours")
    }

    @Test("queues: an error for a fed queue not bound, a warning for a bound queue not fed")
    func queueDiagnostics() {
        var config = DnsgateConfig(path: "/etc/dnsgate/dnsgate.yaml")
        config.queues = [0]
        config.queuesLine = 2
        let missing = DeploymentCheck.queueDiagnostics(config, fed: [0, 1], source: "iptables-save")
        #expect(missing.count == 1 && missing[0].severity == .error && missing[0].line == 2)
        #expect(missing[0].message.contains("send packets to NFQUEUE 1, which queues: 0 does not bind"))
        config.queues = [0, 1, 2]
        let idle = DeploymentCheck.queueDiagnostics(config, fed: [0, 1], source: "nft")
        #expect(idle.map(\.severity) == [.warning] && idle[0].message.contains("NFQUEUE 2"))
        config.queues = [0, 1]
        #expect(DeploymentCheck.queueDiagnostics(config, fed: [0, 1], source: "nft").isEmpty)
    }

    @Test("worker_cpus: only CPUs of the inherited affinity; by default worker i on the i-th allowed CPU")
    func workerCPUs() {
        var config = DnsgateConfig(path: "c.yaml")
        #expect(DeploymentCheck.workerCPUs(config, allowed: [1], workers: 2) == [1, 1])
        #expect(DeploymentCheck.workerCPUs(config, allowed: [2, 3, 5], workers: 4) == [2, 3, 5, 2])
        #expect(DeploymentCheck.workerCPUDiagnostics(config, allowed: [1]).isEmpty)
        config.workerCPUs = [7, 1, 0]
        config.workerCPUsLine = 5
        let problems = DeploymentCheck.workerCPUDiagnostics(config, allowed: [1])
        #expect(problems.count == 1 && problems[0].severity == .error && problems[0].line == 5)
        #expect(problems[0].message.hasPrefix("worker_cpus: CPU 0,7 is outside the CPUs this process may run on (1)"))
        config.workerCPUs = []
        #expect(DeploymentCheck.workerCPUs(config, allowed: [0, 1], workers: 2) == [nil, nil])
        #expect(DeploymentCheck.listed([0, 1, 2, 3, 6, 8, 9]) == "0-3,6,8-9")
    }

    @Test("the config remembers the lines of queues and worker_cpus")
    func lines() throws {
        let (config, diagnostics) = ConfigReader.read(yaml: "fail_mode: open\nqueues: \"0-1\"\nworker_cpus: [1]\n", path: "c.yaml")
        #expect(diagnostics.isEmpty)
        #expect(config?.queuesLine == 2 && config?.workerCPUsLine == 3)
    }
}
