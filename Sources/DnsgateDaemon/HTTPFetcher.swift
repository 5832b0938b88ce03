// SPDX-License-Identifier: GPL-2.0-or-later
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Synchronization

/// One conditional HTTP(S) GET with a size cap that is enforced while the body
/// streams in, not after.
enum HTTPFetcher {
    enum Result: Sendable {
        case notModified
        case content(Data, etag: String?, lastModified: String?)
        case failure(String)
    }

    static func fetch(_ url: URL, etag: String?, lastModified: String?, maximumBytes: Int,
                      timeout: TimeInterval) -> Result {
        var request = URLRequest(url: url, cachePolicy: .reloadIgnoringLocalCacheData, timeoutInterval: timeout)
        request.setValue("dnsgate/\(Daemon.version)", forHTTPHeaderField: "User-Agent")
        if let etag { request.setValue(etag, forHTTPHeaderField: "If-None-Match") }
        if let lastModified { request.setValue(lastModified, forHTTPHeaderField: "If-Modified-Since") }
        let delegate = Delegate(maximumBytes: maximumBytes)
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = timeout
        configuration.timeoutIntervalForResource = timeout
        let session = URLSession(configuration: configuration, delegate: delegate, delegateQueue: nil)
        session.dataTask(with: request).resume()
        let finished = delegate.done.wait(timeout: .now() + timeout + 5) == .success
        session.invalidateAndCancel()
        guard finished else { return .failure("no answer within \(Int(timeout))s") }
        return delegate.result
    }

    private final class Delegate: NSObject, URLSessionDataDelegate, @unchecked Sendable {
        // @unchecked: every mutable field is behind `state`.
        struct State {
            var body = Data()
            var response: HTTPURLResponse?
            var failure: String?
        }
        let maximumBytes: Int
        let done = DispatchSemaphore(value: 0)
        let state = Mutex(State())

        init(maximumBytes: Int) { self.maximumBytes = maximumBytes }

        func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                        completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
            let http = response as? HTTPURLResponse
            let tooLarge = response.expectedContentLength > Int64(maximumBytes)
            state.withLock {
                $0.response = http
                if tooLarge { $0.failure = "larger than max_size (\(response.expectedContentLength) bytes)" }
            }
            completionHandler(tooLarge ? .cancel : .allow)
        }

        func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
            let over = state.withLock { state -> Bool in
                state.body.append(data)
                if state.body.count > maximumBytes {
                    state.failure = "larger than max_size (\(maximumBytes) bytes)"
                    return true
                }
                return false
            }
            if over { dataTask.cancel() }
        }

        func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
            state.withLock { state in
                if state.failure == nil, let error { state.failure = error.localizedDescription }
            }
            done.signal()
        }

        var result: Result {
            state.withLock { state in
                if let failure = state.failure { return .failure(failure) }
                guard let response = state.response else { return .failure("no response") }
                switch response.statusCode {
                case 304: return .notModified
                case 200:
                    return .content(state.body, etag: response.value(forHTTPHeaderField: "ETag"),
                                    lastModified: response.value(forHTTPHeaderField: "Last-Modified"))
                default: return .failure("HTTP \(response.statusCode)")
                }
            }
        }
    }
}
