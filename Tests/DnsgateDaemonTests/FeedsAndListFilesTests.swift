// SPDX-License-Identifier: GPL-2.0-or-later
@testable import DnsgatePolicy
import Foundation
import Testing
@testable import DnsgateDaemon

/// Issue #10: list files are read within their limit, downloads that collapse
/// are refused, and feed scheduling retries lists that have no copy yet.
@Suite("Feeds and list files")
struct FeedsAndListFilesTests {
    /// A folder of its own, removed afterwards.
    func withFolder(_ body: (String) throws -> Void) throws {
        let folder = NSTemporaryDirectory() + "dnsgate-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try body(folder)
    }

    @Test("a file within the limit is read whole, in chunks")
    func readsWithinTheLimit() throws {
        try withFolder { folder in
            let bytes = (0..<(3 << 20) + 17).map { UInt8(truncatingIfNeeded: $0) }
            #expect(FileManager.default.createFile(atPath: folder + "/l.txt", contents: Data(bytes)))
            let read = try readFileBytes(folder + "/l.txt", maximumBytes: bytes.count)
            #expect(read == bytes)
        }
    }

    @Test("a file over the limit is refused before it is read: a sparse 1 GiB file costs nothing")
    func refusesLargeFiles() throws {
        try withFolder { folder in
            let path = folder + "/huge.txt"
            #expect(FileManager.default.createFile(atPath: path, contents: nil))
            let handle = try #require(FileHandle(forWritingAtPath: path))
            try handle.truncate(atOffset: 1 << 30)
            try handle.close()
            let error = #expect(throws: DaemonError.self) { try readFileBytes(path, maximumBytes: 1 << 20) }
            #expect(error?.description == "1073741824 bytes, more than max_size (1048576 bytes)")
        }
    }

    @Test("a FIFO, a folder or a missing file is refused at once, never waited on")
    func refusesWhatIsNotAFile() throws {
        try withFolder { folder in
            #expect(mkfifo(folder + "/fifo", 0o600) == 0)
            for (path, reason) in [(folder + "/fifo", "not a regular file"), (folder, "not a regular file"),
                                   (folder + "/missing", "No such file or directory")] {
                let error = #expect(throws: DaemonError.self) { try readFileBytes(path, maximumBytes: 1 << 20) }
                #expect(error?.description == reason)
            }
        }
    }

    static let feed = Feeds.Feed(
        name: "remote", remote: RemoteSource(url: "https://feeds.example/l.txt", refreshSeconds: 3600, maximumBytes: 1 << 20),
        cachePath: "/nonexistent/remote.list", format: .auto, matchSubdomains: false, allowEmpty: false)

    @Test("downloads that collapsed are refused; a list is not")
    func refusal() {
        #expect(Feeds.refusal(of: Array("a.example\nb.example\n".utf8), for: Self.feed) == nil)
        let binary = Feeds.refusal(of: Array("a.example\n".utf8) + [0, 0xff], for: Self.feed)
        #expect(binary?.contains("binary content (a NUL byte)") == true && binary?.hasSuffix("(line 2)") == true)
        let portal = Feeds.refusal(of: Array("<html><body>Please log in</body></html>\n".utf8), for: Self.feed)
        #expect(portal?.contains("no usable entries") == true)
        #expect(Feeds.refusal(of: [], for: Self.feed)?.contains("no entries") == true)
        var meant = Self.feed
        meant.allowEmpty = true
        #expect(Feeds.refusal(of: [], for: meant) == nil)
    }

    @Test("a fetcher shut down (dnsgate stopping) fails every fetch at once, without a connection")
    func fetcherShutDown() {
        let fetcher = HTTPFetcher()
        fetcher.shutdown()
        let result = fetcher.fetch("http://feeds.example/l.txt", etag: nil, lastModified: nil, maximumBytes: 1 << 20)
        #expect(result == .failure(HTTPFetcher.stopping))
    }

    @Test("a TLS failure is reported by BoringSSL's reasons, without codes and source paths")
    func tlsReasons() {
        let untrusted = "handshakeFailed(NIOSSL.BoringSSLError.sslError([Error: 268435581 error:1000007d:SSL routines:"
            + "OPENSSL_internal:CERTIFICATE_VERIFY_FAILED at /src/ssl/handshake.cc:393]))"
        #expect(HTTPFetcher.tlsReasons(in: untrusted) == "CERTIFICATE_VERIFY_FAILED")
        #expect(HTTPFetcher.tlsReasons(in: "connection failed: Connection refused") == nil)
    }

    @Test("scheduling: a list with no copy is retried every 10 s; one with a copy after a tenth of refresh or refresh")
    func scheduling() {
        let now = Date()
        func status(attempt: TimeInterval, failed: Bool) -> Feeds.Status {
            Feeds.Status(url: Self.feed.remote.url, lastSuccess: failed ? nil : now.addingTimeInterval(-attempt),
                         lastAttempt: now.addingTimeInterval(-attempt), lastError: failed ? "HTTP 503" : nil)
        }
        #expect(Feeds.isDue(Self.feed, nil, hasCopy: false, now: now))
        #expect(!Feeds.isDue(Self.feed, status(attempt: 5, failed: true), hasCopy: false, now: now))
        #expect(Feeds.isDue(Self.feed, status(attempt: 11, failed: true), hasCopy: false, now: now))
        #expect(!Feeds.isDue(Self.feed, status(attempt: 300, failed: true), hasCopy: true, now: now))
        #expect(Feeds.isDue(Self.feed, status(attempt: 361, failed: true), hasCopy: true, now: now))
        #expect(!Feeds.isDue(Self.feed, status(attempt: 3599, failed: false), hasCopy: true, now: now))
        #expect(Feeds.isDue(Self.feed, status(attempt: 3600, failed: false), hasCopy: true, now: now))
    }
}
