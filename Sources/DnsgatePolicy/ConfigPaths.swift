// SPDX-License-Identifier: GPL-2.0-or-later

/// Where the paths of a config point. Every relative path a config names
/// (`file:`, `cache_dir`, `stats_socket`, `query_log.path`) is relative to the
/// config file's folder and is resolved once, when the config is read, by this
/// one function: two parts of the daemon that each resolved a path their own
/// way once disagreed (the feed thread wrote `/cache/…` while the compiler read
/// `./cache/…`, so a feed was never enforced).
public enum ConfigPaths {
    /// `path` as named in the config at `configFile`: unchanged when absolute,
    /// otherwise beside the config file. `configFile` should be absolute (see
    /// `absolute(_:in:)`); a bare file name leaves `path` relative to the
    /// working directory, which is where such a config file is.
    public static func resolve(_ path: String, relativeTo configFile: String) -> String {
        if path.hasPrefix("/") { return path }
        guard let slash = configFile.lastIndex(of: "/") else { return path }
        return join(String(configFile[...slash]), path)
    }

    /// `path` made absolute against the absolute folder `directory` (the
    /// working directory, for a `--config` given on the command line).
    public static func absolute(_ path: String, in directory: String) -> String {
        path.hasPrefix("/") ? path : join(directory, path)
    }

    /// `directory/path`, without the `./` and doubled slashes that make two
    /// spellings of one file look different in logs and stats.
    static func join(_ directory: String, _ path: String) -> String {
        var relative = Substring(path)
        while relative.hasPrefix("./") { relative = relative.dropFirst(2).drop { $0 == "/" } }
        if relative == "." { relative = "" }
        var base = Substring(directory)
        while base.count > 1, base.hasSuffix("/") { base = base.dropLast() }
        if relative.isEmpty { return String(base) }
        return base == "/" ? "/" + relative : base + "/" + relative
    }
}
