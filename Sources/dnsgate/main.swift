// SPDX-License-Identifier: GPL-2.0-or-later
import ArgumentParser
import Foundation

// First of all: a reload or log-reopen request that arrives while the policy
// loads must not kill the daemon (their default action), and a closed pipe
// (a query log reader that went away) is an error to count, not a death. The
// daemon installs its own handlers for SIGHUP and SIGUSR1 once it runs.
signal(SIGHUP, SIG_IGN)
signal(SIGUSR1, SIG_IGN)
signal(SIGPIPE, SIG_IGN)

// SPEC §4 exit codes: 0 success, 1 runtime failure, 2 usage error.
do {
    var command = try Dnsgate.parseAsRoot()
    try command.run()
} catch let failure as CommandFailure {
    FileHandle.standardError.write(Data((failure.message + "\n").utf8))
    exit(1)
} catch {
    let code = Dnsgate.exitCode(for: error)
    if code == .success {
        Dnsgate.exit(withError: error)  // --help and --version
    }
    FileHandle.standardError.write(Data((Dnsgate.fullMessage(for: error) + "\n").utf8))
    exit(code == .validationFailure ? 2 : 1)
}
