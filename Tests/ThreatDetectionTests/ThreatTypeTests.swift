// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import Testing
@testable import ThreatDetection

@Test func levelNamesRoundTrip() {
    for level in ConfidenceLevel.allCases where level != .none {
        #expect(ConfidenceLevel(configName: level.configName) == level)
    }
    for threat in Threat.allCases { #expect(Threat(configName: threat.configName) == threat) }
}

@Test func nameScoreCacheKeepsResultsByDomainAndSeed() {
    let cache = NameScoreCache(capacity: 1024, seed: 42)
    let name = DomainName(text: "www.Example.com")!, same = DomainName(text: "mail.example.COM")!
    let key = cache.key(name, registrableStart: 1)
    #expect(cache.key(same, registrableStart: 1) == key, "the registrable domain alone, case folded")
    #expect(NameScoreCache(capacity: 1024, seed: 43).key(name, registrableStart: 1) != key, "the seed keys the hash")
    #expect(cache.lookup(key) == nil)
    let flagged = (dga: ThreatFinding(level: .medium, score: 0.75), dictionaryDGA: ThreatFinding.benign)
    cache.store(key, flagged)
    let held = cache.lookup(key)
    #expect(held?.dga.level == .medium && abs((held?.dga.score ?? 0) - 0.75) < 0.0001 && held?.dictionaryDGA == .benign)
    let other = cache.key(DomainName(text: "example.org")!, registrableStart: 0)
    #expect(cache.lookup(other) == nil, "another domain is not taken for this one")
    cache.store(key, (dga: .benign, dictionaryDGA: ThreatFinding(level: .high, score: 1)))
    #expect(cache.lookup(key)?.dictionaryDGA.level == .high && cache.lookup(key)?.dga == .benign)
    cache.store(key, (dga: .benign, dictionaryDGA: .benign))
    #expect(cache.lookup(key).map { $0.dga == .benign && $0.dictionaryDGA == .benign } == true, "benign is kept too")
}

@Test func nameScoreCacheKeepsBothFindings() {
    let cache = NameScoreCache(capacity: 1024, seed: 42)
    let key = cache.key(DomainName(text: "riverstone.com")!, registrableStart: 0)
    let both = (dga: ThreatFinding(level: .low, score: 0.61), dictionaryDGA: ThreatFinding(level: .high, score: 0.93))
    cache.store(key, both)
    let held = cache.lookup(key)
    #expect(held?.dga.level == .low && abs((held?.dga.score ?? 0) - 0.61) < 0.0001, "\(String(describing: held))")
    #expect(held?.dictionaryDGA.level == .high && abs((held?.dictionaryDGA.score ?? 0) - 0.93) < 0.0001)
    for level in ConfidenceLevel.allCases where level != .none {
        for score: Float in [0, 0.0005, 0.5, 0.9995, 1] {
            let finding = ThreatFinding(level: level, score: score)
            cache.store(key, (dga: finding, dictionaryDGA: finding))
            let round = cache.lookup(key)
            #expect(round?.dga.level == level && round?.dictionaryDGA.level == level)
            #expect(abs((round?.dga.score ?? -1) - score) < 0.0001 && abs((round?.dictionaryDGA.score ?? -1) - score) < 0.0001)
        }
    }
    // An entry is never 0, even for a key whose tag bits are 0 and a benign result.
    #expect(NameScoreCache.pack((dga: .benign, dictionaryDGA: .benign)) != 0)
}
