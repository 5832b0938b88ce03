// SPDX-License-Identifier: GPL-2.0-or-later
// PLACEHOLDER until the addr-lists branch lands.
public import DNSWire

public enum AddressListParser {
    public typealias Sink = (_ prefix: IPNetwork, _ line: Int, _ action: EntryAction?) -> Void
    public static func read(_ bytes: Span<UInt8>, format: ListFormat, file: String, add: Sink) -> ListReport {
        var report = ListReport(format: .addresses)
        let text = String(decoding: (0..<bytes.count).map { bytes[$0] }, as: UTF8.self)
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = String((line.split(separator: "#", omittingEmptySubsequences: false).first ?? "").trimmingSpaces)
            if trimmed.isEmpty { continue }
            report.lines += 1
            if let network = IPNetwork(trimmed) {
                add(network, index + 1, nil)
                report.entries += 1
            } else {
                report.skippedLines += 1
            }
        }
        return report
    }
    public static func readInline(_ entries: [String], file: String, line: Int, add: Sink) -> ListReport {
        read(Array(entries.joined(separator: "\n").utf8).span, format: .addresses, file: file, add: add)
    }
}
