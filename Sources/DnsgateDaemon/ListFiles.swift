// SPDX-License-Identifier: GPL-2.0-or-later
import DnsgatePolicy
import Foundation

/// The config path made absolute from the working directory, once at start,
/// so that every path the config names resolves the same way (`ConfigPaths`)
/// in the compiler, the feed thread, the logs and the stats.
public func absoluteConfigPath(_ path: String) -> String {
    ConfigPaths.absolute(path, in: FileManager.default.currentDirectoryPath)
}
