// SPDX-License-Identifier: GPL-2.0-or-later
import Foundation
import Logging
import NetfilterQueue
import Synchronization

/// The stats socket (SPEC §4): one command line in, a reply out. Each client
/// is served on a thread of its own with a deadline for the whole exchange,
/// so idle or trickling clients cannot hold up `stats` or `reload`; past
/// `maximumClients` at once, a client is told to come back later.
final class StatsServer: Sendable {
    static let maximumClients = 32
    /// Milliseconds a client has to send its command, and then to take the reply.
    static let exchangeMilliseconds: Int32 = 3000

    private let listener: UnixListener
    private let logger: Logger
    private let running: RunState
    /// The reply to a command from a peer with this user ID (if known).
    private let reply: @Sendable (String, UInt32?) -> String

    init(listener: UnixListener, logger: Logger, running: RunState,
         reply: @escaping @Sendable (String, UInt32?) -> String) {
        self.listener = listener
        self.logger = logger
        self.running = running
        self.reply = reply
    }

    /// Accepts clients until the daemon stops.
    func serve() {
        let active = Atomic<Int>(0)
        while running.isRunning {
            do {
                guard let connection = try listener.accept(totalMilliseconds: Self.exchangeMilliseconds) else { continue }
                guard active.add(1, ordering: .relaxed).newValue <= Self.maximumClients else {
                    active.subtract(1, ordering: .relaxed)
                    try? connection.write("error: busy, try again\n")
                    continue
                }
                let transfer = UncheckedConnection(connection)
                Thread.detachNewThread { [self] in
                    defer { active.subtract(1, ordering: .relaxed) }
                    answer(transfer.connection)
                }
            } catch {
                logger.warning("stats socket: \(error)")
            }
        }
    }

    private func answer(_ connection: UnixConnection) {
        do {
            let command = try connection.readLine().trimmingCharacters(in: .whitespaces)
            let text = reply(command, connection.peerUserID)
            // A long reload must not use up the time left to write its outcome.
            connection.renewDeadline(milliseconds: Self.exchangeMilliseconds)
            try connection.write(text)
        } catch {
            logger.debug("stats socket client: \(error)")
        }
    }
}

/// A connection handed from the accepting thread to the one that serves it,
/// which then owns it alone.
private struct UncheckedConnection: @unchecked Sendable {
    let connection: UnixConnection
    init(_ connection: UnixConnection) { self.connection = connection }
}
