// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import Testing
@testable import DnsgatePolicy

/// splitmix64: the same seed gives the same prefixes and addresses on every run.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func network(_ text: String) -> IPNetwork { IPNetwork(text)! }

func entry(_ text: String, line: Int32 = 0, outcome: Int32 = -1) -> AddressTable.Entry {
    AddressTable.Entry(prefix: network(text), line: line, outcome: outcome)
}

extension AddressTable {
    /// The matching prefix as text, or nil.
    func match(_ text: String) -> String? { lookup(address(text))?.prefix.description }
}

@Suite("Address table: longest prefix match")
struct AddressTableTests {
    @Test("golden prefixes: each address finds its prefix, with its line and outcome")
    func golden() {
        let table = AddressTable([
            entry("192.0.2.0/24", line: 1, outcome: 7), entry("198.51.100.7", line: 2),
            entry("2001:db8::/32", line: 3, outcome: 1), entry("2001:db8:1::1", line: 4),
        ])
        #expect(table.count == 4)
        #expect(table.lookup(address("192.0.2.99")) == entry("192.0.2.0/24", line: 1, outcome: 7))
        #expect(table.lookup(address("198.51.100.7")) == entry("198.51.100.7/32", line: 2))
        #expect(table.lookup(address("2001:db8:ffff::1")) == entry("2001:db8::/32", line: 3, outcome: 1))
        #expect(table.lookup(address("2001:db8:1::1")) == entry("2001:db8:1::1/128", line: 4))
        #expect(table.match("198.51.100.8") == nil)
        #expect(table.match("203.0.113.1") == nil)
        #expect(table.match("2001:db9::") == nil)
    }

    @Test("nesting: /8 ⊃ /16 ⊃ /24 ⊃ /32, the most specific wins, in any order given")
    func nesting() {
        let prefixes = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32"]
        for order in [prefixes, prefixes.reversed(), [prefixes[2], prefixes[0], prefixes[3], prefixes[1]]] {
            let table = AddressTable(order.map { entry($0) })
            #expect(table.count == 4)
            #expect(table.match("10.1.2.3") == "10.1.2.3/32")
            #expect(table.match("10.1.2.2") == "10.1.2.0/24")
            #expect(table.match("10.1.2.4") == "10.1.2.0/24")
            #expect(table.match("10.1.2.0") == "10.1.2.0/24")
            #expect(table.match("10.1.2.255") == "10.1.2.0/24")
            #expect(table.match("10.1.1.255") == "10.1.0.0/16")
            #expect(table.match("10.1.3.0") == "10.1.0.0/16")
            #expect(table.match("10.1.0.0") == "10.1.0.0/16")
            #expect(table.match("10.1.255.255") == "10.1.0.0/16")
            #expect(table.match("10.0.255.255") == "10.0.0.0/8")
            #expect(table.match("10.2.0.0") == "10.0.0.0/8")
            #expect(table.match("10.0.0.0") == "10.0.0.0/8")
            #expect(table.match("10.255.255.255") == "10.0.0.0/8")
            #expect(table.match("9.255.255.255") == nil)
            #expect(table.match("11.0.0.0") == nil)
        }
    }

    @Test("the same prefix twice: the first wins; count is of distinct prefixes")
    func duplicates() {
        let table = AddressTable([
            entry("192.0.2.0/24", line: 1, outcome: 1), entry("192.0.2.0/24", line: 2, outcome: 2),
            entry("192.0.2.77/24", line: 3, outcome: 3), entry("::ffff:192.0.2.0/120", line: 4, outcome: 4),
            entry("2001:db8::/48", line: 5), entry("2001:db8::/48", line: 6),
        ])
        #expect(table.count == 2)
        #expect(table.lookup(address("192.0.2.1"))?.line == 1)
        #expect(table.lookup(address("192.0.2.1"))?.outcome == 1)
        #expect(table.lookup(address("2001:db8::1"))?.line == 5)
    }

    @Test("boundaries: first and last address of every range, and the addresses just outside")
    func boundaries() {
        let table = AddressTable(["0.0.0.0/8", "1.2.3.0/24", "1.2.4.0/24", "128.0.0.0/1", "255.255.255.255/32", "200.0.0.0/8"]
            .map { entry($0) })
        #expect(table.match("0.0.0.0") == "0.0.0.0/8")
        #expect(table.match("0.255.255.255") == "0.0.0.0/8")
        #expect(table.match("1.0.0.0") == nil)
        #expect(table.match("1.2.2.255") == nil)
        #expect(table.match("1.2.3.0") == "1.2.3.0/24")
        #expect(table.match("1.2.3.255") == "1.2.3.0/24")
        #expect(table.match("1.2.4.0") == "1.2.4.0/24", "adjacent ranges stay apart")
        #expect(table.match("1.2.4.255") == "1.2.4.0/24")
        #expect(table.match("1.2.5.0") == nil)
        #expect(table.match("127.255.255.255") == nil)
        #expect(table.match("128.0.0.0") == "128.0.0.0/1")
        #expect(table.match("199.255.255.255") == "128.0.0.0/1")
        #expect(table.match("200.0.0.0") == "200.0.0.0/8")
        #expect(table.match("200.255.255.255") == "200.0.0.0/8")
        #expect(table.match("201.0.0.0") == "128.0.0.0/1")
        #expect(table.match("255.255.255.254") == "128.0.0.0/1")
        #expect(table.match("255.255.255.255") == "255.255.255.255/32")
    }

    @Test("IPv6: ::/0 under everything, /128 hosts, the top and bottom of the space")
    func ipv6() {
        let table = AddressTable(["::/0", "2001:db8::/32", "2001:db8:0:1::/64", "2001:db8::1/128",
                                  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "::/128"].map { entry($0) })
        #expect(table.match("::") == "::/128")
        #expect(table.match("::1") == "::/0")
        #expect(table.match("2001:db8::") == "2001:db8::/32")
        #expect(table.match("2001:db8::1") == "2001:db8::1/128")
        #expect(table.match("2001:db8::2") == "2001:db8::/32")
        #expect(table.match("2001:db8:0:1::") == "2001:db8:0:1::/64")
        #expect(table.match("2001:db8:0:1:ffff:ffff:ffff:ffff") == "2001:db8:0:1::/64")
        #expect(table.match("2001:db8:0:2::") == "2001:db8::/32")
        #expect(table.match("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff") == "2001:db8::/32")
        #expect(table.match("2001:db9::") == "::/0")
        #expect(table.match("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff") == "::/0")
        #expect(table.match("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe") == "::/0")
        #expect(table.match("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") == "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128")
        #expect(table.match("192.0.2.1") == nil, "IPv6 prefixes never hold IPv4 addresses")
        #expect(table.match("::ffff:192.0.2.1") == nil, "a mapped address is looked up as IPv4")
        let host = AddressTable([entry("2001:db8::1")])
        #expect(host.match("2001:db8::1") == "2001:db8::1/128")
        #expect(host.match("2001:db8::") == nil)
        #expect(host.match("2001:db8::2") == nil)
    }

    @Test("IPv4-mapped: a mapped address is looked up as IPv4; a mapped prefix is stored as the IPv4 prefix")
    func mapped() {
        let table = AddressTable([entry("192.0.2.0/24", line: 1), entry("::ffff:198.51.100.0/120", line: 2),
                                  entry("::ffff:0:0/96", line: 3)])
        #expect(table.count == 3)
        #expect(table.lookup(address("::ffff:192.0.2.9")) == entry("192.0.2.0/24", line: 1))
        #expect(table.lookup(address("198.51.100.9")) == entry("198.51.100.0/24", line: 2))
        #expect(table.lookup(address("198.51.100.9"))?.prefix == network("198.51.100.0/24"))
        #expect(table.match("203.0.113.1") == "0.0.0.0/0", "::ffff:0:0/96 is every IPv4 address")
        #expect(table.match("::ffff:203.0.113.1") == "0.0.0.0/0")
        #expect(table.match("::ffff:0:0") == "0.0.0.0/0")
        #expect(table.match("::fffe:0:0") == nil)
        #expect(entry("::ffff:192.0.2.1").prefix == network("192.0.2.1/32"))
        #expect(entry("::ffff:192.0.2.1/95").prefix == network("::fffe:0:0/95"), "shorter than /96: IPv6")
    }

    @Test("0.0.0.0/0 holds every IPv4 address and no IPv6 one")
    func everything() {
        let table = AddressTable([entry("0.0.0.0/0", line: 9)])
        for text in ["0.0.0.0", "0.0.0.1", "127.0.0.1", "255.255.255.255", "::ffff:10.0.0.1"] {
            #expect(table.lookup(address(text))?.line == 9, "\(text)")
        }
        #expect(table.match("::") == nil)
        #expect(table.match("2001:db8::1") == nil)
    }

    @Test("an empty table finds nothing")
    func empty() {
        for table in [AddressTable.empty, AddressTable([])] {
            #expect(table.count == 0)
            for text in ["0.0.0.0", "192.0.2.1", "255.255.255.255", "::", "2001:db8::1", "::ffff:192.0.2.1"] {
                #expect(table.lookup(address(text)) == nil)
            }
        }
    }

    @Test("host bits are cleared: by IPNetwork's initialisers and in the entry")
    func hostBits() {
        #expect(IPNetwork(address: address("192.0.2.77"), prefixLength: 24) == network("192.0.2.0/24"))
        #expect(IPNetwork(address: address("2001:db8::ff"), prefixLength: 120) == network("2001:db8::/120"))
        #expect(IPNetwork(address: address("192.0.2.77"), prefixLength: 40).prefixLength == 32, "clamped, no trap")
        #expect(IPNetwork(address: address("192.0.2.77"), prefixLength: -3) == network("0.0.0.0/0"))
        #expect(IPNetwork(address: address("2001:db8::1"), prefixLength: 129).prefixLength == 128)
        let table = AddressTable([entry("192.0.2.77/24")])
        #expect(table.lookup(address("192.0.2.1"))?.prefix == network("192.0.2.0/24"))
        #expect(table.match("192.0.3.0") == nil)
    }

    /// Random prefixes that nest: lengths spread over the family, addresses
    /// drawn near a few bases so that many fall inside one another.
    static func nestedPrefixes(count: Int, using random: inout SeededRandom) -> [AddressTable.Entry] {
        let bases4: [UInt32] = (0..<6).map { _ in UInt32.random(in: 0...UInt32.max, using: &random) } + [0, UInt32.max]
        let bases6: [(UInt64, UInt64)] = (0..<4).map { _ in
            (UInt64.random(in: 0...UInt64.max, using: &random), UInt64.random(in: 0...UInt64.max, using: &random))
        } + [(0x2001_0db8_0000_0000, 0), (0, 0), (UInt64.max, UInt64.max)]
        return (0..<count).map { index in
            let line = Int32(index + 1)
            let outcome = Int32.random(in: -1...3, using: &random)
            if Int.random(in: 0..<3, using: &random) > 0 {
                let base = bases4.randomElement(using: &random)!
                let noise = UInt32.random(in: 0...UInt32.max, using: &random) >> UInt32.random(in: 0...32, using: &random)
                let length = [0, 1, 7, 8, 12, 16, 20, 24, 28, 30, 31, 32].randomElement(using: &random)!
                return AddressTable.Entry(prefix: IPNetwork(address: .v4(base ^ noise), prefixLength: length),
                                          line: line, outcome: outcome)
            }
            let base = bases6.randomElement(using: &random)!
            let shift = UInt64.random(in: 0...64, using: &random)
            let noiseHigh = shift < 64 ? UInt64.random(in: 0...UInt64.max, using: &random) >> shift : 0
            let noiseLow = UInt64.random(in: 0...UInt64.max, using: &random)
            let length = [0, 1, 16, 32, 47, 48, 64, 96, 100, 120, 127, 128].randomElement(using: &random)!
            return AddressTable.Entry(prefix: IPNetwork(address: .v6(high: base.0 ^ noiseHigh, low: base.1 ^ noiseLow),
                                                        prefixLength: length), line: line, outcome: outcome)
        }
    }

    /// The linear scan the table must agree with: the longest prefix of the
    /// address's family that holds it, the first given among equals.
    static func bruteForce(_ entries: [AddressTable.Entry], _ address: IPAddress) -> AddressTable.Entry? {
        let wanted = address.unmappedIPv4 ?? address
        var best: AddressTable.Entry? = nil
        for entry in entries where entry.prefix.address.isIPv4 == wanted.isIPv4 {
            guard IPNetwork(address: wanted, prefixLength: entry.prefix.prefixLength) == entry.prefix else { continue }
            if best == nil || entry.prefix.prefixLength > best!.prefix.prefixLength { best = entry }
        }
        return best
    }

    @Test("agrees with a linear scan: 2,000 nested random prefixes, 10,000 addresses (seeded)")
    func againstBruteForce() {
        var random = SeededRandom(state: 0xADD2_E55)
        for round in 0..<3 {
            let entries = Self.nestedPrefixes(count: round == 0 ? 2000 : 300, using: &random)
            let table = AddressTable(entries)
            #expect(table.count == Set(entries.map(\.prefix)).count)
            var addresses: [IPAddress] = []
            // Every prefix's first and last address and their neighbours, then random ones near them.
            for entry in entries.prefix(1000) {
                switch entry.prefix.address {
                case .v4(let value):
                    let last = value | (entry.prefix.prefixLength == 0 ? UInt32.max : ~(UInt32.max << (32 - entry.prefix.prefixLength)))
                    addresses += [value, value &- 1, last, last &+ 1].map { IPAddress.v4($0) }
                case .v6(let high, let low):
                    addresses += [.v6(high: high, low: low), .v6(high: low == 0 ? high &- 1 : high, low: low &- 1)]
                }
            }
            while addresses.count < 10_000 {
                let base = entries.randomElement(using: &random)!.prefix.address
                switch base {
                case .v4(let value):
                    addresses.append(.v4(value ^ (UInt32.random(in: 0...UInt32.max, using: &random) >> UInt32.random(in: 0...32, using: &random))))
                    if Int.random(in: 0..<20, using: &random) == 0 { addresses.append(.v6(high: 0, low: 0xffff_0000_0000 | UInt64(value))) }
                case .v6(let high, let low):
                    let shift = UInt64.random(in: 0...64, using: &random)
                    addresses.append(.v6(high: high ^ (shift < 64 ? UInt64.random(in: 0...UInt64.max, using: &random) >> shift : 0),
                                         low: low ^ UInt64.random(in: 0...UInt64.max, using: &random)))
                }
            }
            var mismatches = 0
            for address in addresses {
                let expected = Self.bruteForce(entries, address)
                let found = table.lookup(address)
                if found != expected {
                    mismatches += 1
                    if mismatches <= 5 { Issue.record("round \(round), \(address): table \(String(describing: found)), scan \(String(describing: expected))") }
                }
            }
            #expect(mismatches == 0)
        }
    }

    @Test("small tables of every shape agree with a linear scan (seeded)")
    func smallTables() {
        var random = SeededRandom(state: 42)
        for _ in 0..<300 {
            let entries = Self.nestedPrefixes(count: Int.random(in: 1...12, using: &random), using: &random)
            let table = AddressTable(entries)
            for entry in entries {
                for address in [entry.prefix.address, IPAddress.v4(UInt32.random(in: 0...UInt32.max, using: &random))] {
                    #expect(table.lookup(address) == Self.bruteForce(entries, address), "\(entries) \(address)")
                }
            }
        }
    }
}
