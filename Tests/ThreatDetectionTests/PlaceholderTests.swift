// SPDX-License-Identifier: GPL-2.0-or-later
import Testing
@testable import ThreatDetection

@Test func levelNamesRoundTrip() {
    for level in ConfidenceLevel.allCases where level != .none {
        #expect(ConfidenceLevel(configName: level.configName) == level)
    }
    for threat in Threat.allCases { #expect(Threat(configName: threat.configName) == threat) }
}
