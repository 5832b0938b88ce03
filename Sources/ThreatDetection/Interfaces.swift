// SPDX-License-Identifier: GPL-2.0-or-later
// The module's error type, and the tunnel tracker stub (TunnelTracker.swift replaces it).
public import DNSWire

/// The one error type of this module: a model or suffix list that cannot be read.
public struct ThreatDetectionError: Error, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var message: String
    public init(file: String, line: Int, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }
    public var description: String { line > 0 ? "\(file):\(line): \(message)" : "\(file): \(message)" }
}

/// Per (client, registrable domain) tunnelling state in a fixed-size table,
/// shared by every worker.
public final class TunnelTracker: Sendable {
    public init(capacity: Int = 65_536) {}

    /// Records one query and returns the pair's standing after it. `now` is
    /// monotonic nanoseconds.
    public func observe(client: IPAddress, name: DomainName, registrableStart: Int, type: QueryType,
                        now: UInt64) -> ThreatFinding {
        .benign
    }
}
