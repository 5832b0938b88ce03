// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import NIOCore
import NIOPosix
import NetfilterQueue
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Chase counters: written on the chaser's event loop, read by the stats socket.
final class ChaseCounters: Sendable {
    /// Queries sent to a client's resolver for a CNAME target.
    let queries = Atomic<UInt64>(0)
    /// Targets that resolver did not answer in time, or answered with an error.
    let failures = Atomic<UInt64>(0)
    /// Blocked queries answered from a kept copy of the target's records.
    let cacheHits = Atomic<UInt64>(0)
    /// Blocked queries turned away because too many were waiting for targets.
    let overflows = Atomic<UInt64>(0)
}

/// Finds the records of OVERRIDE CNAME targets for forged answers, by asking
/// the resolver the client asked, and keeps them for their TTL, so that a
/// stub resolver gets the CNAME and the addresses it needs in one answer.
///
/// Workers only read the kept copies; a query whose target is not known yet
/// is handed over with a copy of its bytes and answered from here once the
/// resolver has answered (one question in flight per resolver, target and
/// type, whoever waits for it). Everything but the cache runs on one event
/// loop of lower priority than the workers.
final class TargetChaser: Sendable {
    static let maximumEntries = 4096
    /// Blocked queries that may wait for targets at once; past it they get SERVFAIL.
    static let maximumWaiting = 1024
    /// Per try; a second try follows the first, so an answer comes within 2.5 s,
    /// sooner than a stub's own retry.
    static let tryTimeouts: [TimeAmount] = [.milliseconds(1000), .milliseconds(1500)]
    /// Seconds a failed target is answered SERVFAIL before it is asked again.
    static let failureTTL: UInt32 = 5

    struct Key: Hashable, Sendable {
        var resolver: IPAddress
        var target: [UInt8]
        var type: QueryType
    }

    private struct Entry {
        var target: ChasedTarget
        var fetchedAt: UInt64
    }

    let counters = WorkerCounters(queue: 0)
    let chase = ChaseCounters()
    private let mark: UInt32
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let cache = Mutex<[Key: Entry]>([:])
    private let loopState: NIOLoopBoundBox<LoopState>

    /// What only the event loop touches.
    private final class LoopState {
        /// Those waiting for each target in flight.
        var waiting: [Key: [@Sendable (ChasedTarget) -> Void]] = [:]
        var waitingCount = 0
        /// Forged answers to UDP queries go out through this raw socket.
        let injector: PacketInjector
        init(injector: PacketInjector) { self.injector = injector }
    }

    var eventLoop: EventLoop { group.next() }

    init(mark: UInt32) throws {
        self.mark = mark
        let loop = group.next()
        loopState = .makeBoxSendingValue(LoopState(injector: try PacketInjector(mark: mark)), eventLoop: loop)
        loop.execute { CurrentThread.lowerPriority() }
    }

    func stop() {
        try? group.syncShutdownGracefully()
    }

    /// Seconds on a clock that never goes back.
    private static func now() -> UInt64 { monotonicNanoseconds() / 1_000_000_000 }

    /// What a forged answer of `kind` to `question` needs chased, if anything:
    /// only an OVERRIDE CNAME answer to A or AAAA does.
    static func key(for question: DNSQuery, kind: ForgedAnswerKind) -> Key? {
        guard case .override(let record) = kind, record.type == .cname, TargetQuery.chases(question.type) else {
            return nil
        }
        return Key(resolver: question.destination, target: record.data, type: question.type)
    }

    /// The kept records for `key`, their TTLs counted down; nil when there
    /// are none or they have run out. Safe on any thread.
    func cached(_ key: Key) -> ChasedTarget? {
        guard let entry = cache.withLock({ $0[key] }) else { return nil }
        let now = Self.now()
        // Saturating: another thread may have stored the entry after `now` was read elsewhere.
        let age = UInt32(clamping: now > entry.fetchedAt ? now - entry.fetchedAt : 0)
        guard age < entry.target.ttl else { return nil }
        chase.cacheHits.wrappingAdd(1, ordering: .relaxed)
        return entry.target.aged(by: age)
    }

    /// Calls `then` on the chaser's event loop with the target's records,
    /// asking the resolver unless they are kept; `.failed` when it cannot.
    func resolve(_ key: Key, then: @escaping @Sendable (ChasedTarget) -> Void) {
        let loop = eventLoop
        loop.execute { [self] in
            if let kept = cached(key) {
                then(kept)
                return
            }
            let state = loopState.value
            guard state.waitingCount < Self.maximumWaiting, TCPRelay.isRelayable(key.resolver) else {
                chase.overflows.wrappingAdd(1, ordering: .relaxed)
                then(.failed)
                return
            }
            state.waitingCount += 1
            if state.waiting[key] != nil {
                state.waiting[key]!.append(then)
                return
            }
            state.waiting[key] = [then]
            ask(key, try: 0, on: loop)
        }
    }

    /// Answers a blocked UDP query (`packet`, which `question` was decoded
    /// from) once its target is known: from the raw socket, as a worker would.
    func answerLater(packet: [UInt8], question: DNSQuery, kind: ForgedAnswerKind, key: Key,
                     settings: ForgedAnswerSettings, extraText: [UInt8], stage: QueryJudge.Stage) {
        resolve(key) { [self] target in
            let sent: Bool
            do {
                sent = try loopState.value.injector.send { output in
                    ForgedAnswerBuilder.build(answering: question, packet: packet.span, kind: kind, settings: settings,
                                              extraText: extraText.span, chase: target, into: &output)
                }
            } catch {
                sent = false
            }
            if sent { counters.countAnswer(kind, stage: stage) } else { counters.injectFailures.increment() }
        }
    }

    /// Asks the resolver over a socket of its own (a fresh port and ID for
    /// every question, so that an answer is hard to forge), marked so that
    /// the shipped rules neither queue nor redirect it.
    private func ask(_ key: Key, try attempt: Int, on loop: EventLoop) {
        chase.queries.wrappingAdd(1, ordering: .relaxed)
        let id = UInt16.random(in: 0...UInt16.max)
        let query = TargetQuery.make(id: id, target: key.target, type: key.type)
        let done = loop.makePromise(of: ChasedTarget.self)
        guard let destination = try? SocketAddress(ipAddress: key.resolver.description, port: 53) else {
            finish(key, with: .failed)
            return
        }
        let bound = DatagramBootstrap(group: loop)
            .channelOption(ChannelOptions.Types.SocketOption(level: SocketOptionLevel(SOL_SOCKET),
                                                             name: SocketOptionName(SO_MARK)), value: Int(mark))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        TargetAnswerHandler(id: id, target: key.target, type: key.type, done: done))
                }
            }
            .connect(to: destination)
        bound.whenSuccess { channel in
            var buffer = channel.allocator.buffer(capacity: query.count)
            buffer.writeBytes(query)
            channel.writeAndFlush(AddressedEnvelope(remoteAddress: destination, data: buffer), promise: nil)
        }
        bound.whenFailure { _ in done.succeed(.failed) }
        let timeout = loop.scheduleTask(in: Self.tryTimeouts[attempt]) { done.fail(NoAnswerInTime()) }
        done.futureResult.whenComplete { [self] result in
            timeout.cancel()
            bound.whenSuccess { $0.close(promise: nil) }
            switch result {
            case .success(let target):
                finish(key, with: target)
            case .failure where attempt + 1 < Self.tryTimeouts.count:
                ask(key, try: attempt + 1, on: loop)
            case .failure:
                finish(key, with: .failed)
            }
        }
    }

    private func finish(_ key: Key, with target: ChasedTarget) {
        var kept = target
        if target.responseCode == .serverFailure {
            chase.failures.wrappingAdd(1, ordering: .relaxed)
            // Kept briefly too: a client cannot hold a waiting slot per query
            // by asking a resolver that never answers, again and again.
            kept.ttl = Self.failureTTL
        }
        if kept.ttl > 0 {
            let now = Self.now()
            cache.withLock { entries in
                if entries.count >= Self.maximumEntries {
                    entries = entries.filter { UInt64($0.value.target.ttl) > now &- $0.value.fetchedAt }
                }
                // Full of live entries: the new one is not kept (flushing them
                // all would let one client evict every other's).
                if entries.count < Self.maximumEntries { entries[key] = Entry(target: kept, fetchedAt: now) }
            }
        }
        let state = loopState.value
        let waiters = state.waiting.removeValue(forKey: key) ?? []
        state.waitingCount -= waiters.count
        for waiter in waiters { waiter(target) }
    }
}

private struct NoAnswerInTime: Error {}

/// Reads the resolver's answer to one chase query; anything else that
/// arrives on the socket is ignored.
private final class TargetAnswerHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    let id: UInt16
    let target: [UInt8]
    let type: QueryType
    let done: EventLoopPromise<ChasedTarget>

    init(id: UInt16, target: [UInt8], type: QueryType, done: EventLoopPromise<ChasedTarget>) {
        self.id = id
        self.target = target
        self.type = type
        self.done = done
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = Array(unwrapInboundIn(data).data.readableBytesView)
        if let answer = TargetQuery.read(bytes.span, id: id, target: target, type: type) {
            done.succeed(answer)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // An ICMP unreachable on the connected socket: the resolver is not there.
        done.succeed(.failed)
    }
}
