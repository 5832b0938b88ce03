// SPDX-License-Identifier: GPL-2.0-or-later
// PLACEHOLDER until the addr-lists branch lands (linear scan).
public import DNSWire

public struct AddressTable: Sendable {
    public struct Entry: Sendable, Equatable {
        public var prefix: IPNetwork
        public var line: Int32
        public var outcome: Int32
        public init(prefix: IPNetwork, line: Int32, outcome: Int32) {
            self.prefix = prefix
            self.line = line
            self.outcome = outcome
        }
    }
    var entries: [Entry]
    public init(_ entries: [Entry]) { self.entries = entries }
    public func lookup(_ address: IPAddress) -> Entry? {
        var best: Entry? = nil
        for entry in entries where entry.prefix.contains(address) {
            if best == nil || entry.prefix.prefixLength > best!.prefix.prefixLength { best = entry }
        }
        return best
    }
    public var count: Int { entries.count }
    public static let empty = AddressTable([])
}
