// SPDX-License-Identifier: GPL-2.0-or-later

/// What a primary's answer to an AXFR or IXFR says, once it is complete.
public enum TransferOutcome: Sendable {
    /// The copy held is current: a single SOA (RFC 1995 §4).
    case upToDate(ResourceRecord)
    /// The whole zone (an AXFR, or an IXFR answered in AXFR form).
    case full(soa: ResourceRecord, records: [ResourceRecord])
    /// The differences from the serial held to the new one, in order.
    case incremental(soa: ResourceRecord, differences: [ZoneDifference])

}

/// One IXFR difference sequence: from the `from` version to `to`.
public struct ZoneDifference: Sendable {
    public var from: ResourceRecord
    public var to: ResourceRecord
    public var deleted: [ResourceRecord] = []
    public var added: [ResourceRecord] = []
}

/// Reads the records of a transfer answer as they arrive, message by message
/// (RFC 5936 §2.2 for AXFR, RFC 1995 §4 for IXFR), and tells when it is complete.
public struct TransferAssembler: Sendable {
    enum State {
        case start
        case afterFirst
        case full([ResourceRecord])
        case deleting(ZoneDifference, done: [ZoneDifference])
        case adding(ZoneDifference, done: [ZoneDifference])
        case complete(TransferOutcome)
    }

    let zone: WireName
    let heldSerial: UInt32?
    /// Bounds the memory a primary can make dnsgate hold for one transfer:
    /// the records' uncompressed size (names in full, RDATA, fixed fields),
    /// whatever compression made of them on the wire.
    let maximumBytes: Int
    private var state = State.start
    private var first: ResourceRecord? = nil
    private var firstSerial: UInt32 = 0
    private var bytes = 0
    /// Records left out: another class than IN, or an owner outside the zone
    /// (RFC 5936 §3.3: ignored; an RPZ is IN, and its triggers are below its apex).
    public private(set) var ignored = 0

    public init(zone: WireName, heldSerial: UInt32?, maximumBytes: Int) {
        self.zone = zone
        self.heldSerial = heldSerial
        self.maximumBytes = maximumBytes
    }

    /// Takes the answer records of one message; returns the outcome once the
    /// transfer is complete, nil while more messages are to come.
    public mutating func add(_ records: [ResourceRecord]) throws(ZoneTransferError) -> TransferOutcome? {
        for record in records { try add(record) }
        if case .complete(let outcome) = state { return outcome }
        // One SOA, at the end of a message, not newer than the copy held: up to date.
        if case .afterFirst = state, let first, let heldSerial, !serialIsNewer(firstSerial, than: heldSerial) {
            state = .complete(.upToDate(first))
            return .upToDate(first)
        }
        return nil
    }

    private mutating func add(_ record: ResourceRecord) throws(ZoneTransferError) {
        bytes += record.owner.wire.count + record.data.count + 24
        guard bytes <= maximumBytes else {
            throw ZoneTransferError("the transfer holds more than \(maximumBytes) bytes of records (max_size)")
        }
        guard record.type != .soa || record.owner == zone else {
            throw ZoneTransferError("SOA of \(record.owner) inside the transfer of \(zone)")
        }
        guard record.recordClass == .internet, record.owner.isSubdomain(of: zone) else {
            ignored += 1
            return
        }
        let serial = record.type == .soa ? try StartOfAuthority(record).serial : 0
        switch state {
        case .start:
            guard record.type == .soa else { throw ZoneTransferError("the transfer does not start with the zone's SOA") }
            first = record
            firstSerial = serial
            state = .afterFirst
        case .afterFirst:
            if record.type == .soa {
                if serial == firstSerial {
                    state = .complete(.full(soa: first!, records: []))  // the SOA alone: an empty zone
                } else {
                    guard serial == heldSerial else {
                        throw ZoneTransferError("the differences start at serial \(serial), not at the \(heldSerial.map(String.init) ?? "no") serial held")
                    }
                    state = .deleting(ZoneDifference(from: record, to: record), done: [])
                }
            } else {
                state = .full([record])
            }
        case .full(var records):
            if record.type == .soa {
                guard serial == firstSerial else { throw ZoneTransferError("the transfer ends with serial \(serial), not \(firstSerial)") }
                state = .complete(.full(soa: first!, records: records))
            } else {
                state = .start  // let `records` be uniquely referenced while it grows
                records.append(record)
                state = .full(records)
            }
        case .deleting(var difference, let done):
            if record.type == .soa {
                difference.to = record
                state = .adding(difference, done: done)
            } else {
                state = .start
                difference.deleted.append(record)
                state = .deleting(difference, done: done)
            }
        case .adding(var difference, var done):
            if record.type == .soa {
                let reached = try StartOfAuthority(difference.to).serial
                guard serial == reached else {
                    throw ZoneTransferError("a difference starts at serial \(serial) after one that ended at \(reached)")
                }
                state = .start
                done.append(difference)
                state = serial == firstSerial
                    ? .complete(.incremental(soa: first!, differences: done))
                    : .deleting(ZoneDifference(from: record, to: record), done: done)
            } else {
                state = .start
                difference.added.append(record)
                state = .adding(difference, done: done)
            }
        case .complete:
            throw ZoneTransferError("records after the end of the transfer")
        }
    }
}
