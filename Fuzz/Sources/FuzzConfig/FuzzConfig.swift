// SPDX-License-Identifier: GPL-2.0-or-later
import DnsgatePolicy

/// Reads any bytes as the YAML config (lists inline or in one small file) and
/// compiles what it can.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: data == nil ? 0 : size))
    let list = Array("a.example\n*.b.example\n".utf8)
    let compiler = PolicyCompiler { path in path == "/etc/dnsgate.yaml" ? bytes : list }
    let (_, result) = compiler.load(configPath: "/etc/dnsgate.yaml", generation: 1)
    _ = result.diagnostics.map(\.description)
    return 0
}
