// SPDX-License-Identifier: GPL-2.0-or-later
@testable import DNSWire

/// Builds test packets byte by byte, independently of the code under test.
struct QueryFixture {
    var id: UInt16 = 0x1234
    var flags: UInt16 = 0x0100  // RD
    var name = "www.Example.com"
    var type: UInt16 = 1
    var queryClass: UInt16 = 1
    var questionCount: UInt16 = 1
    /// nil: no OPT record.
    var ednsOptions: [(code: UInt16, data: [UInt8])]? = nil
    var dnssecOK = false
    var ednsPayloadSize: UInt16 = 1232
    var extraRecords: [[UInt8]] = []  // raw additional records placed before the OPT
    var extraQuestions: [[UInt8]] = []  // raw questions after the first
    var source: IPAddress = IPAddress("192.0.2.10")!
    var destination: IPAddress = IPAddress("198.51.100.53")!
    var sourcePort: UInt16 = 40000
    var destinationPort: UInt16 = 53
    var ipv6ExtensionHeaders: [(type: UInt8, body: [UInt8])] = []

    static func wireName(_ text: String) -> [UInt8] {
        var bytes: [UInt8] = []
        for label in text.split(separator: ".") {
            bytes.append(UInt8(label.utf8.count))
            bytes += Array(label.utf8)
        }
        return bytes + [0]
    }

    var dnsMessage: [UInt8] {
        var message: [UInt8] = []
        let additional = UInt16(extraRecords.count + (ednsOptions == nil ? 0 : 1))
        for value in [id, flags, questionCount, 0, 0, additional] { message += be16(value) }
        message += Self.wireName(name) + be16(type) + be16(queryClass)
        for question in extraQuestions { message += question }
        for record in extraRecords { message += record }
        if let options = ednsOptions {
            var data: [UInt8] = []
            for option in options { data += be16(option.code) + be16(UInt16(option.data.count)) + option.data }
            message += [0] + be16(41) + be16(ednsPayloadSize) + [0, 0] + be16(dnssecOK ? 0x8000 : 0) + be16(UInt16(data.count)) + data
        }
        return message
    }

    func packet(dns: [UInt8]? = nil) -> [UInt8] {
        let payload = dns ?? dnsMessage
        var udp = be16(sourcePort) + be16(destinationPort) + be16(UInt16(8 + payload.count)) + [0, 0] + payload
        switch (source, destination) {
        case (.v4, .v4):
            var header: [UInt8] = [0x45, 0] + be16(UInt16(20 + udp.count)) + [0, 1, 0x40, 0, 64, 17, 0, 0]
            header += source.bytes + destination.bytes
            return header + udp
        default:
            var extensions: [UInt8] = []
            var next: UInt8 = 17
            for header in ipv6ExtensionHeaders.reversed() {
                extensions = [next] + header.body + extensions
                next = header.type
            }
            udp = extensions + udp
            return [0x60, 0, 0, 0] + be16(UInt16(udp.count)) + [next, 64] + source.bytes + destination.bytes + udp
        }
    }
}

func be16(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xff)] }

func decode(_ bytes: [UInt8]) -> DecodeResult { QueryDecoder.decode(packet: bytes.span) }

func decodedQuery(_ bytes: [UInt8]) -> DNSQuery? {
    if case .query(let query) = decode(bytes) { return query }
    return nil
}

func notDNSReason(_ bytes: [UInt8]) -> NotDNSReason? {
    switch decode(bytes) {
    case .notDNS(let reason), .unreadableAnswer(let reason): return reason
    case .query: return nil
    }
}

/// A forged answer taken apart by a parser written for the tests.
struct ParsedAnswer {
    struct Record {
        var owner: [UInt8]  // wire name, decompressed, lowercase not applied
        var type: UInt16
        var recordClass: UInt16
        var ttl: UInt32
        var data: [UInt8]
        var dataOffset: Int
    }
    var ipVersion: Int
    var source: [UInt8]
    var destination: [UInt8]
    var sourcePort: UInt16
    var destinationPort: UInt16
    var ipChecksumValid: Bool
    var udpChecksumValid: Bool
    var lengthsConsistent: Bool
    var dns: [UInt8]
    var id: UInt16 { UInt16(dns[0]) << 8 | UInt16(dns[1]) }
    var flags: UInt16 { UInt16(dns[2]) << 8 | UInt16(dns[3]) }
    var rcode: UInt16 { flags & 0x000f }
    var counts: [Int] { (0..<4).map { Int(dns[4 + 2 * $0]) << 8 | Int(dns[5 + 2 * $0]) } }
    var questionBytes: [UInt8] = []
    var answers: [Record] = []
    var authority: [Record] = []
    var additional: [Record] = []

    init(_ packet: [UInt8]) {
        ipVersion = Int(packet[0] >> 4)
        let headerLength = ipVersion == 4 ? 20 : 40
        var pseudo: [UInt8]
        if ipVersion == 4 {
            source = Array(packet[12..<16])
            destination = Array(packet[16..<20])
            ipChecksumValid = onesComplement(Array(packet[0..<20])) == 0xffff
            lengthsConsistent = Int(packet[2]) << 8 | Int(packet[3]) == packet.count
            pseudo = source + destination + [0, 17]
        } else {
            source = Array(packet[8..<24])
            destination = Array(packet[24..<40])
            ipChecksumValid = true
            lengthsConsistent = Int(packet[4]) << 8 | Int(packet[5]) == packet.count - 40
            pseudo = source + destination + [0, 17]
        }
        let udp = Array(packet[headerLength...])
        sourcePort = UInt16(udp[0]) << 8 | UInt16(udp[1])
        destinationPort = UInt16(udp[2]) << 8 | UInt16(udp[3])
        lengthsConsistent = lengthsConsistent && Int(udp[4]) << 8 | Int(udp[5]) == udp.count
        pseudo += be16(UInt16(udp.count))
        udpChecksumValid = onesComplement(pseudo + udp) == 0xffff
        dns = Array(udp[8...])
        var offset = 12
        let nameEnd = Self.skipName(dns, offset)
        questionBytes = Array(dns[offset..<(nameEnd + 4)])
        offset = nameEnd + 4
        let counts = self.counts
        for section in 1...3 {
            for _ in 0..<counts[section] {
                let owner = Self.readName(dns, offset)
                let end = Self.skipName(dns, offset)
                let type = UInt16(dns[end]) << 8 | UInt16(dns[end + 1])
                let recordClass = UInt16(dns[end + 2]) << 8 | UInt16(dns[end + 3])
                let ttl = UInt32(dns[end + 4]) << 24 | UInt32(dns[end + 5]) << 16 | UInt32(dns[end + 6]) << 8 | UInt32(dns[end + 7])
                let length = Int(dns[end + 8]) << 8 | Int(dns[end + 9])
                let record = Record(owner: owner, type: type, recordClass: recordClass, ttl: ttl,
                                    data: Array(dns[(end + 10)..<(end + 10 + length)]), dataOffset: end + 10)
                switch section {
                case 1: answers.append(record)
                case 2: authority.append(record)
                default: additional.append(record)
                }
                offset = end + 10 + length
            }
        }
        lengthsConsistent = lengthsConsistent && offset == dns.count
    }

    static func skipName(_ dns: [UInt8], _ start: Int) -> Int {
        var offset = start
        while dns[offset] != 0 {
            if dns[offset] & 0xc0 == 0xc0 { return offset + 2 }
            offset += Int(dns[offset]) + 1
        }
        return offset + 1
    }

    static func readName(_ dns: [UInt8], _ start: Int) -> [UInt8] {
        var result: [UInt8] = []
        var offset = start
        var jumps = 0
        while dns[offset] != 0, jumps < 20 {
            if dns[offset] & 0xc0 == 0xc0 {
                offset = Int(dns[offset] & 0x3f) << 8 | Int(dns[offset + 1])
                jumps += 1
                continue
            }
            let length = Int(dns[offset])
            result += dns[offset...(offset + length)]
            offset += length + 1
        }
        return result + [0]
    }

    /// EDNS options of the OPT record, if any.
    var ednsOptions: [UInt16: [UInt8]]? {
        guard let opt = additional.first(where: { $0.type == 41 }) else { return nil }
        var options: [UInt16: [UInt8]] = [:]
        var offset = 0
        while offset + 4 <= opt.data.count {
            let code = UInt16(opt.data[offset]) << 8 | UInt16(opt.data[offset + 1])
            let length = Int(opt.data[offset + 2]) << 8 | Int(opt.data[offset + 3])
            options[code] = Array(opt.data[(offset + 4)..<(offset + 4 + length)])
            offset += 4 + length
        }
        return options
    }
}

func onesComplement(_ bytes: [UInt8]) -> UInt16 {
    var sum: UInt32 = 0
    var index = 0
    while index + 1 < bytes.count {
        sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1])
        index += 2
    }
    if index < bytes.count { sum += UInt32(bytes[index]) << 8 }
    while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
    return UInt16(sum)
}
