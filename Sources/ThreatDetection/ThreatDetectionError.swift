// SPDX-License-Identifier: GPL-2.0-or-later
/// The one error type of this module: a model or suffix list that cannot be read.
public struct ThreatDetectionError: Error, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var message: String
    public init(file: String, line: Int, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }
    public var description: String { line > 0 ? "\(file):\(line): \(message)" : "\(file): \(message)" }
}
