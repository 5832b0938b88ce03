// SPDX-License-Identifier: GPL-2.0-or-later
import DnsgatePolicy
import Foundation
import Logging
import Synchronization

/// Remote lists: fetched with conditional requests, checked, and kept as the
/// last good copy on disk (`cache_dir/NAME.list`, metadata in `NAME.list.meta`),
/// so that neither a restart nor a feed outage empties the policy. Runs on a
/// thread of its own; a changed list triggers a reload.
final class Feeds: Sendable {
    struct Feed: Sendable, Equatable {
        var name: String
        var remote: RemoteSource
        var cachePath: String
        var format: ListFormat
        var matchSubdomains: Bool
        var allowEmpty: Bool
    }

    /// What `stats` reports per remote list; persisted next to the cached copy.
    struct Status: Codable, Sendable {
        var url: String
        var etag: String?
        var lastModified: String?
        var lastSuccess: Date?
        var lastAttempt: Date?
        var lastError: String?
    }

    private let guarded = Mutex<(feeds: [Feed], statuses: [String: Status])>(([], [:]))
    /// Set at shutdown: the fetch in progress is abandoned within a second and
    /// no other starts.
    private let stopping = Atomic<Bool>(false)
    let logger: Logger
    let deadlines: HTTPFetcher.Deadlines

    init(logger: Logger, deadlines: HTTPFetcher.Deadlines = .standard) {
        self.logger = logger
        self.deadlines = deadlines
    }

    /// Takes the remote lists of a (re)loaded config; statuses of lists that
    /// stay are kept, others are read from disk.
    func configure(_ config: DnsgateConfig) {
        // Absolute: the config reader resolved it, as the compiler sees it.
        let directory = config.cacheDirectory
        let feeds: [Feed] = config.domainLists.compactMap { list in
            guard case .url(let remote) = list.source else { return nil }
            return Feed(name: list.name, remote: remote, cachePath: list.cachePath(in: directory), format: list.format,
                        matchSubdomains: list.matchSubdomains, allowEmpty: list.allowEmpty)
        }
        if !feeds.isEmpty {
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                     attributes: [.posixPermissions: 0o750])
        }
        guarded.withLock { guarded in
            var statuses: [String: Status] = [:]
            for feed in feeds {
                if let known = guarded.statuses[feed.name], known.url == feed.remote.url {
                    statuses[feed.name] = known
                } else {
                    statuses[feed.name] = Self.readStatus(feed) ?? Status(url: feed.remote.url)
                }
            }
            guarded = (feeds, statuses)
        }
    }

    func status(of name: String) -> Status? { guarded.withLock { $0.statuses[name] } }

    /// Downloads every list that has no copy on disk yet (at start or when a
    /// reload adds one), so that the first policy has them.
    func fetchMissing() {
        let missing = guarded.withLock { $0.feeds }.filter { !FileManager.default.fileExists(atPath: $0.cachePath) }
        for feed in missing { _ = refresh(feed) }
    }

    func stop() { stopping.store(true, ordering: .relaxed) }

    var isStopping: Bool { stopping.load(ordering: .relaxed) }

    /// Refreshes due lists until `running` turns false or `stop`; calls
    /// `changed` after any list got new content.
    func run(while running: @escaping @Sendable () -> Bool, changed: @escaping @Sendable () -> Void) {
        while running(), !isStopping {
            let now = Date()
            let due = guarded.withLock { guarded in
                guarded.feeds.filter { feed in Self.isDue(feed, guarded.statuses[feed.name], now: now) }
            }
            var anyChanged = false
            for feed in due where running() && !isStopping {
                anyChanged = refresh(feed) || anyChanged
            }
            if anyChanged { changed() }
            for _ in 0..<10 where running() { usleep(100_000) }
        }
    }

    /// Due after `refresh` since the last success; after a failure, again
    /// after a tenth of that (at least 10 s, at most `refresh`).
    static func isDue(_ feed: Feed, _ status: Status?, now: Date) -> Bool {
        guard let status, let attempt = status.lastAttempt else { return true }
        let interval = TimeInterval(feed.remote.refreshSeconds)
        if status.lastError != nil {
            return now.timeIntervalSince(attempt) >= min(interval, max(10, interval / 10))
        }
        return now.timeIntervalSince(status.lastSuccess ?? attempt) >= interval
    }

    /// One download; returns true when the cached copy changed.
    @discardableResult
    func refresh(_ feed: Feed) -> Bool {
        var status = guarded.withLock { $0.statuses[feed.name] } ?? Status(url: feed.remote.url)
        let hasCopy = FileManager.default.fileExists(atPath: feed.cachePath)
        status.lastAttempt = Date()
        var changed = false
        let result = HTTPFetcher.fetch(feed.remote.url, etag: hasCopy ? status.etag : nil,
                                       lastModified: hasCopy ? status.lastModified : nil,
                                       maximumBytes: feed.remote.maximumBytes, deadlines: deadlines,
                                       isCancelled: { [self] in isStopping })
        switch result {
        case .notModified:
            status.lastSuccess = status.lastAttempt
            status.lastError = nil
        case .failure(let message):
            // Shutdown is not a feed problem worth remembering.
            if isStopping { return false }
            status.lastError = message
            logger.warning("list \(feed.name): \(feed.remote.url): \(message); keeping the previous copy")
        case .content(let body, let etag, let lastModified):
            if let refusal = Self.refusal(of: body, for: feed) {
                status.lastError = "download refused: " + refusal
                logger.warning("list \(feed.name): \(feed.remote.url): download refused: \(refusal); keeping the previous copy")
            } else {
                do {
                    try Self.writeAtomically(Data(body), to: feed.cachePath)
                    status.etag = etag
                    status.lastModified = lastModified
                    status.lastSuccess = status.lastAttempt
                    status.lastError = nil
                    changed = true
                    logger.info("list \(feed.name): fetched \(body.count) bytes")
                } catch {
                    status.lastError = "cannot write \(feed.cachePath): \(error)"
                }
            }
        }
        store(status, for: feed)
        return changed
    }

    /// Why a download must not replace the cached copy (binary content, no
    /// entry, mostly unreadable: an error page, a truncated or garbled file),
    /// or nil. The same checks the compiler makes of every list.
    static func refusal(of body: [UInt8], for feed: Feed) -> String? {
        if let binary = ListHealth.binaryContent(body.span, list: feed.name, file: feed.remote.url) {
            return describe(binary)
        }
        let report = ListParser.read(body.span, format: feed.format, file: feed.remote.url,
                                     matchSubdomains: feed.matchSubdomains) { _, _ in }
        if let collapse = ListHealth.collapse(report, list: feed.name, file: feed.remote.url, allowEmpty: feed.allowEmpty) {
            return describe(collapse)
        }
        return nil
    }

    private static func describe(_ diagnostic: Diagnostic) -> String {
        diagnostic.message + (diagnostic.line > 0 ? " (line \(diagnostic.line))" : "")
    }

    private func store(_ status: Status, for feed: Feed) {
        guarded.withLock { $0.statuses[feed.name] = status }
        if let data = try? Self.encoder.encode(status) {
            try? Self.writeAtomically(data, to: feed.cachePath + ".meta")
        }
    }

    static func readStatus(_ feed: Feed) -> Status? {
        guard let bytes = try? readFileBytes(feed.cachePath + ".meta", maximumBytes: 64 << 10),
              let status = try? decoder.decode(Status.self, from: Data(bytes)), status.url == feed.remote.url else { return nil }
        return status
    }

    /// Write to a temporary file and rename, so a reader never sees half a list.
    static func writeAtomically(_ data: Data, to path: String) throws {
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o640]) else {
            throw DaemonError(description: "cannot create \(temporary)")
        }
        if rename(temporary, path) != 0 {
            throw DaemonError(description: "cannot rename \(temporary): \(String(cString: strerror(errno)))")
        }
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }()
    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()
}
