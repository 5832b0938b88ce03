// SPDX-License-Identifier: GPL-2.0-or-later
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NetfilterQueue
import Synchronization

/// Conditional HTTP(S) GETs of remote lists, each waited for on the calling
/// thread, with hard bounds: the body is refused the moment it passes
/// `maximumBytes` (never more than that plus one piece is held), the
/// connection, a stall and the whole transfer have deadlines, and `shutdown`
/// ends a fetch in progress at once. AsyncHTTPClient does the protocol work
/// (TLS with the system trust store, redirects, decompression) on an event
/// loop of its own, created with the first fetch.
final class HTTPFetcher: Sendable {
    enum Result: Sendable, Equatable {
        case notModified
        case content([UInt8], etag: String?, lastModified: String?)
        case failure(String)
    }

    /// How long a fetch may take.
    struct Deadlines: Sendable {
        var connectSeconds = 10
        /// No byte for this long fails the fetch.
        var stallSeconds = 10
        var totalSeconds = 60

        static let standard = Deadlines()
    }

    /// Redirects followed before a fetch fails (libcurl's limit here before).
    static let maximumRedirects = 5

    private enum ClientState {
        case notStarted
        case running(HTTPClient, MultiThreadedEventLoopGroup)
        case shutDown
    }

    let deadlines: Deadlines
    private let clientState = Mutex<ClientState>(.notStarted)

    init(deadlines: Deadlines = .standard) {
        self.deadlines = deadlines
    }

    deinit { shutdown() }

    /// Fetches `url`; `etag` and `lastModified` make the request conditional.
    /// Returns when the fetch has ended, at the latest after the total deadline.
    func fetch(_ url: String, etag: String?, lastModified: String?, maximumBytes: Int) -> Result {
        guard let client = startedClient() else { return .failure(Self.stopping) }
        var headers = HTTPHeaders()
        headers.add(name: "User-Agent", value: "dnsgate/\(Daemon.version)")
        // What the client decompresses; max_size counts the decompressed body.
        headers.add(name: "Accept-Encoding", value: "gzip, deflate")
        if let etag { headers.add(name: "If-None-Match", value: etag) }
        if let lastModified { headers.add(name: "If-Modified-Since", value: lastModified) }
        let request: HTTPClient.Request
        do {
            request = try HTTPClient.Request(url: url, method: .GET, headers: headers)
        } catch {
            return .failure(describe(error, maximumBytes: maximumBytes))
        }
        let download = Download(maximumBytes: maximumBytes)
        // The deadline covers the whole transfer, redirects and body included.
        let task = client.execute(request: request, delegate: download,
                                  deadline: .now() + .seconds(Int64(deadlines.totalSeconds)))
        do {
            // The calling thread is the feed thread, never one of the client's event loops.
            return try task.wait()
        } catch {
            return .failure(describe(error, maximumBytes: maximumBytes))
        }
    }

    /// Ends the fetch in progress (it fails at once) and any later one; returns
    /// without waiting for the client to wind down, so shutdown never waits on a feed.
    func shutdown() {
        let previous = clientState.withLock { state in
            defer { state = .shutDown }
            return state
        }
        guard case .running(let client, let group) = previous else { return }
        client.shutdown { _ in group.shutdownGracefully { _ in } }
    }

    /// The client, created on first use: a daemon without remote lists runs no
    /// event loop for them. Nil once shut down.
    private func startedClient() -> HTTPClient? {
        clientState.withLock { state in
            switch state {
            case .running(let client, _):
                return client
            case .shutDown:
                return nil
            case .notStarted:
                let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
                // Downloads, TLS and decompression yield to the workers on a shared core.
                group.next().execute {
                    CurrentThread.name("dnsgate-fetch")
                    CurrentThread.lowerPriority()
                }
                let client = HTTPClient(eventLoopGroupProvider: .shared(group), configuration: makeConfiguration())
                state = .running(client, group)
                return client
            }
        }
    }

    private func makeConfiguration() -> HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .follow(max: Self.maximumRedirects, allowCycles: false),
            timeout: .init(connect: .seconds(Int64(deadlines.connectSeconds)),
                           read: .seconds(Int64(deadlines.stallSeconds))),
            // The size limit is max_size, counted by `Download` as the decompressed body arrives.
            decompression: .enabled(limit: .none))
        // A refused connection is reported at once; the feed thread has its own retry schedule.
        configuration.connectionPool.retryConnectionEstablishment = false
        return configuration
    }

    static let stopping = "cancelled: dnsgate is stopping"

    static func tooLarge(_ maximumBytes: Int) -> String {
        "larger than max_size (\(maximumBytes) bytes); download aborted"
    }

    /// Why a fetch failed, as `stats` and the log report it.
    private func describe(_ error: any Error, maximumBytes: Int) -> String {
        switch error {
        case let refusal as Refusal:
            switch refusal {
            case .tooLarge: return Self.tooLarge(maximumBytes)
            case .status(let code): return "HTTP \(code)"
            }
        case let failure as NIOConnectionError:
            let reasons = failure.connectionErrors.map { "\($0.error)" }
                + [failure.dnsAError, failure.dnsAAAAError].compactMap { $0.map { "\($0)" } }
            return "cannot connect to \(failure.host) port \(failure.port)"
                + (reasons.isEmpty ? "" : ": " + reasons.joined(separator: "; "))
        case let error as HTTPClientError:
            switch error {
            case .cancelled, .alreadyShutdown: return Self.stopping
            case .connectTimeout: return "no connection within \(deadlines.connectSeconds) s"
            case .readTimeout: return "nothing received for \(deadlines.stallSeconds) s; download abandoned"
            case .deadlineExceeded: return "not finished within \(deadlines.totalSeconds) s; download abandoned"
            case .redirectLimitReached: return "more than \(Self.maximumRedirects) redirects"
            case .redirectCycleDetected: return "redirect loop"
            case .invalidURL, .emptyHost, .emptyScheme: return "not a usable http(s) URL"
            case .remoteConnectionClosed: return "connection closed before the response was complete"
            default: return "\(error)"
            }
        case let error as IOError:
            return "connection failed: " + String(cString: strerror(error.errnoCode))
        default:
            return Self.tlsReasons(in: "\(error)").map { "TLS handshake failed: " + $0 } ?? "\(error)"
        }
    }

    /// BoringSSL's reasons in a TLS error's text (CERTIFICATE_VERIFY_FAILED,
    /// WRONG_VERSION_NUMBER), without the codes and source paths around them;
    /// nil when it names none.
    static func tlsReasons(in text: String) -> String? {
        let marker = "OPENSSL_internal:"
        let reasons = text.split(separator: marker).dropFirst().compactMap { $0.split(separator: " ").first }
        return reasons.isEmpty ? nil : reasons.joined(separator: ", ")
    }

    /// Why `Download` stopped a transfer itself.
    private enum Refusal: Error {
        case tooLarge
        /// Not 200 or 304: an error page is not a list, and its body is not read.
        case status(UInt)
    }

    /// One transfer's response, collected on the client's event loop: the head
    /// of the final response (redirects are followed before it) and the body,
    /// piece by piece as it arrives.
    private final class Download: HTTPClientResponseDelegate {
        typealias Response = Result

        private struct State {
            var status: UInt = 0
            var body: [UInt8] = []
            var etag: String?
            var lastModified: String?
            /// The response's Content-Length, to reserve the body at once.
            var declaredLength: Int?
        }

        let maximumBytes: Int
        private let collected = Mutex(State())

        init(maximumBytes: Int) {
            self.maximumBytes = maximumBytes
        }

        func didReceiveHead(task: HTTPClient.Task<Result>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
            let status = head.status.code
            guard status == 200 || status == 304 else {
                return task.eventLoop.makeFailedFuture(Refusal.status(status))
            }
            // No control characters: the value goes back into a request header.
            func cleaned(_ name: String) -> String? {
                guard let value = head.headers.first(name: name) else { return nil }
                // Printable ASCII only: a validator the client library refuses to send
                // back would make every later conditional request fail.
                let text = String(value.filter { (0x20...0x7e).contains($0.asciiValue ?? 0) })
                    .trimmed(of: " \t")
                return text.isEmpty ? nil : text
            }
            let declared = head.headers.first(name: "Content-Length").flatMap { Int($0) }.flatMap { $0 >= 0 ? $0 : nil }
            // A body declared too large is refused before a byte of it is read.
            if status == 200, let declared, declared > maximumBytes {
                return task.eventLoop.makeFailedFuture(Refusal.tooLarge)
            }
            collected.withLock { state in
                state.status = status
                state.etag = cleaned("ETag")
                state.lastModified = cleaned("Last-Modified")
                state.declaredLength = declared
            }
            return task.eventLoop.makeSucceededVoidFuture()
        }

        func didReceiveBodyPart(task: HTTPClient.Task<Result>, _ part: ByteBuffer) -> EventLoopFuture<Void> {
            // Refused before it is kept: the body never holds more than the limit.
            let kept = collected.withLock { state in
                let needed = state.body.count + part.readableBytes
                guard needed <= maximumBytes else { return false }
                if needed > state.body.capacity {
                    state.body.reserveCapacity(Self.nextCapacity(for: needed, state: state, maximumBytes: maximumBytes))
                }
                state.body.append(contentsOf: part.readableBytesView)
                return true
            }
            return kept ? task.eventLoop.makeSucceededVoidFuture() : task.eventLoop.makeFailedFuture(Refusal.tooLarge)
        }

        /// The body's next capacity: the declared length, else doubled; once
        /// past half the limit, the limit itself. The array's own doubling would
        /// reserve up to twice the limit, and a growth from just under the limit
        /// to the limit would briefly hold the body twice.
        private static func nextCapacity(for needed: Int, state: State, maximumBytes: Int) -> Int {
            if let declared = state.declaredLength, (needed...maximumBytes).contains(declared) { return declared }
            let doubled = max(needed, state.body.capacity * 2)
            return doubled > maximumBytes / 2 ? maximumBytes : doubled
        }

        func didFinishRequest(task: HTTPClient.Task<Result>) throws -> Result {
            collected.withLock { state in
                switch state.status {
                case 304:
                    return .notModified
                case 200:
                    // Handed over, not copied: the transfer is done with it.
                    let body = state.body
                    state.body = []
                    return .content(body, etag: state.etag, lastModified: state.lastModified)
                default:
                    return .failure("HTTP \(state.status)")
                }
            }
        }
    }
}

extension String {
    /// Without leading and trailing characters of `set` (no Foundation needed).
    fileprivate func trimmed(of set: String) -> String {
        let start = firstIndex { !set.contains($0) } ?? endIndex
        let end = lastIndex { !set.contains($0) }.map(index(after:)) ?? start
        return String(self[start..<Swift.max(start, end)])
    }
}
