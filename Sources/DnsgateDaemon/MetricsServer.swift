// SPDX-License-Identifier: GPL-2.0-or-later
import DnsgatePolicy
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NetfilterQueue
import Synchronization

/// An answer of the HTTP endpoint.
struct MetricsResponse: Sendable, Equatable {
    var status: HTTPResponseStatus
    var contentType: String
    var body: String
    /// The `Allow` header of a 405.
    var allow: String? = nil
}

/// What each request gets, decided without I/O: `GET /metrics` (the stats
/// socket's `metrics` text), `GET /healthz`, 404 for other paths, 405 for
/// other methods (HEAD is answered like GET, without the body).
struct MetricsRoutes: Sendable {
    static let prometheusContentType = "text/plain; version=0.0.4; charset=utf-8"
    static let textContentType = "text/plain; charset=utf-8"

    /// The Prometheus exposition text.
    let metrics: @Sendable () -> String
    /// Why the daemon is not enforcing; empty when it is.
    let healthProblems: @Sendable () -> [String]

    func respond(method: HTTPMethod, uri: String) -> MetricsResponse {
        let path = uri.prefix { $0 != "?" }
        guard path == "/metrics" || path == "/healthz" else {
            return MetricsResponse(status: .notFound, contentType: Self.textContentType,
                                   body: "not found: dnsgate serves /metrics and /healthz\n")
        }
        guard method == .GET || method == .HEAD else {
            return MetricsResponse(status: .methodNotAllowed, contentType: Self.textContentType,
                                   body: "method not allowed: use GET\n", allow: "GET, HEAD")
        }
        if path == "/metrics" {
            return MetricsResponse(status: .ok, contentType: Self.prometheusContentType, body: metrics())
        }
        let problems = healthProblems()
        guard problems.isEmpty else {
            return MetricsResponse(status: .serviceUnavailable, contentType: Self.textContentType,
                                   body: problems.map { "unhealthy: \($0)\n" }.joined())
        }
        return MetricsResponse(status: .ok, contentType: Self.textContentType, body: "ok\n")
    }
}

/// The HTTP endpoint for Prometheus (`metrics_listen`). It runs on an event
/// loop thread of its own, at the helpers' lower priority: not the TCP
/// relay's, whose loop carries DNS over TCP, because building a snapshot
/// blocks (it reads /proc, and with `on_overload: pass` runs iptables).
/// A client is bounded in what it can hold: NIO's decoder limits the request
/// head, `maximumConnections` are served at once, and each exchange (from the
/// connection or the last answer to the next answer written) has
/// `exchangeTimeout`, which closes idle, trickling and non-reading clients.
final class MetricsServer: Sendable {
    static let maximumConnections = 64
    static let exchangeTimeout = TimeAmount.seconds(10)
    /// Bodies are read and thrown away; one this long ends the connection.
    static let maximumBodyBytes = 64 << 10
    static let decoderLimits: NIOHTTPDecoderLimitConfiguration = {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderFieldSize = 8 << 10
        limits.maxHeaderListSize = 16 << 10
        limits.maxHeaderFieldCount = 64
        return limits
    }()

    /// Connections open now (admitted ones only).
    let openConnections = Atomic<Int>(0)
    private let state = Mutex<State>(State())

    private struct State {
        /// Set by `start` and cleared by `stop`; without it `serve` does nothing.
        var routes: MetricsRoutes?
        /// Made on first use, so that without `metrics_listen` no thread exists.
        var group: MultiThreadedEventLoopGroup?
        var listening: (address: ServerAddress, channel: Channel)?
    }

    private struct TooManyConnections: Error {}

    init() {}

    /// Begins answering with `routes`, on `address` if there is one (see `serve`).
    func start(routes: MetricsRoutes, on address: ServerAddress?) throws {
        state.withLock { $0.routes = routes }
        try serve(on: address)
    }

    /// The address served now, if any.
    var address: ServerAddress? { state.withLock { $0.listening?.address } }

    /// Serves on `address`, or stops serving when it is nil; nothing happens
    /// when it is the address served already. The new address is bound before
    /// the old one is closed, so when the bind fails the old one still serves
    /// (and the error is thrown); only when the old socket holds the port
    /// itself (`0.0.0.0:9153` to `192.0.2.1:9153`) is it closed first, and
    /// bound again if the new one still fails. Before `start`, does nothing.
    /// Waits for the binds: never call it on an event loop (NIO traps).
    func serve(on address: ServerAddress?) throws {
        try state.withLock { state in
            guard let routes = state.routes, state.listening?.address != address else { return }
            guard let address else {
                if let previous = state.listening { try? previous.channel.close().wait() }
                state.listening = nil
                return
            }
            let group = state.group ?? Self.makeGroup()
            state.group = group
            let channel: Channel
            do {
                channel = try bind(address, on: group, routes: routes)
            } catch let error as IOError where error.errnoCode == EADDRINUSE {
                guard let previous = state.listening, previous.address.port == address.port else { throw error }
                try? previous.channel.close().wait()
                state.listening = nil
                do {
                    channel = try bind(address, on: group, routes: routes)
                } catch {
                    if let restored = try? bind(previous.address, on: group, routes: routes) {
                        state.listening = (previous.address, restored)
                    }
                    throw error
                }
            }
            if let previous = state.listening { try? previous.channel.close().wait() }
            state.listening = (address, channel)
        }
    }

    /// Closes the listener and every connection.
    func stop() {
        let group = state.withLock { state in
            defer { state = State() }
            return state.group
        }
        try? group?.syncShutdownGracefully()
    }

    private static func makeGroup() -> MultiThreadedEventLoopGroup {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        group.next().execute {
            CurrentThread.name("dnsgate-http")
            CurrentThread.lowerPriority()
        }
        return group
    }

    private func bind(_ address: ServerAddress, on group: MultiThreadedEventLoopGroup,
                      routes: MetricsRoutes) throws -> Channel {
        let socketAddress = try SocketAddress(ipAddress: address.address.description, port: Int(address.port))
        return try ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { try admit(channel, routes: routes) }
            }
            .bind(to: socketAddress).wait()
    }

    /// Past `maximumConnections`, a new connection is closed at once (the
    /// bootstrap closes a channel whose initializer fails).
    private func admit(_ channel: Channel, routes: MetricsRoutes) throws {
        guard openConnections.add(1, ordering: .relaxed).newValue <= Self.maximumConnections else {
            openConnections.subtract(1, ordering: .relaxed)
            throw TooManyConnections()
        }
        channel.closeFuture.whenComplete { [self] _ in openConnections.subtract(1, ordering: .relaxed) }
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
            withEncoderConfiguration: .init(), withDecoderLimitConfiguration: Self.decoderLimits)
        try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(routes: routes))
    }
}

/// One connection: answers each request once it is read whole, and closes
/// the connection when an exchange outlasts `MetricsServer.exchangeTimeout`.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let routes: MetricsRoutes
    private var context: ChannelHandlerContext?
    private var request: HTTPRequestHead?
    private var bodyBytes = 0
    private var deadline: Scheduled<Void>?

    init(routes: MetricsRoutes) { self.routes = routes }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        startExchange(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
            bodyBytes = 0
        case .body(let body):
            bodyBytes += body.readableBytes
            if bodyBytes > MetricsServer.maximumBodyBytes { context.close(promise: nil) }
        case .end:
            guard let head = request else { return }
            request = nil
            respond(to: head, context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    /// The client has until the deadline to send a request and take its answer.
    private func startExchange(_ context: ChannelHandlerContext) {
        deadline?.cancel()
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: MetricsServer.exchangeTimeout) {
            handler.value.context?.close(promise: nil)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let answer = routes.respond(method: head.method, uri: head.uri)
        let body = context.channel.allocator.buffer(string: answer.body)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: answer.contentType)
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        headers.add(name: "Cache-Control", value: "no-store")
        if let allow = answer.allow { headers.add(name: "Allow", value: allow) }
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: answer.status,
                                                             headers: headers))), promise: nil)
        if head.method != .HEAD { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { result in
            guard let context = handler.value.context else { return }
            if keepAlive, case .success = result {
                handler.value.startExchange(context)
            } else {
                context.close(promise: nil)
            }
        }
    }
}
