// SPDX-License-Identifier: GPL-2.0-or-later

/// Kernel-side counters of a queue, from /proc/net/netfilter/nfnetlink_queue.
public struct KernelQueueStats: Sendable {
    /// The proc file, through the process's own directory: systemd's
    /// `ProcSubset=pid` (the shipped unit) hides /proc/net but not /proc/self/net.
    public static let path = "/proc/self/net/netfilter/nfnetlink_queue"

    public var queue: UInt16
    public var waiting: UInt64
    public var kernelDropped: UInt64
    public var userDropped: UInt64

    /// Parses the proc file's text: one line per bound queue.
    public static func parse(_ text: String) -> [UInt16: KernelQueueStats] {
        var result: [UInt16: KernelQueueStats] = [:]
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true).compactMap { UInt64($0) }
            // queue_num portid queue_total copy_mode copy_range queue_dropped user_dropped id_sequence 1
            guard fields.count >= 7, let queue = UInt16(exactly: fields[0]) else { continue }
            result[queue] = KernelQueueStats(queue: queue, waiting: fields[2], kernelDropped: fields[5],
                                             userDropped: fields[6])
        }
        return result
    }
}
