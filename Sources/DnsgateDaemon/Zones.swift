// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import DnsgatePolicy
import Foundation
import Logging
import NetfilterQueue
import Synchronization
import ZoneTransfer

/// Lists that follow a Response Policy Zone on its primaries (`zone:`): an
/// AXFR at first, IXFR after (RFC 1995, with AXFR when the primary answers
/// with the whole zone, refuses IXFR, or the copies drifted), on NOTIFY from
/// a primary (RFC 1996) or by the SOA's refresh and retry timers. Each new
/// serial is written to `cache_dir/NAME.list` as a master file, the last good
/// copy that start-up and reloads compile, then a reload swaps it in. All of
/// it on the zones thread, never on a packet's path.
final class Zones: Sendable {
    struct Followed: Sendable, Equatable {
        var name: String
        var source: ZoneSource
        var cachePath: String
        var maximumBytes: Int
    }

    /// What `stats` reports per zone; kept next to the copy (`NAME.list.meta`).
    struct Status: Codable, Sendable {
        var zone: String
        var serial: UInt32?
        var records = 0
        var primary: String?
        var lastCheck: Date?
        /// When the copy was last transferred, or confirmed current.
        var lastSuccess: Date?
        var lastTransfer: Date?
        var lastError: String?
        var axfr: UInt64 = 0
        var ixfr: UInt64 = 0
        var upToDate: UInt64 = 0
        var failures: UInt64 = 0
        var notifies: UInt64 = 0
        var refresh: UInt32?
        var retry: UInt32?
        var expire: UInt32?

        /// The SOA expire has passed since the last success: the copy is still
        /// enforced (see the README), and reported.
        func expired(now: Date) -> Bool {
            guard let lastSuccess, let expire else { return false }
            return now.timeIntervalSince(lastSuccess) > TimeInterval(expire)
        }
    }

    /// Timers before any SOA is known (RFC 1912's usual values, retry shortened:
    /// a zone without a copy is asked for again soon).
    static let defaultRefresh: UInt32 = 3600
    static let defaultRetry: UInt32 = 10
    /// Bounds on the wait for one answer and on a whole transfer.
    static let readTimeoutMilliseconds: Int32 = 10_000
    static let transferDeadline = 600.0

    private struct Shared: Sendable {
        var zones: [Followed] = []
        var statuses: [String: Status] = [:]
        /// When each zone is next checked (a NOTIFY makes it now).
        var due: [String: Date] = [:]
        /// Zones whose copy in memory must not be trusted: the compiler found
        /// none usable on disk (removed, damaged), so they are transferred in full.
        var forget: Set<String> = []
        /// When a NOTIFY was last ignored with a log line (at most one a minute).
        var lastIgnoredLog = Date.distantPast
    }
    private let guarded = Mutex(Shared())
    private let stopping = Atomic<Bool>(false)
    let logger: Logger
    let mark: UInt32
    /// NOTIFY sockets, UDP and TCP, bound at start-up (before privileges are dropped).
    let notifySockets: [DatagramSocket]
    let notifyListeners: [StreamListener]
    let ignoredNotifies = Atomic<UInt64>(0)

    init(logger: Logger, mark: UInt32, notifyListen: [ServerAddress]) throws(SystemError) {
        self.logger = logger
        self.mark = mark
        var sockets: [DatagramSocket] = []
        var listeners: [StreamListener] = []
        for address in notifyListen {
            sockets.append(try DatagramSocket(binding: address.address.bytes, port: address.port, mark: mark,
                                              timeoutMilliseconds: 250, local: "\(address) (notify_listen, UDP)"))
            listeners.append(try StreamListener(binding: address.address.bytes, port: address.port, mark: mark,
                                                timeoutMilliseconds: 250, local: "\(address) (notify_listen, TCP)"))
        }
        notifySockets = sockets
        notifyListeners = listeners
    }

    /// Takes the zone lists of a (re)loaded config: statuses of zones that
    /// stay are kept, others read from disk.
    func configure(_ config: DnsgateConfig) {
        let zones: [Followed] = (config.domainLists + config.ipLists).compactMap { list in
            guard case .zone(let source) = list.source else { return nil }
            return Followed(name: list.name, source: source, cachePath: list.cachePath(in: config.cacheDirectory),
                            maximumBytes: list.maximumBytes)
        }
        if !zones.isEmpty {
            try? FileManager.default.createDirectory(atPath: config.cacheDirectory, withIntermediateDirectories: true,
                                                     attributes: [.posixPermissions: 0o750])
        }
        guarded.withLock { shared in
            var statuses: [String: Status] = [:]
            var due: [String: Date] = [:]
            for zone in zones {
                if let known = shared.statuses[zone.name], known.zone == zone.source.zone,
                   shared.zones.first(where: { $0.name == zone.name }) == zone {
                    statuses[zone.name] = known
                    due[zone.name] = shared.due[zone.name] ?? Date()
                    continue
                }
                var status = Self.readStatus(zone) ?? Status(zone: zone.source.zone)
                if status.zone != zone.source.zone { status = Status(zone: zone.source.zone) }
                statuses[zone.name] = status
                due[zone.name] = Date()  // checked at once: the copy on disk may be behind
            }
            shared = Shared(zones: zones, statuses: statuses, due: due)
        }
    }

    /// Zone lists whose copy on disk the compiler could not use: transferred
    /// again in full, at once.
    func copiesUnusable(_ names: [String]) {
        guard !names.isEmpty else { return }
        guarded.withLock { shared in
            for name in names where shared.zones.contains(where: { $0.name == name }) {
                shared.forget.insert(name)
                shared.due[name] = Date()
            }
        }
    }

    func status(of name: String) -> Status? { guarded.withLock { $0.statuses[name] } }
    func statuses() -> [(String, Status)] {
        guarded.withLock { shared in shared.zones.compactMap { zone in shared.statuses[zone.name].map { (zone.name, $0) } } }
    }

    var isStopping: Bool { stopping.load(ordering: .relaxed) }
    func stop() { stopping.store(true, ordering: .relaxed) }

    /// Starts the zones thread and one NOTIFY thread per socket; `changed`
    /// runs (on the zones thread) after a zone's copy changed on disk.
    func start(changed: @escaping @Sendable () -> Void) {
        for socket in notifySockets {
            startThread("dnsgate-notify", helper: true) { [self] in
                while !isStopping { receiveNotify(on: socket) }  // each turn waits at most the socket's timeout
            }
        }
        for listener in notifyListeners {
            startThread("dnsgate-notify", helper: true) { [self] in
                while !isStopping { acceptNotify(on: listener) }  // each turn waits at most the timeouts
            }
        }
        startThread("dnsgate-zones", helper: true) { [self] in
            var copies: [String: ZoneContents] = [:]
            while !isStopping {  // ends at shutdown
                let now = Date()
                let dueZones = guarded.withLock { shared in shared.zones.filter { (shared.due[$0.name] ?? now) <= now } }
                var anyChanged = false
                for zone in dueZones where !isStopping {
                    anyChanged = check(zone, copies: &copies) || anyChanged
                }
                let names = Set(guarded.withLock { $0.zones.map(\.name) })
                copies = copies.filter { names.contains($0.key) }
                if anyChanged, !isStopping { changed() }
                usleep(50_000)
            }
        }
    }

    // MARK: NOTIFY

    /// Answers one NOTIFY from a zone's primary and makes the zone due now;
    /// anything else is ignored (counted), and answered REFUSED when it is a
    /// NOTIFY from elsewhere (as BIND and Knot do).
    func receiveNotify(on socket: DatagramSocket) {
        guard let (bytes, address, port) = try? socket.receive() else { return }
        if let response = answer(notify: bytes, from: address) {
            try? socket.send(response, to: address, port: port)
        }
    }

    /// One NOTIFY over TCP (Knot DNS sends them so): one message in, its
    /// answer out, then the connection is closed; 2 s for it all.
    func acceptNotify(on listener: StreamListener) {
        guard let (connection, address) = try? listener.accept(ioTimeoutMilliseconds: 1000) else { return }
        // Only a primary may hold this thread, and for 2 s at most.
        guard let sender = IPAddress(bytes: address), isPrimary(sender) else {
            ignoredNotifies.add(1, ordering: .relaxed)
            return
        }
        let deadline = StreamConnection.deadline(in: 2)
        // A NOTIFY is a header and a question (and maybe a TSIG): a few hundred bytes.
        guard let prefix = try? connection.read(exactly: 2, deadline: deadline),
              case let length = Int(prefix[0]) << 8 | Int(prefix[1]), length <= 4096,
              let bytes = try? connection.read(exactly: length, deadline: deadline) else { return }
        if let response = answer(notify: bytes, from: address) {
            try? connection.send([UInt8(response.count >> 8), UInt8(response.count & 0xff)] + response)
        }
    }

    private func isPrimary(_ sender: IPAddress) -> Bool {
        guarded.withLock { shared in shared.zones.contains { zone in zone.source.primaries.contains { $0.address == sender } } }
    }

    /// The answer to a NOTIFY message, or nil when none is due.
    func answer(notify bytes: [UInt8], from address: [UInt8]) -> [UInt8]? {
        guard let message = try? DNSMessage(bytes), !message.isResponse, message.opcode == Opcode.notify,
              let question = message.questions.first, message.questions.count == 1 else {
            ignoredNotifies.add(1, ordering: .relaxed)
            return nil
        }
        guard let sender = IPAddress(bytes: address) else { return nil }
        let zoneName = question.name.lowercased.description
        // Every list that follows the zone from this sender (a domain list and
        // an ip list may follow the same RPZ).
        let targets = guarded.withLock { shared in
            shared.zones.filter { zone in
                zone.source.zone == zoneName && zone.source.primaries.contains { $0.address == sender }
            }
        }
        guard let target = targets.first else {
            ignoredNotifies.add(1, ordering: .relaxed)
            let logs = guarded.withLock { shared in
                guard Date().timeIntervalSince(shared.lastIgnoredLog) >= 60 else { return false }
                shared.lastIgnoredLog = Date()
                return true
            }
            if logs { logger.notice("NOTIFY for \(zoneName) from \(sender) ignored: not a primary of a followed zone (logged once a minute)") }
            return MessageBuilder.notifyResponse(to: message, responseCode: .refused)
        }
        var response = MessageBuilder.notifyResponse(to: message, responseCode: .noError)
        if message.signature != nil {
            // A signed NOTIFY gets a signed answer, with the zone's key; a bad signature none.
            guard let key = try? Self.key(of: target) else {
                ignoredNotifies.add(1, ordering: .relaxed)
                return nil
            }
            var session = TSIGSession(key: key)
            do {
                try session.verify(bytes, message, now: UInt64(Date().timeIntervalSince1970))
            } catch {
                ignoredNotifies.add(1, ordering: .relaxed)
                return nil
            }
            session.sign(&response, now: UInt64(Date().timeIntervalSince1970))
        }
        guarded.withLock { shared in
            for zone in targets {
                // A NOTIFY flood from a primary's (spoofed) address costs one check a second at most.
                let earliest = shared.statuses[zone.name]?.lastCheck.map { $0.addingTimeInterval(1) } ?? Date()
                shared.due[zone.name] = max(Date(), min(shared.due[zone.name] ?? .distantFuture, earliest))
                shared.statuses[zone.name]?.notifies += 1
            }
        }
        logger.info("zone \(zoneName): NOTIFY from \(sender)")
        return response
    }

    // MARK: checks and transfers

    static func key(of zone: Followed) throws -> TSIGKey? {
        guard let config = zone.source.tsig else { return nil }
        guard let name = WireName(config.name.hasSuffix(".") ? config.name : config.name + "."),
              let algorithm = TSIGKey.Algorithm(rawValue: config.algorithm) else {
            throw ZoneTransferError("bad TSIG key name or algorithm")
        }
        let text: String
        do {
            text = String(decoding: try readFileBytes(config.secretFile), as: UTF8.self)
        } catch {
            throw ZoneTransferError("cannot read the TSIG secret \(config.secretFile): \(error)")
        }
        do {
            return TSIGKey(name: name, algorithm: algorithm, secret: try TSIGKey.secret(fromFile: text))
        } catch {
            throw ZoneTransferError("TSIG secret \(config.secretFile): \(error)")
        }
    }

    /// Brings one zone up to date from the first primary that answers;
    /// returns true when its copy on disk changed.
    func check(_ zone: Followed, copies: inout [String: ZoneContents]) -> Bool {
        var status = status(of: zone.name) ?? Status(zone: zone.source.zone)
        let now = Date()
        status.lastCheck = now
        let forget = guarded.withLock { $0.forget.remove(zone.name) != nil }
        // A copy in memory counts only while it is the configured zone's and
        // is on disk (what the compiler reads): else it is transferred again.
        if forget || copies[zone.name]?.zone.description != zone.source.zone || !FileManager.default.fileExists(atPath: zone.cachePath) {
            copies[zone.name] = forget ? nil : Self.readCopy(zone)
        }
        var errors: [String] = []
        var changed = false
        var succeeded = false
        for primary in zone.source.primaries where !isStopping {
            do {
                let held = copies[zone.name]
                let key = try Self.key(of: zone)
                let serial = try querySerial(zone, primary: primary, key: key)
                status.primary = primary.description
                if let held, serialIsNewer(held.serial, than: serial) {
                    // A primary behind the copy (rebuilt, lagging): ask the next one; the copy stays.
                    throw ZoneTransferError("serial \(serial) is older than the copy's \(held.serial)")
                }
                if let held, serial == held.serial {
                    status.upToDate += 1
                } else if let (contents, kind) = try transfer(zone, from: primary, key: key, held: held) {
                    try write(contents, for: zone)
                    copies[zone.name] = contents
                    status.serial = contents.serial
                    status.records = contents.count
                    status.lastTransfer = Date()
                    if kind == "ixfr" { status.ixfr += 1 } else { status.axfr += 1 }
                    changed = true
                    logger.info("zone \(zone.source.zone): serial \(contents.serial) by \(kind.uppercased()) from \(primary), \(contents.count) records")
                } else {
                    status.upToDate += 1
                }
                if let soa = try? StartOfAuthority(copies[zone.name]!.soa) {
                    (status.refresh, status.retry, status.expire) = (soa.refresh, soa.retry, soa.expire)
                    status.serial = soa.serial
                    status.records = copies[zone.name]!.count
                }
                status.lastSuccess = Date()
                status.lastError = nil
                succeeded = true
                break
            } catch {
                errors.append("\(primary): \(error)")
            }
        }
        if !succeeded, !isStopping {
            status.failures += 1
            status.lastError = errors.joined(separator: "; ")
                + (copies[zone.name] == nil ? "; no copy yet: the list is empty until a transfer succeeds"
                                            : "; the copy of serial \(copies[zone.name]!.serial) stays in force")
            logger.warning("zone \(zone.source.zone): \(status.lastError!)")
            if status.expired(now: now) {
                logger.error("zone \(zone.source.zone): SOA expire (\(status.expire ?? 0) s) passed since the last transfer; still enforcing serial \(status.serial.map(String.init) ?? "none")")
            }
        }
        let wait = succeeded ? (status.refresh ?? Self.defaultRefresh)
            : min(status.retry ?? Self.defaultRetry, copies[zone.name] == nil ? Self.defaultRetry : UInt32.max)
        // Within a second and a day, whatever the SOA says.
        store(status, for: zone, nextCheck: Date().addingTimeInterval(TimeInterval(min(max(wait, 1), 86_400))))
        return changed
    }

    private func connect(_ primary: ServerAddress) throws -> StreamConnection {
        try StreamConnection(connectingTo: primary.address.bytes, port: primary.port, mark: mark,
                             timeoutMilliseconds: Self.readTimeoutMilliseconds, peer: primary.description)
    }

    /// Sends one signed (when a key is given) query on a new connection.
    private func send(_ type: QueryType, zone: WireName, held: ResourceRecord?, to connection: StreamConnection,
                      key: TSIGKey?) throws -> (UInt16, TSIGSession?) {
        let id = UInt16.random(in: 0...UInt16.max)
        var query = MessageBuilder.query(id: id, zone: zone, type: type, held: held)
        var session = key.map(TSIGSession.init)
        session?.sign(&query, now: UInt64(Date().timeIntervalSince1970))
        try connection.send([UInt8(query.count >> 8), UInt8(query.count & 0xff)] + query)
        return (id, session)
    }

    /// The next message of the answer, checked (ID, question, signature).
    private func receive(from connection: StreamConnection, id: UInt16, zone: WireName, deadline: UInt64,
                         session: inout TSIGSession?) throws -> DNSMessage? {
        guard let prefix = try connection.read(exactly: 2, deadline: deadline) else { return nil }
        let length = Int(prefix[0]) << 8 | Int(prefix[1])
        guard let bytes = try connection.read(exactly: length, deadline: deadline) else {
            throw ZoneTransferError("connection closed")
        }
        let message = try DNSMessage(bytes)
        guard message.id == id, message.isResponse else { throw ZoneTransferError("an answer to another query") }
        if let question = message.questions.first, question.name != zone {
            throw ZoneTransferError("an answer about \(question.name), not \(zone)")
        }
        try session?.verify(bytes, message, now: UInt64(Date().timeIntervalSince1970))
        return message
    }

    /// The primary's serial for the zone (an SOA query over TCP).
    func querySerial(_ zone: Followed, primary: ServerAddress, key: TSIGKey?) throws -> UInt32 {
        guard let apex = WireName(zone.source.zone) else { throw ZoneTransferError("bad zone name") }
        let connection = try connect(primary)
        var (id, session) = try send(.soa, zone: apex, held: nil, to: connection, key: key)
        let deadline = StreamConnection.deadline(in: Double(Self.readTimeoutMilliseconds) / 1000)
        guard let message = try receive(from: connection, id: id, zone: apex, deadline: deadline, session: &session) else {
            throw ZoneTransferError("no answer to the SOA query")
        }
        guard message.responseCode == .noError else {
            throw ZoneTransferError("SOA query answered \(message.responseCode)")
        }
        guard message.flags & 0x0400 != 0,
              let soa = message.answers.first(where: { $0.type == .soa && $0.owner == apex }) else {
            throw ZoneTransferError("the primary is not authoritative for \(apex) (no SOA in an AA answer)")
        }
        return try StartOfAuthority(soa).serial
    }

    /// The zone at the primary's serial: by IXFR from `held` when there is a
    /// copy, by AXFR otherwise or when IXFR cannot be used; nil when the
    /// primary's IXFR answer says the copy is current after all.
    func transfer(_ zone: Followed, from primary: ServerAddress, key: TSIGKey?,
                  held: ZoneContents?) throws -> (ZoneContents, String)? {
        guard let apex = WireName(zone.source.zone) else { throw ZoneTransferError("bad zone name") }
        if let held {
            do {
                switch try transferOnce(apex, type: .ixfr, from: primary, key: key, held: held,
                                         maximumBytes: zone.maximumBytes) {
                case .upToDate: return nil
                case .full(let soa, let records):
                    return (ZoneContents(zone: apex, soa: soa, records: records), "axfr")
                case .incremental(_, let differences):
                    var next = held
                    try next.apply(differences)
                    return (next, "ixfr")
                }
            } catch {
                // Refused, not implemented, drifted copies, a broken stream: the whole zone instead.
                logger.notice("zone \(apex): IXFR from \(primary) not usable (\(error)); asking for AXFR")
            }
        }
        guard case .full(let soa, let records) = try transferOnce(apex, type: .axfr, from: primary, key: key, held: nil,
                                                             maximumBytes: zone.maximumBytes) else {
            throw ZoneTransferError("AXFR did not bring a whole zone")
        }
        return (ZoneContents(zone: apex, soa: soa, records: records), "axfr")
    }

    private func transferOnce(_ apex: WireName, type: QueryType, from primary: ServerAddress, key: TSIGKey?,
                              held: ZoneContents?, maximumBytes: Int) throws -> TransferOutcome {
        let connection = try connect(primary)
        var (id, session) = try send(type, zone: apex, held: held?.soa, to: connection, key: key)
        var assembler = TransferAssembler(zone: apex, heldSerial: held?.serial, maximumBytes: maximumBytes)
        let deadline = StreamConnection.deadline(in: Self.transferDeadline)
        while !StreamConnection.hasPassed(deadline), !isStopping {  // one message a turn, within the deadline
            guard let message = try receive(from: connection, id: id, zone: apex, deadline: deadline, session: &session) else {
                throw ZoneTransferError("the primary closed the connection before the end of the transfer")
            }
            guard message.responseCode == .noError else {
                let kind = type == .ixfr ? "IXFR" : "AXFR"
                throw ZoneTransferError("\(kind) answered \(message.responseCode)")
            }
            if let outcome = try assembler.add(message.answers) {
                try session?.finish()
                return outcome
            }
        }
        throw ZoneTransferError(isStopping ? "stopping" : "the transfer took longer than \(Int(Self.transferDeadline)) s")
    }

    // MARK: the copy on disk

    static func readCopy(_ zone: Followed) -> ZoneContents? {
        guard let apex = WireName(zone.source.zone),
              let bytes = try? readFileBytes(zone.cachePath, maximumBytes: zone.maximumBytes) else { return nil }
        return try? ZoneContents(masterFile: String(decoding: bytes, as: UTF8.self), zone: apex)
    }

    private func write(_ contents: ZoneContents, for zone: Followed) throws {
        let text = contents.masterFile()
        guard text.utf8.count <= zone.maximumBytes else {
            throw ZoneTransferError("the zone's copy would take \(text.utf8.count) bytes, over max_size (\(zone.maximumBytes))")
        }
        try Feeds.writeAtomically(Data(text.utf8), to: zone.cachePath)
    }

    private func store(_ status: Status, for zone: Followed, nextCheck: Date) {
        guarded.withLock { shared in
            guard shared.zones.contains(where: { $0.name == zone.name }) else { return }
            shared.statuses[zone.name] = status
            // A NOTIFY during the check keeps the zone due.
            if let due = shared.due[zone.name], due > (status.lastCheck ?? .distantPast) { return }
            shared.due[zone.name] = nextCheck
        }
        Feeds.writeMetadata(status, besideCopy: zone.cachePath)
    }

    static func readStatus(_ zone: Followed) -> Status? { Feeds.readMetadata(besideCopy: zone.cachePath) }
}
