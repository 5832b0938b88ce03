// SPDX-License-Identifier: GPL-2.0-or-later
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

    public var description: String {
        "\(operation): \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// The funnel for the C module's calls, which return -errno on failure.
@inline(__always)
func check(_ operation: @autoclosure () -> String, _ result: Int32) throws(SystemError) -> Int32 {
    if result < 0 { throw SystemError(operation(), negativeErrno: result) }
    return result
}
