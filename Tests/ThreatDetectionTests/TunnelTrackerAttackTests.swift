// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import Testing
@testable import ThreatDetection

/// Tunnels built to slip past the tracker by someone who has read its code,
/// and the benign names its exemptions are for.
@Suite struct TunnelTrackerAttackTests {
    /// The name fingerprint the tracker used before it was seeded: rotate-xor
    /// of the case-folded subdomain bytes and a dot after each label, the
    /// splitmix64 finaliser, the top 16 bits.
    static func unseededFingerprint(_ name: DomainName) -> UInt16 {
        var hash: UInt64 = 0
        for label in 0..<testRegistrableStart(name) {
            for offset in name.labelStart(label) + 1..<name.labelStart(label + 1) {
                let byte = name.wireByte(offset)
                hash = (hash << 7 | hash >> 57) ^ UInt64(byte &- 0x41 < 26 ? byte | 0x20 : byte)
            }
            hash = (hash << 7 | hash >> 57) ^ 0x2e
        }
        var z = hash &+ 0x9e37_79b9_7f4a_7c15
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return UInt16(truncatingIfNeeded: (z ^ (z >> 31)) >> 48) | 1
    }

    /// Distinct names that all collide under the unseeded hash: bytes 64
    /// apart in it are rotated alike, so byte j of a 63-byte first label can
    /// trade places with byte j of the second. Which bytes traded is the data.
    static func forgedRepeats(count: Int, domain: String) -> [String] {
        var random = SplitMix(state: 21)
        let first = Array(random.string(hexAlphabet, count: 63))
        var second = Array(random.string(hexAlphabet, count: 63))
        for index in 0..<63 where first[index] == second[index] {  // every position can trade
            second[index] = first[index] == "0" ? "1" : "0"
        }
        var names = [String(first) + "." + String(second) + "." + domain]
        for position in 0..<min(count - 1, 63) {
            var (left, right) = (first, second)
            (left[position], right[position]) = (second[position], first[position])
            names.append(String(left) + "." + String(right) + "." + domain)
        }
        return names
    }

    @Test func forgedRepeatsNoLongerHideATunnel() {
        let names = Self.forgedRepeats(count: 30, domain: "forged-example.com").map { tunnelTestName($0)! }
        #expect(Set(names.map(\.text)).count == names.count)
        // The attack as it stood: every name "repeats" the first.
        #expect(Set(names.map(Self.unseededFingerprint)).count == 1)

        var harness = TunnelHarness()
        let fingerprints = names.map {
            SubdomainShape(name: $0, registrableStart: testRegistrableStart($0), seed: harness.tracker.seed).fingerprint
        }
        #expect(Set(fingerprints).count == names.count)
        var levels: [ConfidenceLevel] = []
        for name in names { levels.append(harness.observe("192.0.2.70", name.text, .a).level) }
        let first = levels.firstIndex(of: .high)
        #expect(first != nil && first! < 10, "\(levels)")
        #expect(levels.dropFirst((first ?? 0) + 1).allSatisfy { $0 == .high }, "\(levels)")
    }

    @Test func fingerprintsDependOnTheTrackersSecretSeed() {
        let one = TunnelTracker(capacity: 64)
        let other = TunnelTracker(capacity: 64)
        #expect(one.seed != other.seed)
        var random = SplitMix(state: 22)
        let names = (0..<4000).map { _ in tunnelTestName(random.string(base32Alphabet, count: 24) + ".seed-example.com")! }
        var seen: [UInt64: Int] = [:]
        var sameUnderBothSeeds = 0
        var matchingAcrossSeeds = 0
        for (index, name) in names.enumerated() {
            let start = testRegistrableStart(name)
            let mine = SubdomainShape(name: name, registrableStart: start, seed: one.seed).fingerprint
            let theirs = SubdomainShape(name: name, registrableStart: start, seed: other.seed).fingerprint
            if mine == theirs { matchingAcrossSeeds += 1 }
            if seen.updateValue(index, forKey: UInt64(mine) << 32 | UInt64(theirs)) != nil { sameUnderBothSeeds += 1 }
        }
        // Two different names never share a fingerprint under both seeds, and
        // a fingerprint learnt from one tracker says nothing about another.
        #expect(sameUnderBothSeeds == 0)
        #expect(matchingAcrossSeeds < 3)
        // Case does not make a name new.
        let lower = tunnelTestName("abcdef.case-example.com")!
        let upper = tunnelTestName("AbCdEF.case-example.com")!
        #expect(SubdomainShape(name: lower, registrableStart: 1, seed: one.seed).fingerprint
                == SubdomainShape(name: upper, registrableStart: 1, seed: one.seed).fingerprint)
        #expect(one.pairKey(client: IPAddress("192.0.2.1")!, name: lower, registrableStart: 1)
                == one.pairKey(client: IPAddress("192.0.2.1")!, name: upper, registrableStart: 1))
        #expect(one.pairKey(client: IPAddress("192.0.2.1")!, name: lower, registrableStart: 1)
                != other.pairKey(client: IPAddress("192.0.2.1")!, name: lower, registrableStart: 1))
    }

    /// The strongest attacker knows the tracker's seed, finds (spoofed
    /// client, domain) pairs that land in the tunnel's bucket, and floods it
    /// with NULL queries of long base64 names, each worth HIGH by itself.
    @Test func floodAimedAtATunnelsBucketDoesNotKeepItBelowHigh() {
        let tracker = TunnelTracker(capacity: 1024)
        var now: UInt64 = 1_000_000_000
        var random = SplitMix(state: 23)
        let tunnelClient = IPAddress("192.0.2.80")!
        func tunnelQuery() -> ThreatFinding {
            now += 1_000_000_000
            let name = tunnelTestName(random.string(base32Alphabet, count: 52) + ".bucket-tunnel.com")!
            return tracker.observe(client: tunnelClient, name: name, registrableStart: testRegistrableStart(name),
                                   type: .txt, now: now)
        }
        let tunnelName = tunnelTestName("x.bucket-tunnel.com")!
        let target = tracker.location(ofKey: tracker.pairKey(client: tunnelClient, name: tunnelName,
                                                             registrableStart: testRegistrableStart(tunnelName)))
        let floodDomain = tunnelTestName("x.flood-target.com")!
        var floodClients: [IPAddress] = []
        var candidate: UInt32 = 0x0a00_0000
        while floodClients.count < 64, candidate < 0x0a10_0000 {  // 128 buckets: about 8,000 tries
            let client = IPAddress.v4(candidate)
            let place = tracker.location(ofKey: tracker.pairKey(client: client, name: floodDomain, registrableStart: 1))
            if place == target { floodClients.append(client) }
            candidate += 1
        }
        #expect(floodClients.count == 64)
        func floodBurst() {
            for client in floodClients {
                now += 1_000
                let text = (0..<3).map { _ in random.string(base64URLAlphabet + "+/", count: 60) }.joined(separator: ".")
                let name = tunnelTestName(text + ".flood-target.com")!
                let finding = tracker.observe(client: client, name: name, registrableStart: name.labelCount - 2,
                                              type: .null, now: now)
                // Left out or not, a flood query is scored from its own name.
                #expect(finding.level == .high)
            }
        }

        // The tunnel reaches HIGH as it would anyway (its names alone are below it).
        let before = (0..<4).map { _ in tunnelQuery().level }
        #expect(before.first! > .none && before.first! < .high && before.last == .high, "\(before)")
        var levels: [ConfidenceLevel] = []
        for _ in 0..<30 {
            floodBurst()
            levels.append(tunnelQuery().level)
        }
        #expect(levels.allSatisfy { $0 == .high }, "\(levels)")
        #expect(tracker.refusedNewcomers > 0)
    }

    @Test func nonPTRQueriesUnderArpaAreTracked() {
        var random = SplitMix(state: 24)
        // A /48 delegation under ip6.arpa: 12 nibbles anyone can get.
        let zone = "0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        for type in [QueryType.null, .txt] {
            var harness = TunnelHarness()
            var levels: [ConfidenceLevel] = []
            for _ in 0..<20 {
                let name = random.string(base32Alphabet, count: 40) + "." + random.string(hexAlphabet, count: 1) + "."
                    + random.string(hexAlphabet, count: 1) + "." + zone
                levels.append(harness.observe("192.0.2.90", name, type).level)
            }
            let first = levels.firstIndex(of: .high)
            #expect(first != nil && first! < 10, "\(type): \(levels)")
        }
        // PTR sweeps, data-looking or not, are still none of its business.
        var harness = TunnelHarness()
        for _ in 0..<200 {
            let nibbles = (0..<20).map { _ in random.string(hexAlphabet, count: 1) }.joined(separator: ".")
            #expect(harness.observe("192.0.2.91", nibbles + "." + zone, .ptr).level == .none)
            let dataName = random.string(base32Alphabet, count: 40) + "." + zone
            #expect(harness.observe("192.0.2.91", dataName, .ptr).level == .none)
            let octets = "\(random.next() % 256).\(random.next() % 256).51.198.in-addr.arpa"
            #expect(harness.observe("192.0.2.91", octets, .ptr).level == .none)
        }
    }

    /// `_` and then hex: short enough to pass for a service label or not.
    @Test(arguments: [(QueryType.null, 16), (.txt, 16), (.null, 12), (.txt, 12)])
    func underscoreTunnelsReachHighWithinTen(type: QueryType, hexDigits: Int) {
        var harness = TunnelHarness()
        var random = SplitMix(state: 25)
        var levels: [ConfidenceLevel] = []
        for _ in 0..<20 {
            let name = "_" + random.string(hexAlphabet, count: hexDigits) + ".u.underscore-tunnel.com"
            levels.append(harness.observe("192.0.2.100", name, type).level)
        }
        let first = levels.firstIndex(of: .high)
        #expect(first != nil && first! < 10, "\(type) \(hexDigits): \(levels)")
    }

    @Test func serviceLabelsOfAMailServerStayBelowMedium() {
        var harness = TunnelHarness()
        for index in 0..<100 {
            for (name, type) in [("_dmarc.x\(index).example", QueryType.txt), ("_sip._udp.example\(index).net", .srv),
                                 ("selector1._domainkey.example\(index).org", .txt),
                                 ("_acme-challenge.www.example\(index).org", .txt),
                                 ("_mta-sts.example\(index).com", .txt)] {
                let finding = harness.observe("192.0.2.110", name, type, after: 0.05)
                #expect(finding.level < .medium, "\(name) \(type): \(finding)")
            }
        }
        #expect(SubdomainShape.isServiceLabel(tunnelTestName("_acme-challenge.example.org")!, label: 0))
        #expect(!SubdomainShape.isServiceLabel(tunnelTestName("_0123456789abcdef.example.org")!, label: 0))
        #expect(!SubdomainShape.isServiceLabel(tunnelTestName("_.example.org")!, label: 0))
        #expect(!SubdomainShape.isServiceLabel(tunnelTestName("_a+b.example.org")!, label: 0))
    }

    /// `count` is the pairs in the table, stale ones included; every distinct
    /// pair either took an empty slot, evicted one, or was left out.
    @Test func countAndEvictionsAccountForEveryNewPair() {
        let tracker = TunnelTracker(capacity: 64)
        let name = tunnelTestName("www.count-example.com")!
        var now: UInt64 = 1
        for client in 0..<1000 {
            now += 1_000_000
            _ = tracker.observe(client: .v4(UInt32(client)), name: name, registrableStart: 1, type: .a, now: now)
            #expect(tracker.count + tracker.evictions + tracker.refusedNewcomers == client + 1)
            // A pair seen again takes nothing.
            _ = tracker.observe(client: .v4(UInt32(client)), name: name, registrableStart: 1, type: .a, now: now)
            #expect(tracker.count + tracker.evictions + tracker.refusedNewcomers == client + 1)
        }
        #expect(tracker.count == tracker.capacity)
        #expect(tracker.refusedNewcomers == 0)
        // Quiet pairs stay (and count) until evicted.
        now += 3_600_000_000_000
        #expect(tracker.count == tracker.capacity)
    }
}
