// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
@testable import DnsgatePolicy
import Dispatch
import DnstapProto
import Foundation
import SwiftProtobuf
import Synchronization
import Testing
@testable import DnsgateDaemon

/// dnstap: Frame Streams framing and handshake, the messages a decision
/// becomes (decoded back with SwiftProtobuf), and the output's buffer when
/// the collector is away or answers the handshake.
@Suite("dnstap")
struct DnstapTests {
    static let contentType = Array("protobuf:dnstap.Dnstap".utf8)

    @Test("a control frame: escape, length, type, then each content type with its length")
    func controlFrameBytes() {
        let ready = FrameStreams.controlFrame(.ready, contentTypes: [Self.contentType])
        let expected: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 34, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 22] + Self.contentType
        #expect(ready == expected)
        #expect(FrameStreams.controlFrame(.stop) == [0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 3])
        var data: [UInt8] = []
        FrameStreams.appendDataFrame([7, 8, 9], to: &data)
        #expect(data == [0, 0, 0, 3, 7, 8, 9])
    }

    @Test("READY, ACCEPT (even dripped byte by byte), START; then STOP and FINISH")
    func handshake() throws {
        var sender = FrameStreamsSender()
        #expect(sender.open() == FrameStreams.controlFrame(.ready, contentTypes: [Self.contentType]))
        #expect(sender.state == .awaitingAccept)
        let accept = FrameStreams.controlFrame(.accept, contentTypes: [Array("other".utf8), Self.contentType])
        var reply: [UInt8] = []
        for byte in accept { reply += try sender.received([byte]) }
        #expect(reply == FrameStreams.controlFrame(.start, contentTypes: [Self.contentType]))
        #expect(sender.state == .started)
        #expect(sender.stop() == FrameStreams.controlFrame(.stop))
        #expect(try sender.received(FrameStreams.controlFrame(.finish)).isEmpty)
        #expect(sender.state == .finished)
    }

    @Test("a collector that does not take dnstap, or speaks out of turn, ends the connection", arguments: [
        FrameStreams.controlFrame(.accept, contentTypes: [Array("protobuf:other".utf8)]),
        FrameStreams.controlFrame(.start, contentTypes: [Array("protobuf:dnstap.Dnstap".utf8)]),
        [0, 0, 0, 5, 1, 2, 3, 4, 5],  // a data frame
        [0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 1],  // a control frame far too long
    ] as [[UInt8]])
    func refusedHandshake(bytes: [UInt8]) {
        var sender = FrameStreamsSender()
        _ = sender.open()
        #expect(throws: DaemonError.self) { try sender.received(bytes) }
    }

    /// `name` type A, with an EDNS OPT record.
    static func query(_ name: String, id: UInt16 = 0x1234) -> [UInt8] {
        var bytes: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xff), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]
        for label in name.split(separator: ".") { bytes += [UInt8(label.utf8.count)] + Array(label.utf8) }
        bytes += [0, 0, 1, 0, 1]
        bytes += [0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]  // OPT: 1232 bytes, no options
        return bytes
    }

    static func record(_ message: [UInt8], name: String, policy: CompiledPolicy, transport: Transport = .udp)
        throws -> DecisionRecord {
        let domain = try #require(DomainName(text: name))
        let decision = policy.decide(name: domain, type: .a, client: IPAddress("192.0.2.10")!)
        let outcome = decision.map(policy.outcome(of:)) ?? Outcome(action: .allow, blockResponse: .nxdomain)
        return DecisionRecord(
            seconds: 1_700_000_000, microseconds: 250_000, source: IPAddress("192.0.2.10")!, sourcePort: 40000,
            destination: IPAddress("198.51.100.53")!, destinationPort: 53, name: domain, type: .a,
            queryClass: .internet, transport: transport, generation: policy.generation,
            ruleIndex: decision?.ruleIndex ?? DecisionRecord.noRule, action: outcome.action,
            blockResponse: outcome.blockResponse, detail: .query(MessageCopy(message.span)),
            entryOutcome: decision?.entryOutcome ?? -1)
    }

    /// Serialized and read back, as a collector would.
    static func roundTrip(_ messages: [Dnstap_Dnstap]) throws -> [Dnstap_Dnstap] {
        try messages.map { try Dnstap_Dnstap(serializedBytes: try $0.serializedBytes() as [UInt8]) }
    }

    @Test("a blocked query: CLIENT_QUERY with its message, CLIENT_RESPONSE with the forged NXDOMAIN, the rule in Policy")
    func blockedQueryMessages() throws {
        let policy = try DaemonPartsTests.policy()
        let query = Self.query("X.bad.example")
        let record = try Self.record(query, name: "X.bad.example", policy: policy)
        let encoder = DnstapEncoder(identity: "gw1", version: "dnsgate 9")
        let messages = try Self.roundTrip(encoder.messages(for: record, labels: RuleLabels(policy)))
        #expect(messages.count == 2)
        let first = try #require(messages.first), second = try #require(messages.last)
        #expect(first.type == .message && first.identity == Data("gw1".utf8) && first.version == Data("dnsgate 9".utf8))
        let asked = first.message
        #expect(asked.type == .clientQuery)
        #expect(asked.queryMessage == Data(query))
        #expect(asked.socketFamily == .inet && asked.socketProtocol == .udp)
        #expect(asked.queryAddress == Data([192, 0, 2, 10]) && asked.queryPort == 40000)
        #expect(asked.responseAddress == Data([198, 51, 100, 53]) && asked.responsePort == 53)
        #expect(asked.queryTimeSec == 1_700_000_000 && asked.queryTimeNsec == 250_000_000)
        #expect(asked.policy.type == "dnsgate")
        #expect(asked.policy.rule == Data("base/block-bad".utf8))
        #expect(asked.policy.action == .nxdomain && asked.policy.match == .qname)
        #expect(asked.policy.value == Data("X.bad.example.".utf8), "the name as asked")

        let answered = second.message
        #expect(answered.type == .clientResponse && answered.policy == asked.policy)
        let forged = [UInt8](answered.responseMessage)
        #expect(forged.count > 12 && forged[0] == 0x12 && forged[1] == 0x34, "the query's ID")
        #expect(forged[2] & 0x80 != 0 && forged[3] & 0x0f == 3, "a response, NXDOMAIN")
        #expect(answered.responseTimeSec == 1_700_000_000)
        // The same bytes the decider sends: the builder is pure.
        var query2 = DNSQuery(source: record.source, sourcePort: 40000, destination: record.destination,
                              destinationPort: 53, message: 0..<query.count, packetLength: query.count)
        #expect(QueryDecoder.decodeMessage(query.span, into: &query2) == nil)
        var expected = [UInt8](repeating: 0, count: ForgedAnswerBuilder.outputCapacity(forQueryOf: query.count))
        let extraText = policy.rules[0].extraText
        var span = expected.mutableSpan
        let end = try #require(ForgedAnswerBuilder.buildMessage(
            answering: query2, message: query.span, kind: .nxdomain, settings: policy.answerSettings,
            extraText: extraText.span, into: &span, at: 0))
        #expect(forged == Array(expected[..<end]))
    }

    @Test("an allowed or unmatched query is a CLIENT_QUERY alone: PASS for a rule, no Policy without one")
    func passingQueries() throws {
        let policy = try DaemonPartsTests.policy()
        let encoder = DnstapEncoder(identity: "gw1", version: "v")
        let unmatched = try Self.record(Self.query("good.example"), name: "good.example", policy: policy, transport: .tcp)
        let messages = try Self.roundTrip(encoder.messages(for: unmatched, labels: RuleLabels(policy)))
        #expect(messages.count == 1 && messages[0].message.type == .clientQuery)
        #expect(messages[0].message.socketProtocol == .tcp && !messages[0].message.hasPolicy)
        var alerted = try Self.record(Self.query("a.bad.example"), name: "a.bad.example", policy: policy)
        alerted.action = .alert
        let alert = try Self.roundTrip(encoder.messages(for: alerted, labels: RuleLabels(policy)))
        #expect(alert.count == 1 && alert[0].message.policy.action == .pass)
    }

    @Test("a query longer than the record holds is sent as its header and question")
    func cutQuery() throws {
        var long = Self.query("a.bad.example")
        long += [UInt8](repeating: 0, count: 600)  // padding past the copy (as a long OPT would be)
        let copy = MessageCopy(long.span)
        #expect(copy.isCut && copy.length == MessageCopy.capacity)
        let shortened = DnstapEncoder.headerAndQuestion(of: copy)
        let question = 1 + 1 + 1 + 3 + 1 + 7 + 1 + 4  // a.bad.example, type, class
        #expect(shortened.count == 12 + question)
        #expect(Array(shortened[4..<12]) == [0, 1, 0, 0, 0, 0, 0, 0], "one question, nothing else")
    }

    static func output(_ destination: DnstapConfig.Destination, buffer: Int = 16) -> DnstapOutput {
        var config = DnstapConfig(destination: destination)
        config.bufferFrames = buffer
        return DnstapOutput(config, defaultIdentity: "test", defaultVersion: "v")
    }

    @Test("only the decisions dnstap sends carry a copy of the query")
    func queryCopies() {
        var config = DnstapConfig(destination: .unix(path: "/nonexistent/dnsgate-dnstap.sock"))
        config.actions = [.block]
        let recorder = DecisionRecorder(log: QueryLogConfig(path: "-", actions: [.allow, .block]),
                                        dnstap: DnstapOutput(config, defaultIdentity: "t", defaultVersion: "v"), deciders: 1)
        #expect(recorder.copiesQuery(matched: true, action: .block))
        #expect(!recorder.copiesQuery(matched: true, action: .allow), "logged, but not sent: no copy")
        #expect(!recorder.copiesQuery(matched: false, action: .allow))
        let withoutDnstap = DecisionRecorder(log: QueryLogConfig(path: "-", actions: [.block]), deciders: 1)
        #expect(!withoutDnstap.copiesQuery(matched: true, action: .block))
    }

    @Test("no collector: frames wait up to the buffer, then are dropped and counted; nothing waits")
    func absentCollector() throws {
        let policy = try DaemonPartsTests.policy()
        let output = Self.output(.unix(path: "/nonexistent/dnsgate-dnstap.sock"))
        let record = try Self.record(Self.query("a.bad.example"), name: "a.bad.example", policy: policy)
        let started = ContinuousClock.now
        for _ in 0..<10 {
            output.send(record, labels: RuleLabels(policy))  // two frames each
            output.service()
        }
        #expect(ContinuousClock.now - started < .seconds(1))
        let buffered = output.bufferedFrames.load(ordering: .relaxed)
        #expect(buffered == 16)
        #expect(output.droppedFrames.value == 4)
        let connected = output.isConnected.load(ordering: .relaxed)
        #expect(!connected)
        #expect(output.lastError.withLock { $0 }?.contains("connecting to unix:/nonexistent/dnsgate-dnstap.sock") == true)
        output.finish()
        #expect(output.droppedFrames.value == 20, "what was buffered is lost at shutdown without a collector")
    }

    @Test("a collector on a Unix socket gets READY, START, the frames, STOP; FINISH ends it")
    func unixCollector() throws {
        let policy = try DaemonPartsTests.policy()
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("dnstap-\(getpid()).sock").path
        defer { unlink(path) }
        let collector = try TestCollector(path: path)
        let output = Self.output(.unix(path: path))
        let record = try Self.record(Self.query("a.bad.example"), name: "a.bad.example", policy: policy)
        output.send(record, labels: RuleLabels(policy))
        let thread = Thread { collector.serve() }
        thread.start()
        // Bounded: at most 200 rounds of 10 ms.
        for _ in 0..<200 where output.sentFrames.value < 2 {
            output.service()
            usleep(10_000)
        }
        let connected = output.isConnected.load(ordering: .relaxed)
        #expect(connected)
        #expect(output.sentFrames.value == 2)
        output.finish()
        #expect(collector.done.wait(timeout: .now() + 5) == .success)
        let seen = collector.seen.withLock { $0 }
        #expect(seen.controls == [.ready, .start, .stop])
        #expect(seen.frames.count == 2)
        let decoded = try seen.frames.map { try Dnstap_Dnstap(serializedBytes: $0) }
        #expect(decoded.map(\.message.type) == [.clientQuery, .clientResponse])
        #expect(output.droppedFrames.value == 0)
    }
}

extension DnstapTests {
    @Test("a collector that goes away is noticed, and the next one gets the frames sent since")
    func collectorGoesAway() throws {
        let policy = try DaemonPartsTests.policy()
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("dnstap-away-\(getpid()).sock").path
        defer { unlink(path) }
        let record = try Self.record(Self.query("a.bad.example"), name: "a.bad.example", policy: policy)
        let output = Self.output(.unix(path: path))
        func serviceUntil(_ condition: () -> Bool) {
            for _ in 0..<300 where !condition() {  // at most 3 s
                output.service()
                usleep(10_000)
            }
        }
        do {
            let first = try TestCollector(path: path, leavesAfterFrames: 2)
            Thread { first.serve() }.start()
            output.send(record, labels: RuleLabels(policy))
            serviceUntil { output.sentFrames.value == 2 }
            #expect(first.done.wait(timeout: .now() + 5) == .success)
            serviceUntil { output.lastError.withLock { $0 } != nil }
            let connected = output.isConnected.load(ordering: .relaxed)
            #expect(!connected)
            #expect(output.lastError.withLock { $0 }?.contains("closed the connection") == true)
        }
        output.send(record, labels: RuleLabels(policy))  // waits for the next collector
        let second = try TestCollector(path: path)
        Thread { second.serve() }.start()
        serviceUntil { output.sentFrames.value == 4 }
        #expect(output.sentFrames.value == 4)
        let reconnected = output.isConnected.load(ordering: .relaxed)
        #expect(reconnected && output.lastError.withLock { $0 } == nil)
        output.finish()
        #expect(second.done.wait(timeout: .now() + 5) == .success)
        #expect(second.seen.withLock { $0 }.controls == [.ready, .start, .stop])
        #expect(second.seen.withLock { $0 }.frames.count == 2)
        #expect(output.droppedFrames.value == 0)
    }
}

/// A Frame Streams collector on a Unix socket, in the test's process: one
/// connection, ACCEPT for READY, FINISH for STOP; records what it got.
final class TestCollector: @unchecked Sendable {
    struct Seen: Sendable {
        var controls: [FrameStreams.ControlType] = []
        var frames: [[UInt8]] = []
    }
    let seen = Mutex(Seen())
    let done = DispatchSemaphore(value: 0)
    private let listener: Int32
    private let path: String
    /// Goes away (closes without FINISH) after this many data frames.
    private let leavesAfterFrames: Int?

    init(path: String, leavesAfterFrames: Int? = nil) throws {
        self.path = path
        self.leavesAfterFrames = leavesAfterFrames
        unlink(path)
        listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        try #require(bound == 0 && listen(listener, 1) == 0)
    }

    /// The socket file stays (a later collector may bind the same path); tests remove it.
    deinit { close(listener) }

    func serve() {
        defer { done.signal() }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(listener, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let connection = accept(listener, nil, nil)
        guard connection >= 0 else { return }
        defer { close(connection) }
        setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        func read(_ count: Int) -> [UInt8]? {
            var bytes = [UInt8](repeating: 0, count: count)
            var have = 0
            while have < count {  // bounded: each round reads at least one byte or returns
                let got = bytes.withUnsafeMutableBytes { recv(connection, $0.baseAddress! + have, count - have, 0) }
                guard got > 0 else { return nil }
                have += got
            }
            return bytes
        }
        for _ in 0..<100 {
            guard let prefix = read(4) else { return }
            let length = Int(FrameStreams.readBigEndian(prefix[...], at: 0))
            if length > 0 {
                guard let frame = read(length) else { return }
                let count = seen.withLock { seen in
                    seen.frames.append(frame)
                    return seen.frames.count
                }
                if let leavesAfterFrames, count >= leavesAfterFrames { return }
                continue
            }
            guard let lengthBytes = read(4), let body = read(Int(FrameStreams.readBigEndian(lengthBytes[...], at: 0))),
                  case .control(let frame, _) = try? FrameStreams.parseControl((prefix + lengthBytes + body)[...])
            else { return }
            seen.withLock { $0.controls.append(frame.type) }
            let reply: [UInt8]
            switch frame.type {
            case .ready: reply = FrameStreams.controlFrame(.accept, contentTypes: [DnstapTests.contentType])
            case .stop: reply = FrameStreams.controlFrame(.finish)
            default: continue
            }
            _ = reply.withUnsafeBytes { send(connection, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
            if frame.type == .stop { return }
        }
    }
}
