// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import DnsgatePolicy
import NIOCore
import NIOPosix
import NetfilterQueue
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Connection counters of the TCP relay: written on its event loop only, read
/// by the stats socket. Messages count in the relay's `WorkerCounters`
/// (`received` read, `accepted` relayed to the server).
final class TCPCounters: Sendable {
    let accepted = Atomic<UInt64>(0)
    /// Connections closed at once: over a limit, or not redirected from port 53.
    let refused = Atomic<UInt64>(0)
    let open = Atomic<UInt64>(0)
    let answersRelayed = Atomic<UInt64>(0)
    let upstreamFailures = Atomic<UInt64>(0)
    let idleClosed = Atomic<UInt64>(0)
}

/// DNS over TCP, terminated by the gateway's own kernel: the shipped rules
/// REDIRECT TCP/53 to this listener, so the bytes decided here are the bytes
/// a server would read (the kernel has already dealt with retransmissions,
/// overlaps, urgent data and Fast Open). Every length-prefixed message is
/// decided like a UDP query; a blocked one is answered in the stream with the
/// same forged answer, an allowed one is relayed over dnsgate's own connection
/// to the original destination, and the server's answers are relayed back as
/// they come (pipelined, in any order, RFC 7766).
///
/// Bounded: connections in all and per client, queries awaiting an answer per
/// connection (reading stops past it), idle time. It runs on one event-loop
/// thread of lower priority than the queue workers, so a flood of connections
/// cannot take the UDP path's CPU.
final class TCPRelay: Sendable {
    static let maximumConnections = 1024
    /// Per client address (per /64 for IPv6, which one host can fill).
    static let maximumConnectionsPerClient = 64
    /// Queries relayed and not yet answered, per connection, before reading pauses.
    static let maximumOutstanding = 64
    /// Bytes of queries waiting for the server connection, before reading pauses.
    static let maximumPendingBytes = 256 << 10
    static let idleTimeout = TimeAmount.seconds(10)
    /// However busy, a connection ends after this: a slow drip cannot hold a slot forever.
    static let maximumLifetime = TimeAmount.minutes(2)
    static let connectTimeout = TimeAmount.seconds(5)
    /// How long the server may take to answer before the connection is given up.
    static let upstreamTimeout = TimeAmount.seconds(15)

    let counters: WorkerCounters
    let tcp = TCPCounters()
    let judge: QueryJudge
    let policies: PolicyHolder
    let chaser: TargetChaser
    let mark: UInt32
    private let group: MultiThreadedEventLoopGroup
    private let perClient = Mutex<[IPAddress: Int]>([:])
    private let listeners = Mutex<[Channel]>([])

    init(judgeIndex: Int, policies: PolicyHolder, recorder: DecisionRecorder, chaser: TargetChaser, mark: UInt32,
         undecodable: PacketAction, undecodableAnswer: PacketAction) {
        counters = WorkerCounters(queue: 0)
        judge = QueryJudge(counters: counters, recorder: recorder, index: judgeIndex, undecodable: undecodable,
                           undecodableAnswer: undecodableAnswer)
        self.policies = policies
        self.chaser = chaser
        self.mark = mark
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        group.next().execute { CurrentThread.lowerPriority() }
    }

    /// Listens on `port` on every IPv4 and IPv6 address (the REDIRECT target).
    func start(port: UInt16) throws {
        var bound: [Channel] = []
        for host in ["0.0.0.0", "::"] {
            let bootstrap = ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .childChannelOption(.maxMessagesPerRead, value: 4)
                .childChannelInitializer { [self] channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers([
                            IdleStateHandler(readTimeout: Self.idleTimeout),
                            TCPClientHandler(relay: self),
                        ])
                    }
                }
            let ipv6 = host == "::"
            let configured = ipv6
                ? bootstrap.serverChannelOption(
                    ChannelOptions.Types.SocketOption(level: SocketOptionLevel(IPPROTO_IPV6), name: IPV6_V6ONLY), value: 1)
                : bootstrap
            bound.append(try configured.bind(host: host, port: Int(port)).wait())
        }
        listeners.withLock { $0 = bound }
    }

    func stop() {
        let channels = listeners.withLock { channels in
            defer { channels = [] }
            return channels
        }
        for channel in channels { try? channel.close().wait() }
        try? group.syncShutdownGracefully()
    }

    /// What the per-client limit counts by: the address, or its /64 for IPv6.
    static func limitKey(_ client: IPAddress) -> IPAddress {
        if case .v6(let high, _) = client, client.unmappedIPv4 == nil { return .v6(high: high, low: 0) }
        return client.unmappedIPv4 ?? client
    }

    /// Takes a new connection from `client` if the limits allow it.
    func admit(_ client: IPAddress) -> Bool {
        let key = Self.limitKey(client)
        return perClient.withLock { counts in
            guard tcp.open.value < Self.maximumConnections,
                  counts[key, default: 0] < Self.maximumConnectionsPerClient else { return false }
            counts[key, default: 0] += 1
            tcp.open.store(tcp.open.value + 1, ordering: .relaxed)
            return true
        }
    }

    func release(_ client: IPAddress) {
        let key = Self.limitKey(client)
        perClient.withLock { counts in
            let remaining = counts[key, default: 1] - 1
            counts[key] = remaining > 0 ? remaining : nil
            tcp.open.store(tcp.open.value &- 1, ordering: .relaxed)
        }
    }

    /// Destinations never relayed to: the gateway's loopback (REDIRECT rewrites
    /// a LAN packet's destination before the martian check, so 127.0.0.53 would
    /// otherwise be reachable), unspecified and multicast addresses.
    static func isRelayable(_ destination: IPAddress) -> Bool {
        switch destination.unmappedIPv4 ?? destination {
        case .v4(let value):
            return value >> 24 != 127 && value != 0 && value >> 28 != 0xe
        case .v6(let high, let low):
            // Link-local (fe80::/10) too: a socket would need the interface the query came in on.
            let loopback = high == 0 && low == 1, unspecified = high == 0 && low == 0
            return !loopback && !unspecified && high >> 56 != 0xff && high >> 54 != 0x3fa
        }
    }

    /// A connection to the query's original destination, marked so that the
    /// shipped rules neither redirect nor queue it.
    func connectUpstream(to destination: SocketAddress, on loop: EventLoop,
                         answers: NIOLoopBound<TCPClientHandler>) -> EventLoopFuture<Channel> {
        ClientBootstrap(group: loop)
            .connectTimeout(Self.connectTimeout)
            .channelOption(ChannelOptions.Types.SocketOption(level: SocketOptionLevel(SOL_SOCKET),
                                                             name: SocketOptionName(SO_MARK)),
                           value: Int(mark))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        IdleStateHandler(readTimeout: Self.upstreamTimeout),
                        TCPUpstreamHandler(client: answers),
                    ])
                }
            }
            .connect(to: destination)
    }
}

/// Splits a stream into DNS messages (RFC 1035 §4.2.2: a 2-byte length, then
/// the message). Holds a partial message (at most 64 KiB) and, while the
/// relay pauses, what the last read brought.
struct MessageFramer {
    private var buffer = ByteBuffer()

    mutating func append(_ bytes: inout ByteBuffer) {
        buffer.writeBuffer(&bytes)
    }

    /// The next whole message with its length in front, as it goes on to the
    /// other side unchanged; nil until one is complete.
    mutating func next() -> ByteBuffer? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self),
              buffer.readableBytes >= 2 + Int(length) else {
            buffer.discardReadBytes()
            return nil
        }
        return buffer.readSlice(length: 2 + Int(length))
    }
}

/// One client connection: decides each query, answers blocked ones in the
/// stream and relays the rest. Lives on the relay's event loop.
final class TCPClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let relay: TCPRelay
    private var framer = MessageFramer()
    private var context: ChannelHandlerContext?
    private var client: (address: IPAddress, port: UInt16)?
    /// The client's MAC address from the neighbour table, for groups that
    /// name MACs, and the policy generation it was looked up for.
    private var clientMAC: MACAddress?
    private var clientMACGeneration = -1
    /// The original destination (always port 53).
    private var server: (address: IPAddress, socket: SocketAddress)?
    private var admitted = false
    /// Connection to the server, once asked for; messages wait in `pending` until it is up.
    private var upstream: EventLoopFuture<Channel>?
    private var upstreamChannel: Channel?
    private var pending: [ByteBuffer] = []
    private var pendingBytes = 0
    private var outstanding = 0
    /// Blocked queries waiting for their OVERRIDE CNAME target, answered in the stream when it is known.
    private var chasing = 0
    private var inputClosed = false
    private var readingPaused = false
    /// Whether the server's answers are being read (not while the client takes none).
    private var upstreamReading = true
    private var lifetime: Scheduled<Void>?

    init(relay: TCPRelay) { self.relay = relay }

    func channelActive(context: ChannelHandlerContext) {
        self.context = context
        relay.tcp.accepted.increment()
        guard let remote = context.channel.remoteAddress, let address = remote.ipAddress.flatMap(IPAddress.init),
              let port = remote.port, relay.admit(address) else {
            refuse(context)
            return
        }
        admitted = true
        client = (address, UInt16(port))
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        lifetime = context.eventLoop.scheduleTask(in: TCPRelay.maximumLifetime) {
            loopBound.value.context?.close(promise: nil)
        }
        context.channel.setOption(.autoRead, value: false).whenComplete { _ in }
        OriginalDestination.of(context.channel).whenComplete { result in
            loopBound.value.originalDestinationKnown((try? result.get()) ?? nil)
        }
    }

    /// Only connections redirected from port 53 are relayed: the listener is
    /// no open proxy to other ports, and a direct connection to it is refused.
    private func originalDestinationKnown(_ destination: SocketAddress?) {
        guard let context else { return }
        guard let destination, destination.port == 53, let address = destination.ipAddress.flatMap(IPAddress.init),
              TCPRelay.isRelayable(address) else {
            refuse(context)
            return
        }
        server = (address, destination)
        context.channel.setOption(.autoRead, value: true).whenComplete { _ in }
        drain()
        context.read()
    }

    /// The client's MAC address when the policy in force names MAC addresses:
    /// looked up again after a reload. nil when none is needed; `.none` inside
    /// when it is needed but unknown, and then the connection is refused (the
    /// client falls back to UDP, where the queue reports the MAC), since the
    /// host's group cannot be told.
    private func macAddress(for policy: CompiledPolicy) -> MACAddress?? {
        guard policy.namesMACAddresses, let client else { return .some(nil) }
        if clientMACGeneration != policy.generation {
            clientMAC = NeighbourTable.hardwareAddress(of: client.address.bytes).map(MACAddress.init(value:))
            clientMACGeneration = policy.generation
        }
        return clientMAC.map { .some($0) } ?? .none
    }

    private func refuse(_ context: ChannelHandlerContext) {
        relay.tcp.refused.increment()
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if admitted, let client { relay.release(client.address) }
        admitted = false
        lifetime?.cancel()
        upstream?.whenSuccess { $0.close(promise: nil) }
        self.context = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        framer.append(&bytes)
        drain()
    }

    /// Decides the buffered messages until reading has to pause; what is left
    /// stays in the framer (at most what one read brought) until it resumes.
    private func drain() {
        guard let context else { return }
        while server != nil, !readingPaused, let framed = framer.next() {
            handle(framed, context: context)
            updateReading()
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case ChannelEvent.inputClosed:
            inputClosed = true
            closeIfDone()
        case let idle as IdleStateHandler.IdleStateEvent where idle == .read:
            if outstanding == 0, chasing == 0 {
                relay.tcp.idleClosed.increment()
                context.close(promise: nil)
            }
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    /// Rules on one message (`framed`: its length, then the message) as a UDP
    /// worker would, then relays it, answers it in the stream, or drops it.
    private func handle(_ framed: ByteBuffer, context: ChannelHandlerContext) {
        guard let client, let server else { return }
        let bytes = Array(framed.readableBytesView.dropFirst(2))
        var query = DNSQuery(source: client.address, sourcePort: client.port, destination: server.address,
                             destinationPort: 53, message: 0..<bytes.count, packetLength: bytes.count)
        let decoded = QueryDecoder.decodeMessage(bytes.span, into: &query).map(DecodeResult.notDNS) ?? .query(query)
        let state = relay.policies.state
        guard case .some(let mac) = macAddress(for: state.policy) else {
            refuse(context)
            return
        }
        switch relay.judge.rule(decoded, packet: bytes.span, transport: .tcp, state: state, mac: mac) {
        case .pass:
            forward(framed)
        case .drop:
            break
        case .answer(let question, let kind, let rule, _):
            let policy = state.policy
            let settings = policy.answerSettings, extraText = policy.rules[rule].extraText
            guard let key = TargetChaser.key(for: question, kind: kind) else {
                writeAnswer(to: question, in: bytes, kind: kind, settings: settings, extraText: extraText, chase: nil)
                return
            }
            if let chased = relay.chaser.cached(key) {
                writeAnswer(to: question, in: bytes, kind: kind, settings: settings, extraText: extraText,
                            chase: chased)
                return
            }
            // Answered once the target is known; the connection stays until then.
            chasing += 1
            let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
            relay.chaser.resolve(key) { chased in
                loopBound.eventLoop.execute {
                    let handler = loopBound.value
                    handler.chasing -= 1
                    handler.writeAnswer(to: question, in: bytes, kind: kind, settings: settings, extraText: extraText,
                                        chase: chased)
                    handler.updateReading()
                    handler.closeIfDone()
                }
            }
        }
    }

    /// Writes the forged answer to `question` (read from the message `bytes`) into the stream.
    private func writeAnswer(to question: DNSQuery, in bytes: [UInt8], kind: ForgedAnswerKind,
                             settings: ForgedAnswerSettings, extraText: [UInt8], chase: ChasedTarget?) {
        guard let context else { return }
        var answer = [UInt8](repeating: 0, count: 2 + ForgedAnswerBuilder.outputCapacity(forQueryOf: bytes.count))
        let end: Int?
        do {
            var output = answer.mutableSpan
            end = ForgedAnswerBuilder.buildMessage(
                answering: question, message: bytes.span, kind: kind, settings: settings,
                extraText: extraText.span, chase: chase, udp: false, into: &output, at: 2)
        }
        guard let end else {
            relay.counters.injectFailures.increment()
            return
        }
        answer[0] = UInt8(truncatingIfNeeded: (end - 2) >> 8)
        answer[1] = UInt8(truncatingIfNeeded: end - 2)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: answer[..<end])), promise: nil)
        relay.counters.countAnswer(kind, stage: .question)
    }

    /// Sends a message, length in front, on to the server, connecting first if needed.
    private func forward(_ framed: ByteBuffer) {
        guard let context, let server else { return }
        outstanding += 1
        if let upstreamChannel {
            upstreamChannel.writeAndFlush(framed, promise: nil)
            return
        }
        pendingBytes += framed.readableBytes
        pending.append(framed)
        guard upstream == nil else { return }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let connecting = relay.connectUpstream(to: server.socket, on: context.eventLoop, answers: loopBound)
        upstream = connecting
        connecting.whenComplete { result in
            loopBound.value.upstreamConnected((try? result.get()))
        }
    }

    private func upstreamConnected(_ channel: Channel?) {
        guard let channel else {
            relay.tcp.upstreamFailures.increment()
            context?.close(promise: nil)
            return
        }
        guard context != nil else {
            channel.close(promise: nil)
            return
        }
        upstreamChannel = channel
        for message in pending { channel.write(message, promise: nil) }
        pending = []
        pendingBytes = 0
        channel.flush()
        updateReading()
    }

    /// An answer from the server, length prefix included: decided on what it
    /// answers, like a UDP response, then relayed. A blocked one resets the
    /// client's connection (and the server's): the stream has no place for
    /// the answer the client was to get.
    func relayAnswer(_ framed: ByteBuffer) {
        guard let context, let client, let server else { return }
        outstanding = max(outstanding - 1, 0)
        let bytes = Array(framed.readableBytesView.dropFirst(2))
        var response = DNSQuery(source: server.address, sourcePort: 53, destination: client.address,
                                destinationPort: client.port, message: 0..<bytes.count, packetLength: bytes.count)
        let decoded = QueryDecoder.decodeMessage(bytes.span, into: &response).map(DecodeResult.notDNS) ?? .query(response)
        let state = relay.policies.state
        guard case .some(let mac) = macAddress(for: state.policy) else {
            reset(context)
            return
        }
        guard case .pass = relay.judge.ruleResponse(decoded, packet: bytes.span, transport: .tcp, state: state,
                                                    mac: mac) else {
            reset(context)
            return
        }
        relay.tcp.answersRelayed.increment()
        context.writeAndFlush(wrapOutboundOut(framed), promise: nil)
        updateReading()
        closeIfDone()
    }

    /// Ends the client's connection with a reset (SO_LINGER 0), then the
    /// server's: closed first, the server's would close the client's
    /// gracefully (`upstreamClosed`).
    private func reset(_ context: ChannelHandlerContext) {
        relay.counters.answers.reset.increment()
        let channel = context.channel
        let upstream = upstreamChannel
        let resetDone: EventLoopFuture<Void> = (channel as? SocketOptionProvider)?
            .setSoLinger(linger(l_onoff: 1, l_linger: 0)) ?? channel.eventLoop.makeSucceededVoidFuture()
        resetDone.whenComplete { _ in
            channel.close(promise: nil)
            upstream?.close(promise: nil)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        updateReading()
        context.fireChannelWritabilityChanged()
    }

    /// Backpressure, so that memory per connection stays bounded: reading from
    /// the client pauses while too many relayed queries await an answer, or
    /// while either side is not taking what is written to it (a client that
    /// pipelines blocked queries and never reads its answers, a slow server),
    /// and resumes once all is well below those marks.
    func updateReading() {
        guard let context else { return }
        // Answers from the server wait in the server's socket while the client is not reading them.
        if let upstreamChannel, upstreamReading != context.channel.isWritable {
            upstreamReading = context.channel.isWritable
            upstreamChannel.setOption(.autoRead, value: upstreamReading).whenComplete { _ in }
            if upstreamReading { upstreamChannel.read() }
        }
        let writable = context.channel.isWritable && (upstreamChannel?.isWritable ?? true)
        // Queries waiting for a CNAME target hold the connection's share of
        // the chaser: they count like relayed ones.
        let inFlight = outstanding + chasing
        let full = inFlight >= TCPRelay.maximumOutstanding || pendingBytes >= TCPRelay.maximumPendingBytes
        if !readingPaused, full || !writable {
            readingPaused = true
            context.channel.setOption(.autoRead, value: false).whenComplete { _ in }
        } else if readingPaused, inFlight <= TCPRelay.maximumOutstanding / 2,
                  pendingBytes < TCPRelay.maximumPendingBytes / 2, writable {
            readingPaused = false
            context.channel.setOption(.autoRead, value: true).whenComplete { _ in }
            drain()
            context.read()
        }
    }

    /// The server closed its side or failed: the client's connection ends too.
    func upstreamClosed() {
        upstreamChannel = nil
        upstream = nil
        if outstanding > 0 { relay.tcp.upstreamFailures.increment() }
        context?.close(promise: nil)
    }

    /// After the client's half-close, once every relayed query is answered
    /// and every answer written out.
    private func closeIfDone() {
        guard inputClosed, outstanding == 0, chasing == 0, let context else { return }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            loopBound.value.context?.close(promise: nil)
        }
    }
}

/// The server side of a relayed connection: hands each whole answer to the
/// client's handler.
final class TCPUpstreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let client: NIOLoopBound<TCPClientHandler>
    private var framer = MessageFramer()

    init(client: NIOLoopBound<TCPClientHandler>) { self.client = client }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        framer.append(&bytes)
        while let framed = framer.next() { client.value.relayAnswer(framed) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        client.value.upstreamClosed()
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        client.value.updateReading()
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
