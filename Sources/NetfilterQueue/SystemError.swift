// SPDX-License-Identifier: GPL-2.0-or-later
public import SystemPackage
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The module's one error type: a failed system call with its errno.
public struct SystemError: Error, Sendable, CustomStringConvertible {
    public var operation: String
    public var errno: Int32

    @inline(never)
    init(_ operation: String, negativeErrno: Int32) {
        self.operation = operation
        self.errno = -negativeErrno
    }

    /// The error number as swift-system's typed `Errno`.
    public var code: Errno { Errno(rawValue: errno) }

    public var description: String {
        "\(operation): \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// Signals arriving back to back interrupt a call at most this often before it fails.
let maximumInterruptions = 64

/// The funnel for the C module's calls, which return -errno on failure.
@inline(__always)
func check(_ operation: @autoclosure () -> String, _ result: Int32) throws(SystemError) -> Int32 {
    if result < 0 { throw SystemError(operation(), negativeErrno: result) }
    return result
}

/// The funnel for direct system calls (-1 and `errno` on failure): a call a
/// signal interrupts is made again, a bounded number of times.
func systemCall(_ operation: @autoclosure () -> String, _ call: @autoclosure () -> Int) throws(SystemError) -> Int {
    for _ in 0..<maximumInterruptions {
        let result = call()
        if result >= 0 { return result }
        if errno != EINTR { throw SystemError(operation(), negativeErrno: -errno) }
    }
    throw SystemError(operation(), negativeErrno: -EINTR)
}
