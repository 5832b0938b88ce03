// SPDX-License-Identifier: GPL-2.0-or-later
import Testing
@testable import DnsgatePolicy

/// Issue #10: every relative path of a config resolves once, beside the config
/// file, so that no two parts of the daemon disagree on where a file is.
@Suite("Config paths")
struct ConfigPathTests {
    @Test("relative paths resolve beside the config file", arguments: [
        ("cache", "/etc/dnsgate/dnsgate.yaml", "/etc/dnsgate/cache"),
        ("./cache/", "/etc/dnsgate/dnsgate.yaml", "/etc/dnsgate/cache/"),
        ("/var/cache/dnsgate", "/etc/dnsgate/dnsgate.yaml", "/var/cache/dnsgate"),
        ("lists/a.txt", "/dnsgate.yaml", "/lists/a.txt"),
        ("cache", "dnsgate.yaml", "cache"),
    ])
    func resolve(path: String, config: String, expected: String) {
        #expect(ConfigPaths.resolve(path, relativeTo: config) == expected)
    }

    @Test("a config path is made absolute from the working directory", arguments: [
        ("dnsgate.yaml", "/srv/dg", "/srv/dg/dnsgate.yaml"),
        ("./dnsgate.yaml", "/srv/dg/", "/srv/dg/dnsgate.yaml"),
        ("conf/dnsgate.yaml", "/", "/conf/dnsgate.yaml"),
        ("/etc/dnsgate/dnsgate.yaml", "/srv", "/etc/dnsgate/dnsgate.yaml"),
    ])
    func absolute(path: String, directory: String, expected: String) {
        #expect(ConfigPaths.absolute(path, in: directory) == expected)
    }

    @Test("every path of the config is resolved once, when it is read")
    func configPaths() throws {
        let yaml = """
        stats_socket: run/dnsgate.sock
        cache_dir: cache
        query_log: {path: log/queries.jsonl}
        domain_lists:
          - {name: f, file: lists/f.txt}
          - {name: u, url: "https://feeds.example/u.txt"}
        """
        let config = try #require(ConfigReader.read(yaml: yaml, path: "/srv/dg/dnsgate.yaml").0)
        #expect(config.statsSocket == "/srv/dg/run/dnsgate.sock")
        #expect(config.cacheDirectory == "/srv/dg/cache")
        #expect(config.queryLog?.path == "/srv/dg/log/queries.jsonl")
        #expect(config.domainLists[0].source == .file("/srv/dg/lists/f.txt"))
        #expect(config.domainLists[1].cachePath(in: config.cacheDirectory) == "/srv/dg/cache/u.list")
        let stdout = try #require(ConfigReader.read(yaml: "query_log: {path: \"-\"}\n", path: "/srv/dg/d.yaml").0)
        #expect(stdout.queryLog?.path == "-")
    }
}
