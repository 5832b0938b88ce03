// SPDX-License-Identifier: GPL-2.0-or-later
internal import CDnsgateShims

public enum Verdict: Sendable { case accept, drop }

/// One bound NFQUEUE queue. Owned by exactly one worker thread: its receive
/// buffer and packet array are reused for every batch, so the loop allocates
/// nothing.
public final class PacketQueue {
    public let number: UInt16
    private let handle: OpaquePointer
    private let packets: UnsafeMutablePointer<dg_packet>
    private let batchCapacity: Int32 = 64
    /// Packets accepted by the C side because a single datagram held more than the batch.
    public private(set) var overflowAccepted: UInt64 = 0

    /// - Parameters:
    ///   - copyRange: bytes of each packet the kernel copies to us.
    ///   - maximumBacklog: packets the kernel holds for us before it drops (or, with
    ///     `failOpen`, accepts) new ones.
    ///   - receiveTimeoutMilliseconds: how long `receive` waits, so that the
    ///     caller notices shutdown.
    public init(number: UInt16, copyRange: UInt32 = 0xffff, maximumBacklog: UInt32 = 4096,
                failOpen: Bool, receiveTimeoutMilliseconds: Int32 = 250) throws(SystemError) {
        var error: Int32 = 0
        guard let handle = dg_queue_open(number, copyRange, maximumBacklog, failOpen ? 1 : 0,
                                         receiveTimeoutMilliseconds, &error) else {
            throw SystemError("binding NFQUEUE \(number)", negativeErrno: error)
        }
        self.number = number
        self.handle = handle
        self.packets = .allocate(capacity: Int(batchCapacity))
    }

    deinit {
        dg_queue_close(handle)
        packets.deallocate()
    }

    /// Waits for the next batch (or the timeout) and asks `decide` for each
    /// packet's verdict. The span is valid only during the call.
    /// Returns how many packets were handled.
    @discardableResult
    public func receive(_ decide: (Span<UInt8>) -> Verdict) throws(SystemError) -> Int {
        let count = try check("receiving from NFQUEUE \(number)",
                              dg_queue_receive(handle, packets, batchCapacity, &overflowAccepted))
        for index in 0..<Int(count) {
            let packet = packets[index]
            let verdict: Verdict
            if let payload = packet.payload {
                let bytes = UnsafeBufferPointer(start: payload, count: Int(packet.payload_len))
                verdict = decide(bytes.span)
            } else {
                verdict = decide(UnsafeBufferPointer<UInt8>(start: nil, count: 0).span)
            }
            let code: Int32 = verdict == .accept ? Int32(DG_VERDICT_ACCEPT) : Int32(DG_VERDICT_DROP)
            _ = try check("verdict on NFQUEUE \(number)", dg_queue_verdict(handle, packet.id, code))
        }
        return Int(count)
    }
}

/// Kernel-side counters of a queue, from /proc/net/netfilter/nfnetlink_queue.
public struct KernelQueueStats: Sendable {
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
