// SPDX-License-Identifier: GPL-2.0-or-later

/// Frame Streams (fstrm), the transport of dnstap: data frames (a 32-bit
/// big-endian length, then the payload) and control frames (an escape of
/// four zero bytes, the control frame's length, its type, then fields). Pure:
/// bytes in, bytes out, no I/O.
enum FrameStreams {
    /// The only content type dnsgate sends.
    static let dnstapContentType: [UInt8] = Array("protobuf:dnstap.Dnstap".utf8)

    enum ControlType: UInt32, Sendable {
        case accept = 1, start = 2, stop = 3, ready = 4, finish = 5
    }

    /// The one control field type: a content type.
    static let contentTypeField: UInt32 = 1
    /// Longest control frame read (libfstrm's own limit): a longer one is a
    /// peer that does not speak Frame Streams.
    static let maximumControlLength = 512

    struct ControlFrame: Equatable, Sendable {
        var type: ControlType
        var contentTypes: [[UInt8]]
    }

    /// A payload as a data frame.
    static func appendDataFrame(_ payload: [UInt8], to out: inout [UInt8]) {
        appendBigEndian(UInt32(payload.count), to: &out)
        out.append(contentsOf: payload)
    }

    static func controlFrame(_ type: ControlType, contentTypes: [[UInt8]] = []) -> [UInt8] {
        var body: [UInt8] = []
        appendBigEndian(type.rawValue, to: &body)
        for contentType in contentTypes {
            appendBigEndian(contentTypeField, to: &body)
            appendBigEndian(UInt32(contentType.count), to: &body)
            body.append(contentsOf: contentType)
        }
        var frame: [UInt8] = [0, 0, 0, 0]
        appendBigEndian(UInt32(body.count), to: &frame)
        return frame + body
    }

    enum Parsed: Equatable {
        /// More bytes are needed; nothing was consumed.
        case incomplete
        /// A control frame and the bytes it took.
        case control(ControlFrame, length: Int)
    }

    /// Reads the control frame at the start of `bytes` (a collector sends no
    /// data frames). Incomplete input returns `.incomplete`; anything that
    /// is no control frame throws.
    static func parseControl(_ bytes: ArraySlice<UInt8>) throws(DaemonError) -> Parsed {
        guard bytes.count >= 8 else { return .incomplete }
        let start = bytes.startIndex
        guard readBigEndian(bytes, at: start) == 0 else {
            throw DaemonError(description: "the collector sent a data frame; only control frames were expected")
        }
        let length = Int(readBigEndian(bytes, at: start + 4))
        guard length >= 4, length <= maximumControlLength else {
            throw DaemonError(description: "the collector sent a control frame of \(length) bytes")
        }
        guard bytes.count >= 8 + length else { return .incomplete }
        let end = start + 8 + length
        guard let type = ControlType(rawValue: readBigEndian(bytes, at: start + 8)) else {
            throw DaemonError(description: "the collector sent an unknown control frame type \(readBigEndian(bytes, at: start + 8))")
        }
        var contentTypes: [[UInt8]] = []
        var offset = start + 12
        // Bounded: each field moves `offset` forward by at least 8 bytes.
        while offset < end {
            guard end - offset >= 8 else { throw DaemonError(description: "the collector sent a cut control field") }
            let fieldType = readBigEndian(bytes, at: offset)
            let fieldLength = Int(readBigEndian(bytes, at: offset + 4))
            guard fieldLength <= end - offset - 8 else {
                throw DaemonError(description: "the collector sent a control field longer than its frame")
            }
            if fieldType == contentTypeField {
                contentTypes.append(Array(bytes[(offset + 8)..<(offset + 8 + fieldLength)]))
            }
            offset += 8 + fieldLength
        }
        return .control(ControlFrame(type: type, contentTypes: contentTypes), length: 8 + length)
    }

    static func appendBigEndian(_ value: UInt32, to out: inout [UInt8]) {
        out.append(UInt8(truncatingIfNeeded: value >> 24))
        out.append(UInt8(truncatingIfNeeded: value >> 16))
        out.append(UInt8(truncatingIfNeeded: value >> 8))
        out.append(UInt8(truncatingIfNeeded: value))
    }

    static func readBigEndian(_ bytes: ArraySlice<UInt8>, at offset: Int) -> UInt32 {
        UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8
            | UInt32(bytes[offset + 3])
    }
}

/// The sender's side of a bidirectional Frame Streams connection: READY,
/// the collector's ACCEPT, START, data frames, and at the end STOP and the
/// collector's FINISH. Returns the bytes to send; does no I/O.
struct FrameStreamsSender {
    enum State: Equatable, Sendable {
        /// No connection, or one not yet opened.
        case closed
        /// READY sent; waiting for ACCEPT.
        case awaitingAccept
        /// START sent: data frames may follow.
        case started
        /// STOP sent; waiting for FINISH.
        case awaitingFinish
        /// FINISH received: the connection may close.
        case finished
    }

    private(set) var state = State.closed
    /// Bytes received that do not make a whole control frame yet.
    private var input: [UInt8] = []

    /// A new connection: READY, offering dnstap.
    mutating func open() -> [UInt8] {
        state = .awaitingAccept
        input.removeAll()
        return FrameStreams.controlFrame(.ready, contentTypes: [FrameStreams.dnstapContentType])
    }

    /// Bytes from the collector; returns what to send in reply (START after
    /// ACCEPT). Throws on anything the protocol does not allow, after which
    /// the connection is to be closed.
    mutating func received(_ bytes: some Collection<UInt8>) throws(DaemonError) -> [UInt8] {
        input.append(contentsOf: bytes)
        var reply: [UInt8] = []
        // Bounded: every frame read consumes at least 8 bytes of `input`.
        while case .control(let frame, let length) = try FrameStreams.parseControl(input[...]) {
            input.removeFirst(length)
            switch (state, frame.type) {
            case (.awaitingAccept, .accept):
                // No content type at all matches any, as libfstrm reads an ACCEPT.
                guard frame.contentTypes.isEmpty || frame.contentTypes.contains(FrameStreams.dnstapContentType) else {
                    state = .closed
                    throw DaemonError(description: "the collector does not accept protobuf:dnstap.Dnstap")
                }
                state = .started
                reply += FrameStreams.controlFrame(.start, contentTypes: [FrameStreams.dnstapContentType])
            case (.awaitingFinish, .finish):
                state = .finished
            case (.started, .finish), (.awaitingAccept, .finish):
                // The collector is going away: nothing more is read from this connection.
                state = .closed
                throw DaemonError(description: "the collector finished the stream")
            default:
                let expected = state
                state = .closed
                throw DaemonError(description: "the collector sent \(frame.type) while \(expected)")
            }
        }
        return reply
    }

    /// The end of the stream: STOP, after which the collector answers FINISH.
    mutating func stop() -> [UInt8] {
        state = .awaitingFinish
        return FrameStreams.controlFrame(.stop)
    }

    /// The connection is gone.
    mutating func reset() {
        state = .closed
        input.removeAll()
    }
}
