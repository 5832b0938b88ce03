// SPDX-License-Identifier: GPL-2.0-or-later

/// A DNS RR type. Open: unknown values survive a round trip.
public struct QueryType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let a = QueryType(rawValue: 1)
    public static let ns = QueryType(rawValue: 2)
    public static let cname = QueryType(rawValue: 5)
    public static let soa = QueryType(rawValue: 6)
    public static let null = QueryType(rawValue: 10)
    public static let ptr = QueryType(rawValue: 12)
    public static let mx = QueryType(rawValue: 15)
    public static let txt = QueryType(rawValue: 16)
    public static let aaaa = QueryType(rawValue: 28)
    public static let srv = QueryType(rawValue: 33)
    public static let naptr = QueryType(rawValue: 35)
    public static let dname = QueryType(rawValue: 39)
    public static let opt = QueryType(rawValue: 41)
    public static let ds = QueryType(rawValue: 43)
    public static let rrsig = QueryType(rawValue: 46)
    public static let dnskey = QueryType(rawValue: 48)
    public static let svcb = QueryType(rawValue: 64)
    public static let https = QueryType(rawValue: 65)
    public static let any = QueryType(rawValue: 255)
    public static let caa = QueryType(rawValue: 257)
    /// Meta-types of zone transfers (RFC 8945, RFC 1995, RFC 5936).
    public static let tsig = QueryType(rawValue: 250)
    public static let ixfr = QueryType(rawValue: 251)
    public static let axfr = QueryType(rawValue: 252)

    private static let mnemonics: [(String, QueryType)] = [
        ("A", .a), ("NS", .ns), ("CNAME", .cname), ("SOA", .soa), ("NULL", .null), ("PTR", .ptr),
        ("MX", .mx), ("TXT", .txt), ("AAAA", .aaaa), ("SRV", .srv), ("NAPTR", .naptr), ("OPT", .opt),
        ("DS", .ds), ("RRSIG", .rrsig), ("DNSKEY", .dnskey), ("SVCB", .svcb), ("HTTPS", .https),
        ("ANY", .any), ("CAA", .caa),
        // The rest of IANA's registry of types with mnemonics, so that logs,
        // qtypes and `classify` name them as everyone else does.
        ("MD", QueryType(rawValue: 3)), ("MF", QueryType(rawValue: 4)), ("MB", QueryType(rawValue: 7)),
        ("MG", QueryType(rawValue: 8)), ("MR", QueryType(rawValue: 9)), ("WKS", QueryType(rawValue: 11)),
        ("HINFO", QueryType(rawValue: 13)), ("MINFO", QueryType(rawValue: 14)), ("RP", QueryType(rawValue: 17)),
        ("AFSDB", QueryType(rawValue: 18)), ("X25", QueryType(rawValue: 19)), ("ISDN", QueryType(rawValue: 20)),
        ("RT", QueryType(rawValue: 21)), ("NSAP", QueryType(rawValue: 22)), ("NSAP-PTR", QueryType(rawValue: 23)),
        ("SIG", QueryType(rawValue: 24)), ("KEY", QueryType(rawValue: 25)), ("PX", QueryType(rawValue: 26)),
        ("GPOS", QueryType(rawValue: 27)), ("LOC", QueryType(rawValue: 29)), ("NXT", QueryType(rawValue: 30)),
        ("EID", QueryType(rawValue: 31)), ("NIMLOC", QueryType(rawValue: 32)), ("ATMA", QueryType(rawValue: 34)),
        ("KX", QueryType(rawValue: 36)), ("CERT", QueryType(rawValue: 37)), ("A6", QueryType(rawValue: 38)),
        ("DNAME", QueryType(rawValue: 39)), ("SINK", QueryType(rawValue: 40)), ("APL", QueryType(rawValue: 42)),
        ("SSHFP", QueryType(rawValue: 44)), ("IPSECKEY", QueryType(rawValue: 45)), ("NSEC", QueryType(rawValue: 47)),
        ("DHCID", QueryType(rawValue: 49)), ("NSEC3", QueryType(rawValue: 50)), ("NSEC3PARAM", QueryType(rawValue: 51)),
        ("TLSA", QueryType(rawValue: 52)), ("SMIMEA", QueryType(rawValue: 53)), ("HIP", QueryType(rawValue: 55)),
        ("NINFO", QueryType(rawValue: 56)), ("RKEY", QueryType(rawValue: 57)), ("TALINK", QueryType(rawValue: 58)),
        ("CDS", QueryType(rawValue: 59)), ("CDNSKEY", QueryType(rawValue: 60)), ("OPENPGPKEY", QueryType(rawValue: 61)),
        ("CSYNC", QueryType(rawValue: 62)), ("ZONEMD", QueryType(rawValue: 63)), ("SPF", QueryType(rawValue: 99)),
        ("NID", QueryType(rawValue: 104)), ("L32", QueryType(rawValue: 105)), ("L64", QueryType(rawValue: 106)),
        ("LP", QueryType(rawValue: 107)), ("EUI48", QueryType(rawValue: 108)), ("EUI64", QueryType(rawValue: 109)),
        ("TKEY", QueryType(rawValue: 249)), ("TSIG", QueryType(rawValue: 250)), ("IXFR", QueryType(rawValue: 251)),
        ("AXFR", QueryType(rawValue: 252)), ("MAILB", QueryType(rawValue: 253)), ("MAILA", QueryType(rawValue: 254)),
        ("URI", QueryType(rawValue: 256)), ("AVC", QueryType(rawValue: 258)), ("DOA", QueryType(rawValue: 259)),
        ("AMTRELAY", QueryType(rawValue: 260)), ("RESINFO", QueryType(rawValue: 261)), ("WALLET", QueryType(rawValue: 262)),
        ("TA", QueryType(rawValue: 32768)), ("DLV", QueryType(rawValue: 32769)),
    ]

    /// Parses a mnemonic (`AAAA`, case-insensitive) or the RFC 3597 form `TYPE65`.
    public init?(mnemonic: String) {
        let upper = mnemonic.uppercased()
        if let known = Self.mnemonics.first(where: { $0.0 == upper }) {
            self = known.1
        } else if upper.hasPrefix("TYPE"), let value = UInt16(upper.dropFirst(4)) {
            self.init(rawValue: value)
        } else {
            return nil
        }
    }

    public var description: String {
        Self.mnemonics.first(where: { $0.1 == self })?.0 ?? "TYPE\(rawValue)"
    }
}

/// A DNS CLASS; only IN is used by forged answers.
public struct QueryClass: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let internet = QueryClass(rawValue: 1)
    public static let chaos = QueryClass(rawValue: 3)
    public static let any = QueryClass(rawValue: 255)
    public var description: String {
        switch self {
        case .internet: "IN"
        case .chaos: "CH"
        case .any: "ANY"
        default: "CLASS\(rawValue)"
        }
    }
}

/// A DNS RCODE (the 4 header bits).
public struct ResponseCode: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let noError = ResponseCode(rawValue: 0)
    public static let formatError = ResponseCode(rawValue: 1)
    public static let serverFailure = ResponseCode(rawValue: 2)
    public static let nameError = ResponseCode(rawValue: 3)
    public static let notImplemented = ResponseCode(rawValue: 4)
    public static let refused = ResponseCode(rawValue: 5)
    /// Not authorized (RFC 8945: a TSIG the server would not take).
    public static let notAuth = ResponseCode(rawValue: 9)
}

extension ResponseCode: CustomStringConvertible {
    /// The IANA mnemonic (as Route 53's query logs write `rcode`), or `RCODE<n>`.
    public var description: String {
        switch rawValue {
        case 0: "NOERROR"
        case 1: "FORMERR"
        case 2: "SERVFAIL"
        case 3: "NXDOMAIN"
        case 4: "NOTIMP"
        case 5: "REFUSED"
        case 6: "YXDOMAIN"
        case 7: "YXRRSET"
        case 8: "NXRRSET"
        case 9: "NOTAUTH"
        case 10: "NOTZONE"
        default: "RCODE\(rawValue)"
        }
    }
}

/// An RFC 8914 Extended DNS Error INFO-CODE.
public struct ExtendedErrorCode: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let forgedAnswer = ExtendedErrorCode(rawValue: 4)
    public static let blocked = ExtendedErrorCode(rawValue: 15)
    public static let censored = ExtendedErrorCode(rawValue: 16)
    public static let filtered = ExtendedErrorCode(rawValue: 17)
    public static let prohibited = ExtendedErrorCode(rawValue: 18)
}

/// EDNS option codes that dnsgate reads or writes.
public enum EDNSOptionCode {
    public static let cookie: UInt16 = 10
    public static let extendedError: UInt16 = 15
}
