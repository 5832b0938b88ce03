// SPDX-License-Identifier: GPL-2.0-or-later
import ArgumentParser
import DNSWire
import DnsgateDaemon
import DnsgatePolicy
import Foundation
import ThreatDetection

extension Dnsgate {
    struct Classify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Score names read on stdin with the threat detectors the packet path uses.",
            discussion: """
                Reads `NAME` per line (DGA and dictionary DGA, per name), or with --stream \
                `CLIENT NAME QTYPE` per line in time order (tunnelling, per client and registrable \
                domain), and prints `LABEL LEVEL SCORE` per line: `benign - 0`, or `dga`, `dict_dga` \
                or `tunnel` with LOW, MEDIUM or HIGH and the score. A line that cannot be read \
                prints `invalid - 0`.
                """)
        @Flag(help: "Read a query stream (CLIENT NAME QTYPE) and report tunnelling.") var stream = false
        @Option(help: ArgumentHelp("With --stream: seconds between two lines (the input carries no times).",
                                   valueName: "seconds"))
        var interval = 0.01
        @Option(help: "The trained model (default: as for a rule naming a threat).") var model: String?
        @Option(help: "The public suffix list (default: Debian's, else the copy dnsgate ships).")
        var publicSuffixList: String?
        @Option(help: "Config whose threat_detection settings to use.") var config: String?

        func validate() throws {
            guard interval >= 0, interval <= 3600 else { throw ValidationError("--interval must be from 0 to 3600") }
        }

        func run() throws {
            var settings = ThreatDetectionConfig()
            let compiler = PolicyCompiler(readBoundedFile: readFileBytes)
            if let config {
                let (read, diagnostics) = compiler.readConfig(absoluteConfigPath(config))
                guard let read else { throw CommandFailure(message: diagnostics.map(\.description).joined(separator: "\n")) }
                settings = read.threatDetection
            }
            if let model { settings.model = absoluteConfigPath(model) }
            if let publicSuffixList { settings.publicSuffixList = absoluteConfigPath(publicSuffixList) }
            let (models, diagnostics) = compiler.loadThreatModels(settings, configPath: config ?? "dnsgate classify")
            guard let models else { throw CommandFailure(message: diagnostics.map(\.description).joined(separator: "\n")) }
            let classifier = LineClassifier(models: models, stream: stream,
                                            tunnels: stream ? TunnelTracker(capacity: settings.tunnelPairs) : nil,
                                            step: UInt64(interval * 1e9))
            var output = OutputBuffer()
            var lines = StandardInputLines()
            var classifierState = classifier
            // A reader that leaves (`| head`) ends the run, quietly.
            lines.forEach { line in
                classifierState.classify(line, into: &output)
                return output.flushIfFull()
            }
            _ = output.flush()
        }
    }
}

/// One input line to one output line, with the packet path's code.
struct LineClassifier {
    let models: ThreatModels
    let stream: Bool
    let tunnels: TunnelTracker?
    /// Nanoseconds between two stream lines.
    let step: UInt64
    var now: UInt64 = 1_000_000_000
    /// The last client and query type read, as text and parsed: a stream
    /// repeats them, and parsing each line's anew would cost more than scoring.
    private var lastClient: ([UInt8], IPAddress?) = ([], nil)
    private var lastType: ([UInt8], QueryType?) = ([], nil)

    init(models: ThreatModels, stream: Bool, tunnels: TunnelTracker?, step: UInt64) {
        self.models = models
        self.stream = stream
        self.tunnels = tunnels
        self.step = step
    }

    mutating func classify(_ line: Span<UInt8>, into output: inout OutputBuffer) {
        var fields = InlineArray<3, Range<Int>>(repeating: 0..<0)
        var count = 0
        var index = 0
        while index < line.count, count < 3 {  // whitespace-separated fields
            while index < line.count, Self.isSpace(line[index]) { index += 1 }
            let start = index
            while index < line.count, !Self.isSpace(line[index]) { index += 1 }
            if index > start {
                fields[count] = start..<index
                count += 1
            }
        }
        let expected = stream ? 3 : 1
        guard count >= expected, let name = DomainName(rawText: line.extracting(fields[stream ? 1 : 0])) else {
            output.append("invalid - 0\n")
            return
        }
        var assessment: ThreatAssessment
        if stream {
            let clientText = line.extracting(fields[0]), typeText = line.extracting(fields[2])
            if !Self.same(clientText, lastClient.0) {
                let bytes = Self.array(clientText)
                lastClient = (bytes, IPAddress(String(decoding: bytes, as: UTF8.self)))
            }
            if !Self.same(typeText, lastType.0) {
                let bytes = Self.array(typeText)
                lastType = (bytes, QueryType(mnemonic: String(decoding: bytes, as: UTF8.self)))
            }
            guard let client = lastClient.1, let type = lastType.1 else {
                output.append("invalid - 0\n")
                return
            }
            now &+= step
            assessment = models.assess(name: name, type: type, client: client, now: now, names: false, tunnels: tunnels)
        } else {
            assessment = models.assess(name: name, type: QueryType.a, client: .v4(0), now: now, names: true, tunnels: nil)
        }
        guard let (threat, finding) = assessment.strongest(of: Threat.classifyPrecedence) else {
            output.append("benign - 0\n")
            return
        }
        output.append(threat.classifyLabel)
        output.append(" ")
        output.append(finding.level.configName)
        output.append(" ")
        output.appendScore(finding.score)
        output.append("\n")
    }

    @inline(__always)
    static func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0d }

    static func same(_ text: Span<UInt8>, _ bytes: [UInt8]) -> Bool {
        guard text.count == bytes.count else { return false }
        for index in 0..<text.count where text[index] != bytes[index] { return false }
        return true
    }

    static func array(_ text: Span<UInt8>) -> [UInt8] { (0..<text.count).map { text[$0] } }
}

/// Lines of standard input, read in large blocks (a line per `readLine`
/// call would cost more than scoring it). A line longer than
/// `maximumLineBytes` (no name or query comes near) is handed on empty, so
/// it costs a line of output and bounded memory.
struct StandardInputLines {
    static let blockBytes = 1 << 20
    static let maximumLineBytes = 64 << 10
    private var buffer: [UInt8] = []
    private var start = 0
    /// Inside a line that passed `maximumLineBytes`: its rest is dropped.
    private var skipping = false

    /// Calls `body` with each line, without its newline, to the end of
    /// input or until `body` returns false.
    mutating func forEach(_ body: (Span<UInt8>) -> Bool) {
        while true {
            let block = (try? FileHandle.standardInput.read(upToCount: Self.blockBytes)) ?? nil
            guard let block, !block.isEmpty else { break }
            buffer.removeSubrange(0..<start)
            start = 0
            buffer.append(contentsOf: block)
            while let newline = buffer[start...].firstIndex(of: 0x0a) {  // each turn consumes a line
                if skipping {
                    skipping = false
                } else if !body(buffer.span.extracting(start..<newline)) {
                    return
                }
                start = newline + 1
            }
            if buffer.count - start > Self.maximumLineBytes {
                if !skipping, !body(buffer.span.extracting(0..<0)) { return }
                skipping = true
                start = buffer.count
            }
        }
        if start < buffer.count, !skipping { _ = body(buffer.span.extracting(start..<buffer.count)) }
    }
}

/// Standard output, written in large blocks.
struct OutputBuffer {
    private var bytes: [UInt8] = []

    init() { bytes.reserveCapacity(1 << 17) }

    mutating func append(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    mutating func append(_ text: String) { bytes.append(contentsOf: text.utf8) }

    /// A score of 0…1 with three decimals.
    mutating func appendScore(_ score: Float) {
        let thousandths = Int((min(max(score, 0), 1) * 1000).rounded())
        bytes.append(UInt8(ascii: "0") + UInt8(thousandths / 1000))
        bytes.append(UInt8(ascii: "."))
        bytes.append(UInt8(ascii: "0") + UInt8(thousandths / 100 % 10))
        bytes.append(UInt8(ascii: "0") + UInt8(thousandths / 10 % 10))
        bytes.append(UInt8(ascii: "0") + UInt8(thousandths % 10))
    }

    /// False once standard output is closed.
    mutating func flushIfFull() -> Bool {
        bytes.count >= 1 << 16 ? flush() : true
    }

    /// False when standard output is closed (the reader left).
    mutating func flush() -> Bool {
        defer { bytes.removeAll(keepingCapacity: true) }
        do {
            try FileHandle.standardOutput.write(contentsOf: bytes)
            return true
        } catch {
            return false
        }
    }
}
