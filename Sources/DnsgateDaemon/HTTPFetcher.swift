// SPDX-License-Identifier: GPL-2.0-or-later
import CHTTPFetch

/// One conditional HTTP(S) GET of a remote list, on the calling thread, with
/// hard bounds: the body is refused the moment it passes `maximumBytes` (never
/// more than that plus one piece is held), the connection, a stall and the
/// whole transfer have deadlines, and `isCancelled` stops it within a second
/// (shutdown). libcurl does the protocol work (TLS with the system trust
/// store, redirects, compression).
enum HTTPFetcher {
    enum Result: Sendable, Equatable {
        case notModified
        case content([UInt8], etag: String?, lastModified: String?)
        case failure(String)
    }

    /// How long a fetch may take.
    struct Deadlines: Sendable {
        var connectSeconds = 10
        /// Less than a byte a second for this long fails the fetch.
        var stallSeconds = 10
        var totalSeconds = 60

        static let standard = Deadlines()
    }

    static func fetch(_ url: String, etag: String?, lastModified: String?, maximumBytes: Int,
                      deadlines: Deadlines = .standard, isCancelled: @escaping () -> Bool) -> Result {
        let transfer = Transfer(maximumBytes: maximumBytes, isCancelled: isCancelled)
        var outcome = dg_http_outcome()
        let agent = "dnsgate/\(Daemon.version)"
        withOptionalCString(etag) { etag in
            withOptionalCString(lastModified) { lastModified in
                url.withCString { url in
                    agent.withCString { agent in
                        var request = dg_http_request(
                            url: url, user_agent: agent, if_none_match: etag, if_modified_since: lastModified,
                            maximum_bytes: Int64(maximumBytes), connect_timeout_ms: deadlines.connectSeconds * 1000,
                            stall_seconds: deadlines.stallSeconds, total_timeout_ms: deadlines.totalSeconds * 1000)
                        withExtendedLifetime(transfer) {
                            dg_http_get(&request, Transfer.takeBody, Transfer.takeHeader, Transfer.pollCancelled,
                                        Unmanaged.passUnretained(transfer).toOpaque(), &outcome)
                        }
                    }
                }
            }
        }
        return transfer.result(of: outcome)
    }

    private static func withOptionalCString<R>(_ text: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
        guard let text else { return body(nil) }
        return text.withCString { body($0) }
    }

    /// The state of one transfer, touched only on the fetching thread (libcurl
    /// calls back on the thread that runs the transfer).
    private final class Transfer {
        let maximumBytes: Int
        let isCancelled: () -> Bool
        var body: [UInt8] = []
        var exceeded = false
        var cancelled = false
        var etag: String?
        var lastModified: String?
        /// The response's Content-Length, to reserve the body at once.
        var declaredLength: Int?

        init(maximumBytes: Int, isCancelled: @escaping () -> Bool) {
            self.maximumBytes = maximumBytes
            self.isCancelled = isCancelled
        }

        /// The body's next capacity: the declared length, else doubled; once
        /// past half the limit, the limit itself. The array's own doubling would
        /// reserve up to twice the limit, and a growth from just under the limit
        /// to the limit would briefly hold the body twice.
        func nextCapacity(for needed: Int) -> Int {
            if let declared = declaredLength, (needed...maximumBytes).contains(declared) { return declared }
            let doubled = max(needed, body.capacity * 2)
            return doubled > maximumBytes / 2 ? maximumBytes : doubled
        }

        static func from(_ context: UnsafeMutableRawPointer?) -> Transfer {
            Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
        }

        static let takeBody: dg_http_body_fn = { context, bytes, count in
            let transfer = from(context)
            // Refused before it is kept: the body never holds more than the limit.
            let needed = transfer.body.count + count
            guard needed <= transfer.maximumBytes else {
                transfer.exceeded = true
                return 1
            }
            if needed > transfer.body.capacity { transfer.body.reserveCapacity(transfer.nextCapacity(for: needed)) }
            if let bytes, count > 0 { transfer.body.append(contentsOf: UnsafeBufferPointer(start: bytes, count: count)) }
            return 0
        }

        static let takeHeader: dg_http_header_fn = { context, line, count in
            guard let line else { return }
            let transfer = from(context)
            let text = String(decoding: UnsafeRawBufferPointer(start: line, count: count), as: UTF8.self)
            // A new response (after a redirect) starts over.
            if text.hasPrefix("HTTP/") {
                transfer.etag = nil
                transfer.lastModified = nil
                transfer.declaredLength = nil
                return
            }
            guard let colon = text.firstIndex(of: ":") else { return }
            let name = text[..<colon].lowercased()
            // No control characters: the value goes back into a request header.
            let value = String(text[text.index(after: colon)...].filter { ($0.asciiValue ?? 0x20) >= 0x20 })
                .trimmed(of: " \t")
            if name == "etag", !value.isEmpty { transfer.etag = value }
            if name == "last-modified", !value.isEmpty { transfer.lastModified = value }
            if name == "content-length", let length = Int(value), length >= 0 { transfer.declaredLength = length }
        }

        static let pollCancelled: dg_http_cancelled_fn = { context in
            let transfer = from(context)
            if transfer.isCancelled() { transfer.cancelled = true }
            return transfer.cancelled ? 1 : 0
        }

        func result(of outcome: dg_http_outcome) -> Result {
            if cancelled { return .failure("cancelled: dnsgate is stopping") }
            if exceeded || outcome.curl_code == DG_HTTP_TOO_LARGE {
                return .failure("larger than max_size (\(maximumBytes) bytes); download aborted")
            }
            if outcome.status >= 400 { return .failure("HTTP \(outcome.status)") }
            if outcome.curl_code != 0 {
                let message = withUnsafeBytes(of: outcome.message) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                return .failure(message)
            }
            switch outcome.status {
            case 304: return .notModified
            case 200: return .content(body, etag: etag, lastModified: lastModified)
            default: return .failure("HTTP \(outcome.status)")
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
