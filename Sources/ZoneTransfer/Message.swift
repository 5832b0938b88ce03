// SPDX-License-Identifier: GPL-2.0-or-later
public import DNSWire

/// The DNS opcode the transfer path answers.
public enum Opcode {
    public static let notify: UInt8 = 4
}

/// One resource record, its RDATA with every name a primary may compress
/// written out in full: IXFR deletions are matched on exactly these bytes.
/// Equal records differ at most in TTL (RFC 2181 §5).
public struct ResourceRecord: Hashable, Sendable {
    public var owner: WireName
    public var type: QueryType
    public var recordClass: QueryClass
    public var ttl: UInt32
    public var data: [UInt8]

    public init(owner: WireName, type: QueryType, recordClass: QueryClass = .internet, ttl: UInt32, data: [UInt8]) {
        self.owner = owner
        self.type = type
        self.recordClass = recordClass
        self.ttl = ttl
        self.data = data
    }

    public static func == (lhs: ResourceRecord, rhs: ResourceRecord) -> Bool {
        lhs.owner == rhs.owner && lhs.type == rhs.type && lhs.recordClass == rhs.recordClass && lhs.data == rhs.data
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(owner)
        hasher.combine(type)
        hasher.combine(data)
    }

    /// The record in wire form, its names uncompressed.
    public var wire: [UInt8] {
        var bytes = owner.wire
        bytes.appendBigEndian(type.rawValue)
        bytes.appendBigEndian(recordClass.rawValue)
        bytes.appendBigEndian(ttl)
        bytes.appendBigEndian(UInt16(data.count))
        return bytes + data
    }
}

/// The SOA fields the transfer path acts on (RFC 1035 §3.3.13).
public struct StartOfAuthority: Sendable, Equatable {
    public var primaryServer: WireName
    public var mailbox: WireName
    public var serial: UInt32
    public var refresh: UInt32
    public var retry: UInt32
    public var expire: UInt32
    public var minimum: UInt32

    public init(_ record: ResourceRecord) throws(ZoneTransferError) {
        guard record.type == .soa else { throw ZoneTransferError("not an SOA record") }
        var reader = MessageReader(record.data)
        primaryServer = try reader.readName()
        mailbox = try reader.readName()
        serial = try reader.read32()
        refresh = try reader.read32()
        retry = try reader.read32()
        expire = try reader.read32()
        minimum = try reader.read32()
    }
}

/// Serial number arithmetic (RFC 1982): whether `serial` is newer than `than`.
public func serialIsNewer(_ serial: UInt32, than other: UInt32) -> Bool {
    serial != other && (serial &- other) < 0x8000_0000
}

/// A DNS message read in full (names decompressed): what a primary sent.
public struct DNSMessage: Sendable {
    public struct Question: Sendable, Equatable {
        public var name: WireName
        public var type: QueryType
        public var questionClass: QueryClass
    }

    public var id: UInt16
    public var flags: UInt16
    public var questions: [Question] = []
    public var answers: [ResourceRecord] = []
    public var authority: [ResourceRecord] = []
    public var additional: [ResourceRecord] = []
    /// Where the last additional record starts, when it is a TSIG record
    /// (RFC 8945 §5.2: a TSIG anywhere else is an error).
    public var signatureOffset: Int? = nil

    public var isResponse: Bool { flags & 0x8000 != 0 }
    public var opcode: UInt8 { UInt8((flags >> 11) & 0xf) }
    public var responseCode: ResponseCode { ResponseCode(rawValue: UInt8(flags & 0xf)) }

    /// Most records one message may carry: a 64 KB message holds fewer.
    static let maximumRecords = 65535 / 11

    public init(_ bytes: [UInt8]) throws(ZoneTransferError) {
        var reader = MessageReader(bytes)
        id = try reader.read16()
        flags = try reader.read16()
        let counts = [try reader.read16(), try reader.read16(), try reader.read16(), try reader.read16()]
        guard counts.reduce(0, { $0 + Int($1) }) <= Self.maximumRecords else {
            throw ZoneTransferError("message announces more records than it can hold")
        }
        for _ in 0..<counts[0] {
            questions.append(Question(name: try reader.readName(), type: QueryType(rawValue: try reader.read16()),
                                      questionClass: QueryClass(rawValue: try reader.read16())))
        }
        for _ in 0..<counts[1] { answers.append(try reader.readRecord()) }
        for _ in 0..<counts[2] { authority.append(try reader.readRecord()) }
        for index in 0..<Int(counts[3]) {
            let start = reader.offset
            let record = try reader.readRecord()
            if record.type == .tsig {
                guard index == Int(counts[3]) - 1 else { throw ZoneTransferError("TSIG record is not the last record") }
                signatureOffset = start
            }
            additional.append(record)
        }
    }

    /// The TSIG record that signs the message, if any.
    public var signature: ResourceRecord? { signatureOffset == nil ? nil : additional.last }
}

/// Reads a message front to back; compression pointers must point before
/// themselves, so every name is read in bounded steps.
struct MessageReader {
    let bytes: [UInt8]
    var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func read8() throws(ZoneTransferError) -> UInt8 {
        guard offset < bytes.count else { throw ZoneTransferError("message ends early") }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func read16() throws(ZoneTransferError) -> UInt16 {
        UInt16(try read8()) << 8 | UInt16(try read8())
    }

    mutating func read32() throws(ZoneTransferError) -> UInt32 {
        UInt32(try read16()) << 16 | UInt32(try read16())
    }

    mutating func readBytes(_ count: Int) throws(ZoneTransferError) -> [UInt8] {
        guard count >= 0, offset + count <= bytes.count else { throw ZoneTransferError("message ends early") }
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }

    /// A name at the reading position, its pointers followed.
    mutating func readName() throws(ZoneTransferError) -> WireName {
        var wire: [UInt8] = []
        var position = offset
        var resumeAt: Int? = nil
        while true {  // every pointer goes strictly back, every label forward: bounded by the message
            guard position < bytes.count else { throw ZoneTransferError("name runs past the message") }
            let byte = bytes[position]
            if byte == 0 {
                position += 1
                break
            }
            if byte & 0xc0 == 0xc0 {
                guard position + 1 < bytes.count else { throw ZoneTransferError("name runs past the message") }
                let target = Int(byte & 0x3f) << 8 | Int(bytes[position + 1])
                guard target < position else { throw ZoneTransferError("compression pointer does not point back") }
                if resumeAt == nil { resumeAt = position + 2 }
                position = target
                continue
            }
            guard byte & 0xc0 == 0 else { throw ZoneTransferError("unknown label type") }
            let count = Int(byte)
            guard position + 1 + count <= bytes.count else { throw ZoneTransferError("label runs past the message") }
            guard wire.count + count + 2 <= 255 else { throw ZoneTransferError("name longer than 255 bytes") }
            wire += bytes[position...(position + count)]
            position += 1 + count
        }
        offset = resumeAt ?? position
        wire.append(0)
        return WireName(wire: wire)
    }

    mutating func readRecord() throws(ZoneTransferError) -> ResourceRecord {
        let owner = try readName()
        let type = QueryType(rawValue: try read16())
        let recordClass = QueryClass(rawValue: try read16())
        let ttl = try read32()
        let length = Int(try read16())
        let end = offset + length
        guard end <= bytes.count else { throw ZoneTransferError("record data runs past the message") }
        let data: [UInt8]
        if let layout = Self.nameLayout[type.rawValue] {
            var expanded: [UInt8] = []
            for part in layout {
                switch part {
                case .name: expanded += try readName().wire
                case .bytes(let count): expanded += try readBytes(count)
                }
                guard offset <= end else { throw ZoneTransferError("record data longer than its length") }
            }
            guard offset == end else { throw ZoneTransferError("record data of type \(type) has the wrong length") }
            data = expanded
        } else {
            data = try readBytes(length)
        }
        return ResourceRecord(owner: owner, type: type, recordClass: recordClass, ttl: ttl, data: data)
    }

    enum Part { case name, bytes(Int) }
    /// The RFC 1035 types whose names a server may compress (RFC 3597 §4).
    static let nameLayout: [UInt16: [Part]] = [
        2: [.name], 3: [.name], 4: [.name], 5: [.name], 7: [.name], 8: [.name], 9: [.name], 12: [.name],
        6: [.name, .name, .bytes(20)], 14: [.name, .name], 15: [.bytes(2), .name],
    ]
}

extension [UInt8] {
    mutating func appendBigEndian(_ value: UInt16) {
        append(UInt8(value >> 8))
        append(UInt8(value & 0xff))
    }

    mutating func appendBigEndian(_ value: UInt32) {
        appendBigEndian(UInt16(value >> 16))
        appendBigEndian(UInt16(value & 0xffff))
    }

    func bigEndian16(at offset: Int) -> UInt16 { UInt16(self[offset]) << 8 | UInt16(self[offset + 1]) }
}

/// The messages dnsgate sends a primary, and its answer to a NOTIFY.
public enum MessageBuilder {
    /// A query for the zone's SOA, or a transfer (`.axfr`, or
    /// `.ixfr` with the SOA of the copy held in the authority section, RFC 1995 §3).
    public static func query(id: UInt16, zone: WireName, type: QueryType, held: ResourceRecord? = nil) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.appendBigEndian(id)
        bytes.appendBigEndian(UInt16(0))  // a query, no recursion wanted
        bytes.appendBigEndian(UInt16(1))
        bytes.appendBigEndian(UInt16(0))
        bytes.appendBigEndian(UInt16(held == nil ? 0 : 1))
        bytes.appendBigEndian(UInt16(0))
        bytes += zone.wire
        bytes.appendBigEndian(type.rawValue)
        bytes.appendBigEndian(QueryClass.internet.rawValue)
        if let held { bytes += held.wire }
        return bytes
    }

    /// The answer to a NOTIFY (RFC 1996 §4.7): its header and question,
    /// QR and AA set, with `responseCode`.
    public static func notifyResponse(to request: DNSMessage, responseCode: ResponseCode) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.appendBigEndian(request.id)
        bytes.appendBigEndian(UInt16(0x8000 | 0x0400) | UInt16(Opcode.notify) << 11 | UInt16(responseCode.rawValue))
        bytes.appendBigEndian(UInt16(request.questions.count))
        bytes += [0, 0, 0, 0, 0, 0]
        for question in request.questions {
            bytes += question.name.wire
            bytes.appendBigEndian(question.type.rawValue)
            bytes.appendBigEndian(question.questionClass.rawValue)
        }
        return bytes
    }
}
