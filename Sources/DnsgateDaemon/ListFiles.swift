// SPDX-License-Identifier: GPL-2.0-or-later
import DnsgatePolicy
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Reads a whole regular file of at most `maximumBytes`: its size is checked
/// before a byte is read, and it is read in chunks that stop at the limit, so
/// neither a huge file nor one that grows while it is read can take more
/// memory than the limit (a 2 GiB list once took the daemon to 7 GB and an
/// OOM kill). A FIFO or device is refused rather than waited on.
public func readFileBytes(_ path: String, maximumBytes: Int) throws -> [UInt8] {
    // O_NONBLOCK: opening a FIFO nobody writes must not hang a reload.
    let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
    guard descriptor >= 0 else { throw DaemonError(description: String(cString: strerror(errno))) }
    defer { close(descriptor) }
    var status = stat()
    guard fstat(descriptor, &status) == 0 else { throw DaemonError(description: String(cString: strerror(errno))) }
    guard (status.st_mode & S_IFMT) == S_IFREG else { throw DaemonError(description: "not a regular file") }
    let size = Int(status.st_size)
    guard size <= maximumBytes else {
        throw DaemonError(description: "\(size) bytes, more than max_size (\(maximumBytes) bytes)")
    }
    let chunk = 1 << 20
    var bytes = [UInt8]()
    bytes.reserveCapacity(size)
    var buffer = [UInt8](repeating: 0, count: chunk)
    // Each turn reads at least one byte or ends; the total is capped, so the loop is bounded.
    while true {
        let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, chunk) }
        if count < 0 {
            if errno == EINTR { continue }
            throw DaemonError(description: String(cString: strerror(errno)))
        }
        if count == 0 { return bytes }
        guard bytes.count + count <= maximumBytes else {
            throw DaemonError(description: "grew past max_size (\(maximumBytes) bytes) while being read")
        }
        bytes.append(contentsOf: buffer[0..<count])
    }
}

/// The config path made absolute from the working directory, once at start,
/// so that every path the config names resolves the same way (`ConfigPaths`)
/// in the compiler, the feed thread, the logs and the stats.
public func absoluteConfigPath(_ path: String) -> String {
    ConfigPaths.absolute(path, in: FileManager.default.currentDirectoryPath)
}
