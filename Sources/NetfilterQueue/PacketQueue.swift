// SPDX-License-Identifier: GPL-2.0-or-later
internal import CDnsgateShims
#if canImport(Glibc)
import Glibc
#endif

public enum Verdict: Sendable { case accept, drop }

/// One bound NFQUEUE queue. Owned by exactly one worker thread: its receive
/// buffer and packet array are reused for every batch, so the loop allocates
/// nothing.
public final class PacketQueue {
    public let number: UInt16
    private let handle: OpaquePointer
    private let packets: UnsafeMutablePointer<dg_packet>
    private let verdicts: UnsafeMutablePointer<UInt8>
    private let batchCapacity = Int32(DG_RECEIVE_BATCH)
    /// An optional setting the kernel refused (the queue works without it).
    public let optionalSettingFailure: SystemError?
    /// Packets accepted by the C side because a single datagram held more than the batch.
    public private(set) var overflowAccepted: UInt64 = 0

    /// - Parameters:
    ///   - copyRange: bytes of each packet the kernel copies to us. The whole
    ///     packet by default: a question behind a kilobyte of IPv6 extension
    ///     headers must still be read, and the kernel copies only what a packet
    ///     holds, so small queries cost the same.
    ///   - maximumBacklog: packets the kernel holds for us before it drops (or, with
    ///     `failOpen`, accepts) new ones.
    ///   - receiveTimeoutMilliseconds: how long `receive` waits, so that the
    ///     caller notices shutdown.
    public init(number: UInt16, copyRange: UInt32 = 0xffff, maximumBacklog: UInt32 = 4096,
                failOpen: Bool, receiveTimeoutMilliseconds: Int32 = 250) throws(SystemError) {
        var error: Int32 = 0, optionalError: Int32 = 0
        guard let handle = dg_queue_open(number, copyRange, maximumBacklog, failOpen ? 1 : 0,
                                         receiveTimeoutMilliseconds, &error, &optionalError) else {
            // The kernel says EPERM for a queue another socket holds, EBUSY for a second bind.
            let holder = error == -EPERM || error == -EBUSY
                ? " (another process, perhaps a second dnsgate, holds it; or CAP_NET_ADMIN is missing)" : ""
            throw SystemError("binding NFQUEUE \(number)\(holder)", negativeErrno: error)
        }
        optionalSettingFailure = optionalError == 0 ? nil
            : SystemError("setting the backlog or fail-open flag of NFQUEUE \(number)", negativeErrno: optionalError)
        self.number = number
        self.handle = handle
        self.packets = .allocate(capacity: Int(batchCapacity))
        self.verdicts = .allocate(capacity: Int(batchCapacity))
    }

    deinit {
        release()
        packets.deallocate()
        verdicts.deallocate()
    }

    private var released = false

    /// Unbinds the queue: with the fail-open rules the kernel passes what it
    /// would queue from now on, with the fail-closed ones it drops it. Called
    /// by the owner once it no longer receives.
    public func release() {
        guard !released else { return }
        released = true
        dg_queue_close(handle)
    }

    /// Waits for the next batch (or the timeout) and asks `decide` for each
    /// packet's verdict, given the captured bytes (at most the copy range), the
    /// packet's length on the wire and the 48-bit Ethernet source address when
    /// the kernel reported one. The span is valid only during the call. The
    /// batch's verdicts leave together. Returns how many packets were handled.
    @discardableResult
    public func receive(_ decide: (Span<UInt8>, Int, UInt64?) -> Verdict) throws(SystemError) -> Int {
        guard !released else { return 0 }
        let count = Int(try check("receiving from NFQUEUE \(number)",
                                  dg_queue_receive(handle, packets, batchCapacity, &overflowAccepted)))
        for index in 0..<count {
            let packet = packets[index]
            let bytes = UnsafeBufferPointer(start: packet.payload, count: packet.payload == nil ? 0 : Int(packet.payload_len))
            var hardwareAddress: UInt64? = nil
            if packet.hw_addr_len == 6 {
                hardwareAddress = withUnsafeBytes(of: packet.hw_addr) { raw in
                    (0..<6).reduce(UInt64(0)) { $0 << 8 | UInt64(raw[$1]) }
                }
            }
            let verdict = decide(bytes.span, Int(packet.packet_len), hardwareAddress)
            verdicts[index] = verdict == .accept ? UInt8(DG_VERDICT_ACCEPT) : UInt8(DG_VERDICT_DROP)
        }
        _ = try check("verdicts on NFQUEUE \(number)", dg_queue_verdicts(handle, packets, verdicts, Int32(count)))
        return count
    }
}
