// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import Foundation
@testable import DnsgatePolicy

/// An in-memory file system for the compiler.
struct Files {
    var contents: [String: String]

    func read(_ path: String) throws -> [UInt8] {
        guard let text = contents[path] else { throw MissingFile(path: path) }
        return Array(text.utf8)
    }

    struct MissingFile: Error, CustomStringConvertible {
        var path: String
        var description: String { "no such file" }
    }

    func compile(_ config: String, at path: String = "/etc/dnsgate/dnsgate.yaml") -> PolicyCompiler.Result {
        var files = self
        files.contents[path] = config
        return PolicyCompiler(readFile: files.read).load(configPath: path, generation: 1).1
    }
}

func name(_ text: String) -> DomainName { DomainName(text: text)! }

/// ../shared/data/blocklists beside the project, when present (a user's clone has none).
let publishedListsDirectory: String? = {
    let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../../shared/data/blocklists").standardized.path
    return FileManager.default.fileExists(atPath: path) ? path : nil
}()
func address(_ text: String) -> IPAddress { IPAddress(text)! }

extension CompiledPolicy {
    /// "group/rule" of the deciding rule, or nil.
    func decision(_ query: String, type: QueryType = .a, client: String = "192.0.2.10") -> String? {
        decide(name: name(query), type: type, client: address(client)).map {
            "\(rules[$0.ruleIndex].group)/\(rules[$0.ruleIndex].name)"
        }
    }

    /// The outcome for a query, or nil when no rule matches.
    func outcome(_ query: String, type: QueryType = .a, client: String = "192.0.2.10") -> Outcome? {
        decide(name: name(query), type: type, client: address(client)).map { outcome(of: $0) }
    }
}
