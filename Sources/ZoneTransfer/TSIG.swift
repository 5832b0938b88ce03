// SPDX-License-Identifier: GPL-2.0-or-later
import Crypto
import Foundation

/// A TSIG key (RFC 8945) shared with a primary.
public struct TSIGKey: Sendable, Equatable {
    public enum Algorithm: String, Sendable, CaseIterable {
        case hmacSHA256 = "hmac-sha256", hmacSHA384 = "hmac-sha384", hmacSHA512 = "hmac-sha512"

        var name: WireName { WireName(rawValue + ".")! }

        func code(for data: [UInt8], secret: [UInt8]) -> [UInt8] {
            let key = SymmetricKey(data: secret)
            switch self {
            case .hmacSHA256: return Array(HMAC<SHA256>.authenticationCode(for: data, using: key))
            case .hmacSHA384: return Array(HMAC<SHA384>.authenticationCode(for: data, using: key))
            case .hmacSHA512: return Array(HMAC<SHA512>.authenticationCode(for: data, using: key))
            }
        }
    }

    public var name: WireName
    public var algorithm: Algorithm
    public var secret: [UInt8]

    public init(name: WireName, algorithm: Algorithm, secret: [UInt8]) {
        self.name = name
        self.algorithm = algorithm
        self.secret = secret
    }

    /// Reads a key file: the secret of a BIND `key "NAME" { algorithm ...;
    /// secret "BASE64"; };` block or of Knot's `keymgr -t` output, or the base64
    /// secret alone. The file's key name and algorithm are not read: the
    /// config names them, and a mismatch shows as BADSIG or BADKEY.
    public static func secret(fromFile text: String) throws(ZoneTransferError) -> [UInt8] {
        var encoded = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if let range = text.range(of: #"secret\s*:?\s*"?([A-Za-z0-9+/=]+)"?"#, options: .regularExpression) {
            encoded = String(text[range]).replacingOccurrences(of: #"^secret\s*:?\s*"?"#, with: "", options: .regularExpression)
                .replacingOccurrences(of: "\"", with: "")
        }
        guard !encoded.isEmpty, let data = Data(base64Encoded: encoded), data.count >= 16 else {
            throw ZoneTransferError("no base64 secret of at least 16 bytes found")
        }
        return Array(data)
    }
}

/// TSIG errors a peer reports (RFC 8945 §4.3).
func signatureErrorName(_ code: UInt16) -> String {
    switch code {
    case 16: "BADSIG"
    case 17: "BADKEY"
    case 18: "BADTIME"
    case 22: "BADTRUNC"
    default: "error \(code)"
    }
}

/// Signs the messages of one exchange and checks the other side's: a
/// request and its answer (one message or a whole transfer), each MAC
/// chained to the one before (RFC 8945 §4.3 and §5.3.1).
public struct TSIGSession: Sendable {
    public let key: TSIGKey
    /// Seconds a peer's clock may differ from ours.
    public static let fudge: UInt16 = 300
    /// The MAC the next message's digest starts with.
    private var priorMAC: [UInt8] = []
    /// Messages read since the last signed one (RFC 8945 §5.3.1: at most 99).
    private var unsigned: [UInt8] = []
    private var unsignedCount = 0
    private var signedOne = false

    public init(key: TSIGKey) { self.key = key }

    /// Signs `message` (a request, or the answer to the request last verified).
    public mutating func sign(_ message: inout [UInt8], now: UInt64) {
        let originalID = message.bigEndian16(at: 0)
        var digest = priorMAC.isEmpty ? [] : Self.prefixed(priorMAC)
        digest += message
        digest += variables(time: now, error: 0)
        let mac = key.algorithm.code(for: digest, secret: key.secret)
        var rdata = key.algorithm.name.canonicalWire
        rdata.appendBigEndian(UInt16(now >> 32 & 0xffff))
        rdata.appendBigEndian(UInt32(now & 0xffff_ffff))
        rdata.appendBigEndian(Self.fudge)
        rdata += Self.prefixed(mac)
        rdata.appendBigEndian(originalID)
        rdata += [0, 0, 0, 0]
        message += ResourceRecord(owner: key.name.lowercased, type: .tsig, recordClass: .any, ttl: 0, data: rdata).wire
        let additional = message.bigEndian16(at: 10) + 1
        message[10] = UInt8(additional >> 8)
        message[11] = UInt8(additional & 0xff)
        priorMAC = mac
    }

    /// Checks one message of the other side's answer. The first must be
    /// signed, later ones at least every 100th, and the last (see `finish`).
    public mutating func verify(_ bytes: [UInt8], _ message: DNSMessage, now: UInt64) throws(ZoneTransferError) {
        guard let offset = message.signatureOffset, let record = message.signature else {
            guard signedOne else {
                throw ZoneTransferError(message.responseCode == .notAuth
                    ? "the primary refused the key (NOTAUTH, unsigned: it does not know key \(key.name))"
                    : "the answer is not signed (TSIG key \(key.name) expected)")
            }
            unsignedCount += 1
            guard unsignedCount < 100 else { throw ZoneTransferError("more than 99 unsigned messages in a row") }
            unsigned += bytes
            return
        }
        guard record.owner == key.name else { throw ZoneTransferError("signed with key \(record.owner), not \(key.name)") }
        var reader = MessageReader(record.data)
        let algorithm = try reader.readName()
        let time = UInt64(try reader.read16()) << 32 | UInt64(try reader.read32())
        let fudge = try reader.read16()
        let mac = try reader.readBytes(Int(try reader.read16()))
        let originalID = try reader.read16()
        let error = try reader.read16()
        let other = try reader.readBytes(Int(try reader.read16()))
        guard error == 0 else {
            throw ZoneTransferError("the primary refused the signature: TSIG \(signatureErrorName(error)) (rcode \(message.responseCode))")
        }
        guard algorithm == key.algorithm.name else { throw ZoneTransferError("signed with \(algorithm), not \(key.algorithm.rawValue)") }
        // The message as it was before the TSIG was added: original ID, one additional record fewer.
        var body = Array(bytes[..<offset])
        body[0] = UInt8(originalID >> 8)
        body[1] = UInt8(originalID & 0xff)
        let additional = body.bigEndian16(at: 10) - 1
        body[10] = UInt8(additional >> 8)
        body[11] = UInt8(additional & 0xff)
        var digest = priorMAC.isEmpty ? [] : Self.prefixed(priorMAC)
        if signedOne {
            digest += unsigned + body
            digest.appendBigEndian(UInt16(time >> 32 & 0xffff))
            digest.appendBigEndian(UInt32(time & 0xffff_ffff))
            digest.appendBigEndian(fudge)
        } else {
            digest += body
            digest += variables(time: time, error: error, other: other, fudge: fudge)
        }
        let expected = key.algorithm.code(for: digest, secret: key.secret)
        guard mac.count == expected.count, zip(mac, expected).reduce(0, { $0 | ($1.0 ^ $1.1) }) == 0 else {
            throw ZoneTransferError("bad TSIG signature (key \(key.name)): the shared secrets differ")
        }
        guard time &+ UInt64(fudge) >= now, now &+ UInt64(fudge) >= time else {
            throw ZoneTransferError("TSIG time \(time) is more than \(fudge) s from ours (\(now))")
        }
        priorMAC = mac
        unsigned = []
        unsignedCount = 0
        signedOne = true
    }

    /// After the last message: it must have been signed.
    public func finish() throws(ZoneTransferError) {
        guard signedOne, unsignedCount == 0 else { throw ZoneTransferError("the last message of the answer is not signed") }
    }

    /// The TSIG variables of a first message (RFC 8945 §4.3.3).
    private func variables(time: UInt64, error: UInt16, other: [UInt8] = [], fudge: UInt16 = TSIGSession.fudge) -> [UInt8] {
        var bytes = key.name.canonicalWire
        bytes.appendBigEndian(UInt16(255))
        bytes.appendBigEndian(UInt32(0))
        bytes += key.algorithm.name.canonicalWire
        bytes.appendBigEndian(UInt16(time >> 32 & 0xffff))
        bytes.appendBigEndian(UInt32(time & 0xffff_ffff))
        bytes.appendBigEndian(fudge)
        bytes.appendBigEndian(error)
        bytes.appendBigEndian(UInt16(other.count))
        return bytes + other
    }

    private static func prefixed(_ mac: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.appendBigEndian(UInt16(mac.count))
        return bytes + mac
    }
}
