// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import Testing
@testable import DnsgatePolicy

/// `metrics_listen: ADDRESS:PORT`, the HTTP metrics endpoint's address.
@Suite("metrics_listen")
struct MetricsListenTests {
    @Test("IPv4 and bracketed IPv6 addresses with a port are read; absent means no endpoint", arguments: [
        ("metrics_listen: 192.0.2.1:9153\n", "192.0.2.1", 9153),
        ("metrics_listen: \"[2001:db8::1]:9153\"\n", "2001:db8::1", 9153),
        ("metrics_listen: \"[::ffff:192.0.2.1]:9100\"\n", "::ffff:192.0.2.1", 9100),
    ])
    func validForms(yaml: String, address: String, port: Int) throws {
        let (config, diagnostics) = ConfigReader.read(yaml: yaml, path: "c.yaml")
        #expect(diagnostics.isEmpty, "\(diagnostics)")
        let parsed = try #require(config)
        let listen = try #require(parsed.metricsListen)
        #expect(listen.address == IPAddress(address))
        #expect(Int(listen.port) == port)
        #expect(ServerAddress(listen.description) == listen, "the description reads back as the same address")
    }

    @Test("every interface is allowed, with a warning: the endpoint has no authentication", arguments: [
        ("metrics_listen: '[::]:65535'\n", "::", 65535),
        ("metrics_listen: 0.0.0.0:1\n", "0.0.0.0", 1),
    ])
    func wildcard(yaml: String, address: String, port: Int) throws {
        let (config, diagnostics) = ConfigReader.read(yaml: yaml, path: "c.yaml")
        #expect(diagnostics.count == 1 && diagnostics.allSatisfy { $0.severity == .warning && $0.line == 1 })
        #expect(diagnostics.first?.message.contains("every interface") == true, "\(diagnostics)")
        let listen = try #require(config?.metricsListen)
        #expect(listen == ServerAddress(address: try #require(IPAddress(address)), port: UInt16(port)))
    }

    @Test("no metrics_listen, no endpoint")
    func absent() throws {
        let (config, diagnostics) = ConfigReader.read(yaml: "queues: 0\n", path: "c.yaml")
        #expect(diagnostics.isEmpty)
        #expect(try #require(config).metricsListen == nil)
    }

    @Test("a bad address is an error naming the file and the key's line", arguments: [
        "localhost:9153",           // names are not resolved
        "192.0.2.1",                // no port
        "192.0.2.1:",               // empty port
        "192.0.2.1:0",              // port 0
        "192.0.2.1:65536",
        "192.0.2.1:+80",
        "192.0.2.300:9153",
        "2001:db8::1:9153",         // IPv6 without brackets is ambiguous
        "[2001:db8::1]9153",
        "[192.0.2.1]:9153",         // brackets are for IPv6
        "[2001:db8::zz]:9153",
        "\"\"",
        "9153",
        "{address: 192.0.2.1, port: 9153}",
        "[2001:db8::1]:9153",       // unquoted: YAML reads a list
    ])
    func errors(value: String) {
        let yaml = "queues: 0\nmetrics_listen: \(value)\n"
        let (_, diagnostics) = ConfigReader.read(yaml: yaml, path: "/etc/dnsgate/dnsgate.yaml")
        let errors = diagnostics.filter { $0.severity == .error }
        #expect(errors.count == 1, "\(diagnostics)")
        #expect(errors.allSatisfy { $0.file == "/etc/dnsgate/dnsgate.yaml" && $0.line == 2 }, "\(diagnostics)")
        #expect(errors.contains { $0.message.contains("metrics_listen") || $0.message.contains("YAML") }, "\(diagnostics)")
    }

    @Test("the error says how to write the address, IPv6 quoted")
    func errorText() {
        let (_, diagnostics) = ConfigReader.read(yaml: "metrics_listen: 2001:db8::1:9153\n", path: "c.yaml")
        #expect(diagnostics.map(\.message) == [
            "metrics_listen: '2001:db8::1:9153' is not an address and port like 192.0.2.1:9153 or \"[2001:db8::1]:9153\" (IPv6 in brackets, quoted)",
        ])
    }

    @Test("the port of the TCP relay cannot be the metrics port as well")
    func clashWithTCPPort() {
        let (_, diagnostics) = ConfigReader.read(yaml: "tcp_port: 8053\nmetrics_listen: 192.0.2.1:8053\n", path: "c.yaml")
        #expect(diagnostics.contains { $0.severity == .error && $0.line == 2 && $0.message.contains("tcp_port") },
                "\(diagnostics)")
        let (_, defaults) = ConfigReader.read(yaml: "metrics_listen: \"[::]:5053\"\n", path: "c.yaml")
        #expect(defaults.contains { $0.severity == .error && $0.message.contains("tcp_port") }, "\(defaults)")
    }
}
