// swift-tools-version: 6.1
// libFuzzer targets for everything that reads untrusted input: packets (and the
// answers built for them), list files in every format, the config, and query
// names through the threat detectors (and suffix-list files).
// Build and run: scripts/fuzz (also part of scripts/test, briefly).
import PackageDescription

import struct Foundation.URL

let dnsgatePackage = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .lastPathComponent.lowercased()

func fuzzTarget(_ name: String) -> Target {
    .executableTarget(
        name: name,
        dependencies: [.product(name: "DnsgateCore", package: dnsgatePackage)],
        swiftSettings: [.swiftLanguageMode(.v6), .unsafeFlags(["-parse-as-library"])]
    )
}

let package = Package(
    name: "dnsgate-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(path: "..")],
    targets: [fuzzTarget("FuzzPacket"), fuzzTarget("FuzzLists"), fuzzTarget("FuzzConfig"), fuzzTarget("FuzzThreats")]
)
