// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire

/// The records of a zone held by a secondary: built from an AXFR, changed
/// by IXFR differences, and kept on disk as a master file (the last good
/// copy, which the RPZ reader compiles like any RPZ file).
public struct ZoneContents: Sendable {
    public let zone: WireName
    public private(set) var soa: ResourceRecord
    /// Each record's presentation without its TTL, to its TTL: what IXFR
    /// deletions are matched on (the same bytes render the same text).
    public private(set) var records: [String: UInt32] = [:]

    public var serial: UInt32 { (try? StartOfAuthority(soa).serial) ?? 0 }
    public var count: Int { records.count }

    public init(zone: WireName, soa: ResourceRecord, records: [ResourceRecord]) {
        self.zone = zone
        self.soa = soa
        self.records.reserveCapacity(records.count)
        for record in records where record.type != .soa {
            self.records[Self.key(record)] = record.ttl
        }
    }

    /// Applies IXFR differences in order. A deletion of a record not held
    /// means the copies have drifted: the caller falls back to AXFR.
    public mutating func apply(_ differences: [ZoneDifference]) throws(ZoneTransferError) {
        var next = records
        for difference in differences {
            for record in difference.deleted where record.type != .soa {
                guard next.removeValue(forKey: Self.key(record)) != nil else {
                    throw ZoneTransferError("IXFR deletes \(Self.key(record)), which the copy does not hold")
                }
            }
            for record in difference.added where record.type != .soa {
                next[Self.key(record)] = record.ttl
            }
        }
        records = next
        if let last = differences.last { soa = last.to }
    }

    /// The zone as a master file: `$ORIGIN`, the SOA, then every record with
    /// absolute owners, one per line, sorted (so a copy is reproducible).
    public func masterFile() -> String {
        var text = "; zone \(zone) serial \(serial), written by dnsgate from a zone transfer\n$ORIGIN \(zone)\n"
        text += Self.line(Self.key(soa), ttl: soa.ttl)
        for key in records.keys.sorted() { text += Self.line(key, ttl: records[key]!) }
        return text + Self.trailer(records.count)
    }

    /// The last line: a copy cut short lacks it, or counts other records.
    private static func trailer(_ count: Int) -> String { "; end: \(count) records\n" }

    private static func line(_ key: String, ttl: UInt32) -> String {
        let owner = key.prefix { $0 != " " }
        return "\(owner) \(ttl) \(key.dropFirst(owner.count + 1))\n"
    }

    /// Reads back a copy written by `masterFile`. Anything else is refused:
    /// a copy that does not read back is transferred again in full.
    public init(masterFile text: String, zone: WireName) throws(ZoneTransferError) {
        self.zone = zone
        var soa: ResourceRecord? = nil
        var records: [String: UInt32] = [:]
        var number = 0
        var complete = false
        for line in text.split(separator: "\n") {  // bounded by the text
            number += 1
            guard !complete else { throw ZoneTransferError("line \(number) follows the end of the copy") }
            if line.hasPrefix("; end: ") {
                guard line + "\n" == Self.trailer(records.count) else {
                    throw ZoneTransferError("the copy holds \(records.count) records, not what its last line says")
                }
                complete = true
                continue
            }
            if line.hasPrefix(";") || line.hasPrefix("$ORIGIN") { continue }
            let fields = line.split(separator: " ", maxSplits: 2)
            guard fields.count == 3, let ttl = UInt32(fields[1]) else {
                throw ZoneTransferError("line \(number) is not a record written by dnsgate")
            }
            let key = "\(fields[0]) \(fields[2])"
            if soa == nil {
                soa = try Self.startOfAuthority(fields[2], owner: String(fields[0]), ttl: ttl, zone: zone)
            } else {
                records[key] = ttl
            }
        }
        guard let soa else { throw ZoneTransferError("the copy holds no SOA") }
        guard complete else { throw ZoneTransferError("the copy is cut short (no end line)") }
        self.soa = soa
        self.records = records
    }

    private static func startOfAuthority(_ text: Substring, owner: String, ttl: UInt32, zone: WireName) throws(ZoneTransferError) -> ResourceRecord {
        let fields = text.split(separator: " ")
        guard fields.count == 9, fields[0] == "IN", fields[1] == "SOA", WireName(owner) == zone,
              let primary = WireName(String(fields[2])), let mailbox = WireName(String(fields[3])) else {
            throw ZoneTransferError("the copy does not start with the zone's SOA")
        }
        var data = primary.wire + mailbox.wire
        for field in fields[4...] {
            guard let value = UInt32(field) else { throw ZoneTransferError("bad SOA number \(field)") }
            data.appendBigEndian(value)
        }
        return ResourceRecord(owner: zone, type: .soa, ttl: ttl, data: data)
    }

    /// `owner CLASS TYPE RDATA` in master-file syntax (RFC 1035 §5, and
    /// RFC 3597's `\#` form for types without a text form here). Types and
    /// classes by their IANA mnemonics (`QueryType`, `QueryClass`): a copy
    /// written before they were (`TYPE33` for SRV) no longer matches an IXFR's
    /// deletions, and the zone is transferred whole once.
    public static func key(_ record: ResourceRecord) -> String {
        "\(record.owner) \(record.recordClass) \(record.type) \(presentation(record))"
    }

    static func presentation(_ record: ResourceRecord) -> String {
        let data = record.data
        var reader = MessageReader(data)
        func generic() -> String {
            "\\# \(data.count)" + (data.isEmpty ? "" : " " + data.map { String($0, radix: 16, uppercase: true) }
                .map { $0.count == 1 ? "0" + $0 : $0 }.joined())
        }
        switch record.type {
        case .a where data.count == 4, .aaaa where data.count == 16:
            return IPAddress(bytes: data)!.description
        case .ns, .cname, .ptr, .dname:
            guard let name = try? reader.readName(), reader.offset == data.count else { return generic() }
            return name.description
        case .soa:
            guard let soa = try? StartOfAuthority(record) else { return generic() }
            return "\(soa.primaryServer) \(soa.mailbox) \(soa.serial) \(soa.refresh) \(soa.retry) \(soa.expire) \(soa.minimum)"
        case .mx:
            guard let preference = try? reader.read16(), let name = try? reader.readName(), reader.offset == data.count else {
                return generic()
            }
            return "\(preference) \(name)"
        case .txt:
            var strings: [String] = []
            while reader.offset < data.count {  // each string consumes at least its length byte
                guard let length = try? reader.read8(), let bytes = try? reader.readBytes(Int(length)) else { return generic() }
                strings.append("\"" + bytes.map { byte in
                    (0x30...0x39).contains(byte) || (0x41...0x5a).contains(byte) || (0x61...0x7a).contains(byte)
                        || " -_.,:/=+*!?@#%&".utf8.contains(byte)
                        ? String(UnicodeScalar(byte)) : "\\" + String(format3: byte)
                }.joined() + "\"")
            }
            return strings.joined(separator: " ")
        default:
            return generic()
        }
    }
}

extension String {
    init(format3 byte: UInt8) {
        let digits = String(byte)
        self = String(repeating: "0", count: 3 - digits.count) + digits
    }
}
