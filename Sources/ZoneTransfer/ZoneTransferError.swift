// SPDX-License-Identifier: GPL-2.0-or-later

/// Why a message from a primary, a transfer or a zone copy could not be used.
public struct ZoneTransferError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
