// SPDX-License-Identifier: GPL-2.0-or-later
internal import CDnsgateShims
#if canImport(Glibc)
import Glibc
#endif

/// The calling thread's scheduling: priority, CPUs and name.
public enum CurrentThread {
    /// Gives the calling thread (a helper: log, stats, feeds) a lower priority
    /// than the workers, so that it never delays a packet on a shared core.
    public static func lowerPriority() {
        _ = dg_lower_current_thread_priority()
    }

    /// The CPUs the calling thread may run on, ascending: what it inherited
    /// (`taskset`, systemd's `CPUAffinity=`, a cpuset), since threads start
    /// with their creator's affinity.
    public static func allowedCPUs() throws(SystemError) -> [Int] {
        var cpus = [Int32](repeating: 0, count: Int(DG_MAXIMUM_CPUS))
        let count = try check("reading the CPU affinity", cpus.withUnsafeMutableBufferPointer {
            dg_allowed_cpus($0.baseAddress, Int32($0.count))
        })
        return cpus[0..<Int(count)].map(Int.init)
    }

    /// Pins the calling thread (the worker) to `cpu`, which must be one it may
    /// already run on: the kernel would let a thread move to any CPU of its
    /// cpuset, outside the affinity the operator gave the process.
    public static func pin(to cpu: Int) throws(SystemError) {
        guard try allowedCPUs().contains(cpu) else {
            throw SystemError("pinning to CPU \(cpu), outside the CPUs this process may run on", negativeErrno: -EINVAL)
        }
        _ = try check("pinning to CPU \(cpu)", dg_pin_current_thread(Int32(cpu)))
    }

    /// Names the calling thread as `ps -L`, `top -H` and /proc/PID/task/*/comm
    /// show it (at most 15 bytes are kept).
    public static func name(_ name: String) {
        _ = dg_name_current_thread(name)
    }
}

/// Process-wide memory settings.
public enum MemoryTuning {
    /// Allocations of `threshold` bytes or more get their own mapping and go
    /// back to the system when freed, so a reload does not grow the daemon.
    public static func returnLargeBlocksToSystem(threshold: Int = 1 << 20) {
        dg_return_large_blocks(threshold)
    }

    /// At most `count` heaps: each thread that compiles a policy (the feeds,
    /// zones and stats threads, a signal's) would otherwise keep an arena of
    /// its own whose high-water mark stays with the process, and RSS climbs
    /// with every reload that lands on another thread. The packet path does
    /// not allocate, so the workers do not contend for them.
    public static func limitHeaps(to count: Int32 = 2) {
        dg_limit_heaps(count)
    }

    /// Hands the free pages of every heap back to the system (after a reload
    /// has dropped the old policy).
    public static func releaseFreePages() {
        dg_trim_heap()
    }
}

/// The process's privileges.
public enum Privileges {
    /// From root: becomes `user`, keeping only CAP_NET_ADMIN and CAP_NET_RAW.
    public static func drop(to user: String) throws(SystemError) {
        _ = try check("dropping privileges to user '\(user)'", dg_drop_privileges(user))
    }
}
