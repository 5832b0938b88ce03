// SPDX-License-Identifier: GPL-2.0-or-later
import NetfilterQueue
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// Appends query-log lines to a file, a FIFO or standard output, and never
/// lets the output stop the daemon: every failure (a full disk, a read-only
/// file system, a FIFO nobody reads, a reader that went away) costs the
/// records of that write, counted, and a reported error; deciding goes on.
///
/// Writes wait at most `writeWaitMilliseconds` for room, so a stalled reader
/// cannot hold the log thread (or shutdown) for long. SIGPIPE is ignored by
/// the daemon, so a closed pipe is an `EPIPE`, not a death.
final class QueryLogWriter {
    static let writeWaitMilliseconds: Int32 = 100
    /// A file that cannot be opened is tried again after this many seconds.
    static let reopenDelaySeconds: UInt64 = 5
    /// Pipes take at most this much at once without blocking (PIPE_BUF).
    static let chunkLength = 4096

    /// "-" is standard output.
    let path: String
    private var descriptor: FileDescriptor?
    private var nextOpenAttempt: UInt64 = 0
    /// The last write stopped inside a line: the next one starts a new line.
    private var lineCut = false
    /// Why the last write or open failed; nil once writing works again.
    private(set) var lastError: String?

    init(path: String) {
        self.path = path
    }

    deinit { closeFile() }

    private static func now() -> UInt64 { monotonicNanoseconds() / 1_000_000_000 }

    /// Opens the output unless open (or an open failed within `reopenDelaySeconds`).
    private func ensureOpen() -> FileDescriptor? {
        if let descriptor { return descriptor }
        guard Self.now() >= nextOpenAttempt else { return nil }
        if path == "-" {
            descriptor = .standardOutput
            return descriptor
        }
        do {
            // Non-blocking: opening a FIFO with no reader fails (ENXIO) instead of
            // waiting for one forever; O_APPEND keeps lines whole between writers.
            descriptor = try FileDescriptor.open(
                FilePath(path), .writeOnly, options: [.append, .create, .nonBlocking, .closeOnExec],
                permissions: [.ownerReadWrite, .groupRead])
            lastError = nil
        } catch {
            fail("opening \(path): \(error)")
        }
        return descriptor
    }

    private func fail(_ reason: String) {
        lastError = reason
        nextOpenAttempt = Self.now() + Self.reopenDelaySeconds
    }

    /// Writes `bytes`, whose records end at `recordEnds` (ascending offsets);
    /// returns how many records were written whole. The rest are lost.
    func write(_ bytes: [UInt8], recordEnds: [Int]) -> Int {
        guard !bytes.isEmpty, let descriptor = ensureOpen() else { return 0 }
        if lineCut {
            guard writeAll([UInt8(ascii: "\n")], to: descriptor) == 1 else { return 0 }
            lineCut = false
        }
        let written = writeAll(bytes, to: descriptor)
        if written > 0, written < bytes.count, bytes[written - 1] != UInt8(ascii: "\n") { lineCut = true }
        return recordEnds.prefix { $0 <= written }.count
    }

    /// Writes as much as the output takes within the wait; returns the bytes written.
    private func writeAll(_ bytes: [UInt8], to descriptor: FileDescriptor) -> Int {
        var offset = 0
        // Bounded: every round writes at least one byte or ends the loop.
        while offset < bytes.count {
            guard waitUntilWritable(descriptor) else {
                lastError = "writing \(path): the reader is not taking the log"
                return offset
            }
            let end = min(offset + Self.chunkLength, bytes.count)
            do {
                let count = try bytes[offset..<end].withUnsafeBytes { try descriptor.write($0, retryOnInterrupt: true) }
                guard count > 0 else { return offset }
                offset += count
            } catch Errno.wouldBlock {
                // Writable by poll, yet full: as a wait that ran out, never a spin.
                lastError = "writing \(path): the reader is not taking the log"
                return offset
            } catch {
                // ENOSPC, EROFS, EIO, EPIPE...: reopened after a delay (a FIFO's
                // reader may come back, a disk may be freed).
                fail("writing \(path): \(error)")
                closeFile()
                return offset
            }
        }
        lastError = nil
        return offset
    }

    private func waitUntilWritable(_ descriptor: FileDescriptor) -> Bool {
        var poller = pollfd(fd: descriptor.rawValue, events: Int16(POLLOUT), revents: 0)
        for _ in 0..<3 {  // EINTR only
            let ready = poll(&poller, 1, Self.writeWaitMilliseconds)
            if ready > 0 { return poller.revents & Int16(POLLOUT | POLLERR | POLLHUP) != 0 }
            if ready == 0 || errno != EINTR { return false }
        }
        return false
    }

    /// Opens the output now (at start-up), so that the file is there before
    /// the first record; a failure is reported like a failed write.
    func open() {
        _ = ensureOpen()
    }

    /// After logrotate moved the file (SIGUSR1): the path is opened anew at
    /// once, so the new file is there (empty) as soon as the signal is handled.
    func reopen() {
        closeFile()
        nextOpenAttempt = 0
        open()
    }

    private func closeFile() {
        if let descriptor, path != "-" { try? descriptor.close() }
        descriptor = nil
        lineCut = false
    }
}
