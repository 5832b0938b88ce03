// SPDX-License-Identifier: GPL-2.0-or-later
import DnsgatePolicy
import Foundation
import Logging
import NetfilterQueue
import Synchronization

/// Remote lists: fetched with conditional requests, checked, and kept as the
/// last good copy on disk (`cache_dir/NAME.list`, metadata in `NAME.list.meta`),
/// so that neither a restart nor a feed outage empties the policy. Fetching
/// happens on the feed thread alone, never on a path a packet or an operator
/// waits on: start-up, reload and shutdown use what is on disk, and a changed
/// list triggers a reload once it is there.
final class Feeds: Sendable {
    struct Feed: Sendable, Equatable {
        var name: String
        var remote: RemoteSource
        var cachePath: String
        var format: ListFormat
        var matchSubdomains: Bool
        var kind = ListKind.domains
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

    /// Reported for a list until its first download succeeds.
    static let noCopyYet = "no copy yet: the list is empty until a download succeeds"

    private let guarded = Mutex<(feeds: [Feed], statuses: [String: Status])>(([], [:]))
    /// Set at shutdown: the fetch in progress is abandoned at once and no
    /// other starts.
    private let stopping = Atomic<Bool>(false)
    let logger: Logger
    /// Every download, on the feed thread alone.
    private let fetcher: HTTPFetcher

    init(logger: Logger, deadlines: HTTPFetcher.Deadlines = .standard) {
        self.logger = logger
        fetcher = HTTPFetcher(deadlines: deadlines)
    }

    /// Takes the remote lists of a (re)loaded config; statuses of lists that
    /// stay are kept, others are read from disk.
    func configure(_ config: DnsgateConfig) {
        // Absolute: the config reader resolved it, as the compiler sees it.
        let directory = config.cacheDirectory
        let feeds: [Feed] = (config.domainLists + config.ipLists).compactMap { list in
            guard case .url(let remote) = list.source else { return nil }
            return Feed(name: list.name, remote: remote, cachePath: list.cachePath(in: directory), format: list.format,
                        matchSubdomains: list.matchSubdomains, kind: list.kind, allowEmpty: list.allowEmpty)
        }
        if !feeds.isEmpty {
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                     attributes: [.posixPermissions: 0o750])
        }
        let copies = Dictionary(feeds.map { ($0.name, Self.hasUsableCopy($0)) }, uniquingKeysWith: { first, _ in first })
        guarded.withLock { guarded in
            var statuses: [String: Status] = [:]
            for feed in feeds {
                if let known = guarded.statuses[feed.name], known.url == feed.remote.url {
                    statuses[feed.name] = known
                    continue
                }
                var status = Self.readStatus(feed) ?? Status(url: feed.remote.url)
                if copies[feed.name] != true {
                    // Fetched at once, whenever it was last tried, and reported until it is there.
                    status.lastAttempt = nil
                    if status.lastError == nil { status.lastError = Self.noCopyYet }
                }
                statuses[feed.name] = status
            }
            guarded = (feeds, statuses)
        }
    }

    func status(of name: String) -> Status? { guarded.withLock { $0.statuses[name] } }

    /// Starts the feed thread. It is never joined: `stop` abandons the fetch
    /// in progress, and the process may exit while the thread still winds down.
    func start(changed: @escaping @Sendable () -> Void) {
        startThread("dnsgate-feeds", helper: true) { [self] in run(changed: changed) }
    }

    /// Ends the fetch in progress, without waiting for it.
    func stop() {
        stopping.store(true, ordering: .relaxed)
        fetcher.shutdown()
    }

    var isStopping: Bool { stopping.load(ordering: .relaxed) }

    /// Refreshes due lists until `stop`; calls `changed` after any list got
    /// new content.
    func run(changed: @Sendable () -> Void) {
        while !isStopping {  // ends at shutdown
            let now = Date()
            let (feeds, statuses) = guarded.withLock { ($0.feeds, $0.statuses) }
            let due = feeds.filter { Self.isDue($0, statuses[$0.name], hasCopy: Self.hasUsableCopy($0), now: now) }
            var anyChanged = false
            for feed in due where !isStopping {
                anyChanged = refresh(feed) || anyChanged
            }
            if anyChanged, !isStopping { changed() }
            for _ in 0..<10 where !isStopping { usleep(100_000) }
        }
    }

    /// Lists whose cached copy the compiler could not use (none, or one that
    /// collapsed): fetched at once, without conditional headers, so that a
    /// server's 304 cannot keep a bad copy in place.
    func copiesUnusable(_ names: [String]) {
        guard !names.isEmpty else { return }
        guarded.withLock { guarded in
            for name in names {
                guard var status = guarded.statuses[name] else { continue }
                status.etag = nil
                status.lastModified = nil
                status.lastAttempt = nil
                guarded.statuses[name] = status
            }
        }
    }

    /// Due after `refresh` since the last success; after a failure, again
    /// after a tenth of that (at least 10 s, at most `refresh`). A list with no
    /// copy yet is tried every 10 s (at most `refresh`) until it has one.
    static func isDue(_ feed: Feed, _ status: Status?, hasCopy: Bool, now: Date) -> Bool {
        guard let status, let attempt = status.lastAttempt else { return true }
        let interval = TimeInterval(feed.remote.refreshSeconds)
        if !hasCopy { return now.timeIntervalSince(attempt) >= min(interval, 10) }
        if status.lastError != nil {
            return now.timeIntervalSince(attempt) >= min(interval, max(10, interval / 10))
        }
        return now.timeIntervalSince(status.lastSuccess ?? attempt) >= interval
    }

    /// A cached copy within the list's size limit (one over a since lowered
    /// `max_size` is fetched again in full, not confirmed by a 304).
    static func hasUsableCopy(_ feed: Feed) -> Bool {
        var info = stat()
        return stat(feed.cachePath, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
            && Int(info.st_size) <= feed.remote.maximumBytes
    }

    /// One download; returns true when the cached copy changed.
    @discardableResult
    func refresh(_ feed: Feed) -> Bool {
        var status = guarded.withLock { $0.statuses[feed.name] } ?? Status(url: feed.remote.url)
        let hasCopy = Self.hasUsableCopy(feed)
        status.lastAttempt = Date()
        var changed = false
        let result = fetcher.fetch(feed.remote.url, etag: hasCopy ? status.etag : nil,
                                   lastModified: hasCopy ? status.lastModified : nil,
                                   maximumBytes: feed.remote.maximumBytes)
        switch result {
        case .notModified where !hasCopy || (status.etag == nil && status.lastModified == nil):
            // Not modified since what? Nothing was asked conditionally: no copy came.
            status.lastError = "HTTP 304 to a request without validators; no copy yet"
        case .notModified:
            status.lastSuccess = status.lastAttempt
            status.lastError = nil
        case .failure(let message):
            // Shutdown is not a feed problem worth remembering.
            if isStopping { return false }
            status.lastError = hasCopy ? message : message + "; " + Self.noCopyYet
            logger.warning("list \(feed.name): \(feed.remote.url): \(message); \(hasCopy ? "keeping the previous copy" : "no copy yet")")
        case .content(let body, let etag, let lastModified):
            if let refusal = Self.refusal(of: body, for: feed) {
                status.lastError = "download refused: " + refusal + (hasCopy ? "" : "; " + Self.noCopyYet)
                logger.warning("list \(feed.name): \(feed.remote.url): download refused: \(refusal); \(hasCopy ? "keeping the previous copy" : "no copy yet")")
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
        if let binary = ListHealth.binaryContent(body.span, list: feed.name, file: feed.remote.url, kind: feed.kind.noun) {
            return describe(binary)
        }
        let report = feed.kind == .domains
            ? ListParser.read(body.span, format: feed.format, file: feed.remote.url,
                              matchSubdomains: feed.matchSubdomains) { _, _ in }
            : AddressListParser.read(body.span, format: feed.format, file: feed.remote.url) { _, _, _ in }
        if let collapse = ListHealth.collapse(report, list: feed.name, file: feed.remote.url, allowEmpty: feed.allowEmpty,
                                              kind: feed.kind.noun) {
            return describe(collapse)
        }
        return nil
    }

    private static func describe(_ diagnostic: Diagnostic) -> String {
        diagnostic.message + (diagnostic.line > 0 ? " (line \(diagnostic.line))" : "")
    }

    private func store(_ status: Status, for feed: Feed) {
        guarded.withLock { $0.statuses[feed.name] = status }
        Self.writeMetadata(status, besideCopy: feed.cachePath)
    }

    static func readStatus(_ feed: Feed) -> Status? {
        guard let status: Status = readMetadata(besideCopy: feed.cachePath), status.url == feed.remote.url else { return nil }
        return status
    }

    /// A remote list's or zone's status, kept next to its copy (`NAME.list.meta`).
    static func writeMetadata(_ status: some Encodable, besideCopy path: String) {
        if let data = try? encoder.encode(status) { try? writeAtomically(data, to: path + ".meta") }
    }

    static func readMetadata<Value: Decodable>(besideCopy path: String) -> Value? {
        guard let bytes = try? readFileBytes(path + ".meta", maximumBytes: 64 << 10) else { return nil }
        return try? decoder.decode(Value.self, from: Data(bytes))
    }

    /// Write to a temporary file and rename, so a reader never sees half a list.
    /// The data reaches the disk before the rename, and the rename before this
    /// returns: a power cut leaves the old copy or the new one, never a torn one.
    static func writeAtomically(_ data: Data, to path: String) throws {
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o640]) else {
            throw DaemonError(description: "cannot create \(temporary)")
        }
        do {
            let handle = try FileHandle(forUpdating: URL(fileURLWithPath: temporary))
            defer { try? handle.close() }
            try handle.synchronize()
        } catch {
            throw DaemonError(description: "cannot write \(temporary) to disk: \(error)")
        }
        if rename(temporary, path) != 0 {
            throw DaemonError(description: "cannot rename \(temporary): \(String(cString: strerror(errno)))")
        }
        let folder = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY)
        if folder >= 0 {
            _ = fsync(folder)
            close(folder)
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

/// Starts a thread named `name` for `top` and the kernel. A `helper` (log,
/// stats, feeds, zones, NOTIFY) runs at a lower priority, so that it yields
/// to the queue workers on a shared core. `group`, when given, is left when
/// `body` returns; otherwise the thread is never joined.
func startThread(_ name: String, group: DispatchGroup? = nil, helper: Bool = false,
                 _ body: @escaping @Sendable () -> Void) {
    group?.enter()
    let thread = Thread {
        // Foundation's Thread.name does not reach the kernel on Linux.
        CurrentThread.name(name)
        if helper { CurrentThread.lowerPriority() }
        body()
        group?.leave()
    }
    thread.name = name
    thread.start()
}
