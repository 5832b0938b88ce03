// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire

/// A list entry's name as a policy key: lowercase wire form (length-prefixed
/// labels, no root byte) and its hash, held inline so that reading a list does
/// not allocate per entry.
public struct NameKey {
    var bytes = InlineArray<254, UInt8>(repeating: 0)
    public private(set) var count = 0
    public private(set) var hash: UInt64 = 0

    /// The empty key: the root, used by the `*` entry.
    public init() { hash = NameHash().value }

    /// Parses presentation text (`Ads.Example.com`, trailing dot optional).
    /// Nil unless every label is 1–63 letters, digits, `-` or `_` and the whole
    /// fits 255 bytes of wire form: list syntax (`/`, `^`, `$`, `*`, `:`, …)
    /// is never taken for part of a name.
    public init?(text: Span<UInt8>) {
        var end = text.count
        if end > 0, text[end - 1] == UInt8(ascii: ".") { end -= 1 }
        guard end > 0 else { return nil }
        var labelStart = 0  // where the current label's length byte goes
        count = 1
        for index in 0..<end {
            let byte = text[index]
            if byte == UInt8(ascii: ".") {
                let length = count - labelStart - 1
                guard length >= 1, length <= 63, count < 254 else { return nil }
                bytes[labelStart] = UInt8(length)
                labelStart = count
                count += 1
                continue
            }
            guard Self.isNameByte(byte), count < 254 else { return nil }
            bytes[count] = byte &- 0x41 < 26 ? byte | 0x20 : byte
            count += 1
        }
        let length = count - labelStart - 1
        guard length >= 1, length <= 63 else { return nil }
        bytes[labelStart] = UInt8(length)
        var hasher = NameHash()
        for index in (0..<count).reversed() { hasher.add(bytes[index]) }
        hash = hasher.value
    }

    public init?(text: some StringProtocol) {
        let utf8 = Array(text.utf8)
        self.init(text: utf8.span)
    }

    @inline(__always)
    static func isNameByte(_ byte: UInt8) -> Bool {
        (byte | 0x20) &- 0x61 < 26 || byte &- 0x30 < 10 || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
    }

    @inline(__always)
    public subscript(index: Int) -> UInt8 { bytes[index] }

    public var array: [UInt8] { (0..<count).map { bytes[$0] } }
}
