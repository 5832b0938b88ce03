// swift-tools-version: 6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "dnsgate",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "dnsgate", targets: ["dnsgate"]),
        // The pure core, for Benchmarks/ (a package of its own).
        .library(name: "DnsgateCore", targets: ["DNSWire", "ThreatDetection", "DnsgatePolicy"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        // Feed downloads: a streamed body refused past max_size, with deadlines
        // (URLSession queues every piece for its delegate with no backpressure:
        // a fast feed piled up gigabytes before a cancel landed).
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        // SHA-256 for the name model's popular list (already in the graph through
        // async-http-client; named here because ThreatDetection uses it itself).
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
    ],
    targets: [
        // The system libraries, found with pkg-config.
        .systemLibrary(
            name: "CNetfilterQueue",
            pkgConfig: "libnetfilter_queue",
            providers: [.apt(["libnetfilter-queue-dev", "libmnl-dev"])]
        ),
        // The small C module: netlink queue I/O, raw socket, what Swift cannot import.
        .target(
            name: "CDnsgateShims",
            dependencies: ["CNetfilterQueue"],
            linkerSettings: [.linkedLibrary("netfilter_queue"), .linkedLibrary("mnl")]
        ),
        // Pure core: IP/UDP/DNS wire format and forged answers. No I/O.
        .target(name: "DNSWire", swiftSettings: swiftSettings),
        // Pure core: behavioural detectors (DGA names, tunnels) and the public
        // suffix list. No I/O: models and lists come in as text.
        .target(
            name: "ThreatDetection",
            dependencies: ["DNSWire", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings
        ),
        // Pure core: config model, list parsers, compiled policy, decisions. No I/O.
        .target(
            name: "DnsgatePolicy",
            dependencies: ["DNSWire", "ThreatDetection", .product(name: "Yams", package: "Yams")],
            swiftSettings: swiftSettings
        ),
        // Pure core: zone transfers from a primary (AXFR/IXFR/NOTIFY messages,
        // TSIG, the copy of a zone and its master file). No I/O.
        .target(
            name: "ZoneTransfer",
            dependencies: ["DNSWire", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings
        ),
        // The one Swift module that touches C and raw memory (and the socket
        // option NIO reads only unsafely: a redirected connection's destination).
        .target(
            name: "NetfilterQueue",
            dependencies: [
                "CDnsgateShims", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: swiftSettings
        ),
        // The daemon: workers, the TCP relay, counters, stats socket, query log.
        .target(
            name: "DnsgateDaemon",
            dependencies: [
                "DNSWire", "DnsgatePolicy", "NetfilterQueue", "ThreatDetection", "ZoneTransfer",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "dnsgate",
            dependencies: [
                "DnsgateDaemon", "DnsgatePolicy", "DNSWire", "ThreatDetection",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "DNSWireTests", dependencies: ["DNSWire"], swiftSettings: swiftSettings),
        // Fixtures/ are read through #filePath (written by scripts/train-detect).
        .testTarget(
            name: "ThreatDetectionTests", dependencies: ["ThreatDetection", "DNSWire"], exclude: ["Fixtures"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DnsgateDaemonTests",
            dependencies: ["DnsgateDaemon", "DnsgatePolicy", "DNSWire", "ThreatDetection"],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "ZoneTransferTests", dependencies: ["ZoneTransfer", "DNSWire"], swiftSettings: swiftSettings),
        .testTarget(
            name: "DnsgatePolicyTests",
            dependencies: ["DnsgatePolicy", "DNSWire"],
            swiftSettings: swiftSettings
        ),
    ]
)
