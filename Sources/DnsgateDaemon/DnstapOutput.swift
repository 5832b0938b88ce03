// SPDX-License-Identifier: GPL-2.0-or-later
import DnsgatePolicy
import DnstapProto
import Foundation
import NetfilterQueue
import Synchronization

/// Sends recorded decisions as dnstap frames to a collector over Frame
/// Streams, from the log thread (`DecisionRecorder.run`), never waiting:
/// the socket is non-blocking, frames wait in a bounded buffer while the
/// collector is away or slow, and past it new frames are dropped and
/// counted. An absent collector is tried again with a backoff (0.1 s
/// doubling to 5 s); one that goes away is reconnected the same way.
final class DnstapOutput: @unchecked Sendable {
    // @unchecked: the connection state is touched by the log thread alone;
    // what the stats socket reads is atomic or locked.
    static let firstBackoffMilliseconds: UInt64 = 100
    static let longestBackoffMilliseconds: UInt64 = 5000
    /// A collector that has not answered READY by then is left and tried again.
    static let handshakeMilliseconds: UInt64 = 5000
    /// Shutdown waits at most this long to hand over what is buffered, and for FINISH.
    static let goodbyeMilliseconds: UInt64 = 1000

    let destination: DnstapConfig.Destination
    let actions: Set<RuleAction>
    let sendsNoMatch: Bool
    let bufferFrames: Int
    private let encoder: DnstapEncoder

    /// Frames the collector took whole, and frames lost (buffer full, or cut
    /// by a connection that broke mid-frame).
    let sentFrames = Atomic<UInt64>(0)
    let droppedFrames = Atomic<UInt64>(0)
    let isConnected = Atomic<Bool>(false)
    /// Frames waiting for the collector.
    let bufferedFrames = Atomic<Int>(0)
    /// Why the collector cannot be reached now; nil while it can.
    let lastError = Mutex<String?>(nil)

    private var socket: StreamSocket?
    private var connecting = false
    private var sender = FrameStreamsSender()
    /// Control frames to send before any data frame.
    private var control: [UInt8] = []
    private var controlSent = 0
    /// Data frames waiting, oldest first from `head`; `headSent` bytes of the oldest are on their way.
    private var frames: [[UInt8]] = []
    private var head = 0
    private var headSent = 0
    private var nextAttempt: UInt64 = 0
    private var backoff = DnstapOutput.firstBackoffMilliseconds
    private var handshakeDeadline: UInt64 = 0
    /// Called with each new error (and nil on recovery), for the daemon's log.
    private let report: @Sendable (String?) -> Void

    init(_ config: DnstapConfig, defaultIdentity: String, defaultVersion: String,
         report: @escaping @Sendable (String?) -> Void = { _ in }) {
        destination = config.destination
        actions = config.actions
        sendsNoMatch = config.sendsNoMatch
        bufferFrames = config.bufferFrames
        encoder = DnstapEncoder(identity: config.identity ?? defaultIdentity, version: config.version ?? defaultVersion)
        self.report = report
    }

    /// Whether the config's `actions` name this record's decision.
    func wants(_ record: DecisionRecord) -> Bool { wants(matched: record.matched, action: record.action) }

    /// Whether the config's `actions` name a decision: `action` when a rule
    /// matched, NO_MATCH otherwise.
    func wants(matched: Bool, action: RuleAction) -> Bool { matched ? actions.contains(action) : sendsNoMatch }

    /// Encodes `record` into frames and buffers them (dropping them, counted,
    /// when the buffer is full).
    func send(_ record: DecisionRecord, labels: RuleLabels?) {
        for message in encoder.messages(for: record, labels: labels) {
            guard frames.count - head < bufferFrames,
                  let payload: [UInt8] = try? message.serializedBytes() else {
                droppedFrames.add(1, ordering: .relaxed)
                continue
            }
            var frame: [UInt8] = []
            frame.reserveCapacity(payload.count + 4)
            FrameStreams.appendDataFrame(payload, to: &frame)
            frames.append(frame)
        }
        bufferedFrames.store(frames.count - head, ordering: .relaxed)
    }

    /// Moves the connection on as far as it goes without waiting: connects
    /// when due, reads the collector's control frames, writes what waits.
    func service() {
        let now = Self.milliseconds()
        if socket == nil {
            guard now >= nextAttempt else { return }
            open(now: now)
        }
        guard let socket else { return }
        do {
            if connecting {
                guard try socket.finishConnect() else {
                    if now >= handshakeDeadline { fail("connecting to \(destination): no answer") }
                    return
                }
                connecting = false
                queueControl(sender.open())
            }
            try readControl(from: socket)
            if sender.state == .awaitingAccept, now >= handshakeDeadline {
                fail("\(destination): the collector did not accept the stream (no ACCEPT)")
                return
            }
            try writePending(to: socket)
        } catch {
            fail("\(destination): \(error)")
        }
    }

    /// At shutdown: hands over what is buffered and ends the stream (STOP,
    /// then FINISH), within `goodbyeMilliseconds` in all.
    func finish() {
        let deadline = Self.milliseconds() + Self.goodbyeMilliseconds
        // Bounded by the deadline; each round waits at most 20 ms.
        while Self.milliseconds() < deadline {
            service()
            guard let socket else { break }
            if sender.state == .started, controlSent == control.count, head == frames.count {
                queueControl(sender.stop())
            }
            if sender.state == .finished { break }
            socket.wait(readable: true, writable: true, milliseconds: 20)
        }
        close()
        let lost = frames.count - head
        if lost > 0 { droppedFrames.add(UInt64(lost), ordering: .relaxed) }
        frames.removeAll()
        head = 0
        bufferedFrames.store(0, ordering: .relaxed)
    }

    private func open(now: UInt64) {
        let peer: StreamSocket.Peer
        switch destination {
        case .unix(let path): peer = .unix(path: path)
        case .tcp(let address, let port): peer = .tcp(address: address.bytes, port: port)
        }
        do {
            let (opened, progress) = try StreamSocket.connect(to: peer)
            socket = opened
            handshakeDeadline = now + Self.handshakeMilliseconds
            connecting = progress == .inProgress
            control.removeAll()
            controlSent = 0
            sender.reset()
            if !connecting { queueControl(sender.open()) }
        } catch {
            fail("connecting to \(destination): \(error)")
        }
    }

    private func queueControl(_ bytes: [UInt8]) {
        control += bytes
    }

    private func readControl(from socket: StreamSocket) throws {
        // Bounded: a collector sends a handful of small control frames.
        for _ in 0..<4 {
            guard let bytes = try socket.receive() else {
                // After FINISH the collector closes: the end of a clean stop.
                if sender.state == .finished { return }
                throw DaemonError(description: "the collector closed the connection")
            }
            if bytes.isEmpty { return }
            let wasStarted = sender.state == .started
            queueControl(try sender.received(bytes))
            if !wasStarted, sender.state == .started { connected() }
        }
    }

    private func connected() {
        isConnected.store(true, ordering: .relaxed)
        backoff = Self.firstBackoffMilliseconds
        let hadError = lastError.withLock { error in
            defer { error = nil }
            return error != nil
        }
        if hadError { report(nil) }
    }

    /// Control frames first, then data frames once the stream is started.
    private func writePending(to socket: StreamSocket) throws {
        if controlSent < control.count {
            controlSent += try socket.send(control, from: controlSent)
            guard controlSent == control.count else { return }
            control.removeAll()
            controlSent = 0
        }
        guard sender.state == .started else { return }
        // Bounded by the frames waiting now; stops when the socket is full.
        while head < frames.count {
            let frame = frames[head]
            headSent += try socket.send(frame, from: headSent)
            guard headSent == frame.count else { break }
            headSent = 0
            frames[head] = []
            head += 1
            sentFrames.add(1, ordering: .relaxed)
        }
        if head == frames.count {
            frames.removeAll(keepingCapacity: true)
            head = 0
        } else if head > 1024, head * 2 > frames.count {
            frames.removeFirst(head)
            head = 0
        }
        bufferedFrames.store(frames.count - head, ordering: .relaxed)
    }

    /// The connection is lost or could not be made: closed, tried again after the backoff.
    private func fail(_ reason: String) {
        close()
        nextAttempt = Self.milliseconds() + backoff
        backoff = min(backoff * 2, Self.longestBackoffMilliseconds)
        let isNew = lastError.withLock { error in
            defer { error = reason }
            return error != reason
        }
        if isNew { report(reason) }
    }

    private func close() {
        socket?.close()
        socket = nil
        connecting = false
        sender.reset()
        control.removeAll()
        controlSent = 0
        isConnected.store(false, ordering: .relaxed)
        // A frame cut mid-way cannot be finished on another connection.
        if headSent > 0, head < frames.count {
            headSent = 0
            head += 1
            droppedFrames.add(1, ordering: .relaxed)
        }
    }

    private static func milliseconds() -> UInt64 { monotonicNanoseconds() / 1_000_000 }
}
