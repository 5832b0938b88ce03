// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import Foundation
import Testing
@testable import DnsgatePolicy

/// An address list read into memory.
struct ReadAddresses {
    var report: ListReport
    var entries: [(prefix: IPNetwork, line: Int, action: EntryAction?)] = []
    var prefixes: [String] { entries.map(\.prefix.description) }
    var lines: [Int] { entries.map(\.line) }
    var table: AddressTable {
        AddressTable(entries.map { AddressTable.Entry(prefix: $0.prefix, line: Int32($0.line), outcome: -1) })
    }
}

func readAddresses(_ text: String, format: ListFormat = .auto, file: String = "ip.txt") -> ReadAddresses {
    readAddresses(Array(text.utf8), format: format, file: file)
}

func readAddresses(_ bytes: [UInt8], format: ListFormat = .auto, file: String = "ip.txt") -> ReadAddresses {
    var entries: [(prefix: IPNetwork, line: Int, action: EntryAction?)] = []
    let report = AddressListParser.read(bytes.span, format: format, file: file) { entries.append(($0, $1, $2)) }
    return ReadAddresses(report: report, entries: entries)
}

@Suite("Address lists: plain addresses")
struct AddressListTests {
    @Test("addresses and prefixes, comments, blanks, tabs and CRLF; host bits cleared")
    func golden() {
        let text = """
        # a blocklist\r
        192.0.2.1\r
        \t198.51.100.0/24   # trailing comment\r
        ; a semicolon comment
        203.0.113.77/24 ; host bits set: the network

        2001:db8::/32
        2001:DB8:0:1::1
        ::ffff:192.0.2.128/121
        ::
        1:2:3:4:5:6:7:8/128
        ::1.2.3.4
        0.0.0.0/0
        10.0.0.0/8;no space before the comment
        """
        let list = readAddresses(text)
        #expect(list.report.format == .addresses)
        #expect(list.prefixes == ["192.0.2.1/32", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "2001:db8:0:1::1/128",
                                  "::ffff:c000:280/121", "::/128", "1:2:3:4:5:6:7:8/128", "::102:304/128", "0.0.0.0/0",
                                  "10.0.0.0/8"])
        #expect(list.lines == [2, 3, 5, 7, 8, 9, 10, 11, 12, 13, 14])
        #expect(list.report.entries == 11 && list.report.lines == 11 && list.report.skippedLines == 0)
        #expect(list.report.diagnostics.isEmpty)
        #expect(list.entries.allSatisfy { $0.action == nil })
        let table = list.table
        #expect(table.match("192.0.2.200") == "192.0.2.128/25", "the mapped prefix is the IPv4 one")
        #expect(table.match("203.0.113.1") == "203.0.113.0/24")
        #expect(table.match("8.8.8.8") == "0.0.0.0/0")
    }

    static let badLines: [(String, String, String)] = [
        ("192.0.2.256", "not an address", "'192.0.2.256' is not an IPv4 or IPv6 address or prefix"),
        ("192.0.2", "not an address", "not an IPv4 or IPv6"),
        ("192.0.2.1.5", "not an address", "not an IPv4"),
        ("192.0.2.1/33", "prefix length", "prefix length 33 is out of range (0–32 for IPv4)"),
        ("2001:db8::/129", "prefix length", "prefix length 129 is out of range (0–128 for IPv6)"),
        ("10.0.0.0/99999999999999999999", "prefix length", "≥1000"),
        ("10.0.0.0/", "not an address", "not an IPv4"),
        ("10.0.0.0/2x", "not an address", "not an IPv4"),
        ("/24", "not an address", "not an IPv4"),
        ("0.0.0.0 ads.example", "several fields", "found several fields: '0.0.0.0 ads.example'"),
        ("example.com", "not an address", "'example.com' is not"),
        ("2001:db8::1::2", "not an address", "not an IPv4"),
        ("2001:db8:::1", "not an address", "not an IPv4"),
        ("1:2:3:4:5:6:7:8:9", "not an address", "not an IPv4"),
        ("1:2:3:4:5:6:7", "not an address", "not an IPv4"),
        ("12345::", "not an address", "not an IPv4"),
        ("fe80::1%eth0", "not an address", "not an IPv4"),
        ("[2001:db8::1]", "not an address", "not an IPv4"),
        ("::1.2.3", "not an address", "not an IPv4"),
        ("1.2.3.4::", "not an address", "not an IPv4"),
        ("+1.2.3.4", "not an address", "not an IPv4"),
        ("1.2.3.4/+8", "not an address", "not an IPv4"),
        ("1.2.3.0004", "not an address", "not an IPv4"),
        (String(repeating: "9", count: 500), "not an address", "…' is not"),
    ]

    @Test("every bad line is skipped with a diagnostic naming the file and its line; the rest loads")
    func diagnostics() {
        let text = (["192.0.2.1"] + Self.badLines.map(\.0) + ["198.51.100.1"]).joined(separator: "\n")
        let list = readAddresses(text, format: .addresses, file: "/etc/dnsgate/bad.txt")
        #expect(list.prefixes == ["192.0.2.1/32", "198.51.100.1/32"])
        #expect(list.lines == [1, Self.badLines.count + 2])
        #expect(list.report.skippedLines == Self.badLines.count)
        #expect(list.report.unreadableLines == Self.badLines.count)
        #expect(list.report.firstUnreadableLine == 2)
        #expect(list.report.diagnostics.count == Self.badLines.count)
        for (index, (line, category, message)) in Self.badLines.enumerated() {
            let diagnostic = list.report.diagnostics[index]
            #expect(diagnostic.file == "/etc/dnsgate/bad.txt" && diagnostic.line == index + 2, "\(line)")
            #expect(diagnostic.severity == .warning)
            #expect(diagnostic.message.contains(message), "\(line): \(diagnostic.message)")
            #expect(diagnostic.description.hasPrefix("/etc/dnsgate/bad.txt:\(index + 2): warning: "))
            _ = category
        }
        var categories: [String: Int] = [:]
        for (_, category, _) in Self.badLines { categories[category, default: 0] += 1 }
        #expect(list.report.skipReasons == categories)
        #expect(list.report.diagnostics.last?.message.count ?? 0 < 200, "a long line is cut in the message")
    }

    @Test("a list that collapsed is caught like a domain list: no entries, or mostly not addresses")
    func collapse() {
        let none = readAddresses("# nothing\n\n; here\n")
        #expect(none.report.lines == 0)
        #expect(ListHealth.collapse(none.report, list: "ips", file: "f", allowEmpty: false, kind: "ip list")?.message
                == "ip list 'ips': no entries (the file is empty or only comments); set allow_empty: true on the list if this is meant")
        #expect(ListHealth.collapse(none.report, list: "ips", file: "f", allowEmpty: true) == nil)
        let page = readAddresses("192.0.2.1\n<html>\n<body>not found</body>\n</html>\n")
        #expect(page.report.entries == 1 && page.report.lines == 4 && page.report.unreadableLines == 3)
        let collapse = ListHealth.collapse(page.report, list: "ips", file: "f", allowEmpty: false, kind: "ip list")
        #expect(collapse?.line == 2)
        #expect(collapse?.message.contains("3 of its 4 lines are not addresses syntax") == true)
        let half = readAddresses("192.0.2.1\n192.0.2.2\nnope\nnope\n")
        #expect(ListHealth.collapse(half.report, list: "ips", file: "f", allowEmpty: false) == nil)
    }

    @Test("inline addresses: a bad one is an error of the config at the list's line")
    func inline() {
        var read: [(IPNetwork, Int)] = []
        let report = AddressListParser.readInline([" 192.0.2.0/24", "2001:db8::1", "nope", "10.0.0.0/40"],
                                                  file: "/etc/dnsgate.yaml", line: 12) { prefix, line, _ in read.append((prefix, line)) }
        #expect(read.map(\.0.description) == ["192.0.2.0/24", "2001:db8::1/128"])
        #expect(read.allSatisfy { $0.1 == 12 })
        #expect(report.entries == 2 && report.format == .addresses)
        #expect(report.diagnostics.count == 2)
        for diagnostic in report.diagnostics {
            #expect(diagnostic.severity == .error)
            #expect(diagnostic.file == "/etc/dnsgate.yaml" && diagnostic.line == 12)
        }
        #expect(report.diagnostics[1].message.contains("prefix length 40"))
    }

    @Test("format detection: a zone is RPZ, anything else addresses")
    func detection() {
        for (text, format) in [("192.0.2.1\n", ListFormat.addresses), ("# c\n; c\n\n2001:db8::/32\n", .addresses),
                               ("", .addresses), ("garbage\n", .addresses),
                               ("$TTL 300\n@ SOA a. b. 1 2 3 4 5\n", .rpz), ("$ORIGIN rpz.example.\n", .rpz),
                               ("; zone\n@ IN SOA ns. host. 1 2 3 4 5\n", .rpz), ("@ 300 in soa a. b. 1 2 3 4 5\n", .rpz),
                               ("32.1.2.0.192.rpz-ip CNAME .\n", .rpz), ("32.1.2.0.192.RPZ-IP.rpz.example. CNAME .\n", .rpz),
                               ("192.0.2.1\n$TTL 300\n", .addresses), ("junk ; SOA\n# $TTL\n10.0.0.0/8\n", .addresses)] {
            #expect(AddressListParser.detectFormat(Array(text.utf8).span) == format, "\(text)")
            #expect(readAddresses(text).report.format == format)
        }
    }

    @Test("the address format is not a domain format, nor the domain formats address ones")
    func formatsApart() {
        let domains = ListParser.read(Array("192.0.2.1\nads.example\n".utf8).span, format: .addresses, file: "d",
                                      matchSubdomains: false) { _, _ in Issue.record("no entry expected") }
        #expect(domains.entries == 0 && domains.unreadableLines == 2 && domains.firstUnreadableLine == 1)
        #expect(domains.diagnostics.first?.message.contains("ip_lists") == true)
        #expect(ListHealth.collapse(domains, list: "l", file: "d", allowEmpty: false) != nil)
        #expect(ListParser.detectFormat("192.0.2.1\n") == .hosts, "domain detection never answers addresses")
        for format in [ListFormat.domains, .hosts, .adblock] {
            let list = readAddresses("192.0.2.1\n0.0.0.0 ads.example\n", format: format)
            #expect(list.entries.isEmpty && list.report.unreadableLines == 2, "\(format)")
            #expect(list.report.diagnostics.first?.message.contains("domain-list format") == true)
        }
        #expect(ListFormat(rawValue: "addresses") == .addresses)
    }

    /// A line of the bytes addresses are made of: a well-formed address or
    /// prefix with a few random edits, or random bytes of that alphabet.
    static func addressLikeLine(_ random: inout SeededRandom) -> String {
        let alphabet = Array("0123456789abcdefABCDEF:./ ")
        func octet() -> String { String(Int.random(in: 0...260, using: &random)) }
        func group() -> String { String(Int.random(in: 0...0x1ffff, using: &random) >> Int.random(in: 0...16, using: &random), radix: 16) }
        let groups = (0..<8).map { _ in group() }
        let cut = Int.random(in: 0...8, using: &random), length = Int.random(in: 0...(8 - cut), using: &random)
        let shapes = [
            "\(octet()).\(octet()).\(octet()).\(octet())",
            groups.joined(separator: ":"),
            groups[..<cut].joined(separator: ":") + "::" + groups[(cut + length)...].joined(separator: ":"),
            groups[..<min(cut, 5)].joined(separator: ":") + "::ffff:\(octet()).\(octet()).\(octet()).\(octet())",
            "::", "::1", "",
        ]
        var line = Array(shapes.randomElement(using: &random)!)
        if Int.random(in: 0..<3, using: &random) == 0 { line += Array("/" + String(Int.random(in: 0...140, using: &random))) }
        for _ in 0..<[0, 0, 1, 2, 8].randomElement(using: &random)! {
            let at = Int.random(in: 0...line.count, using: &random)
            switch Int.random(in: 0..<3, using: &random) {
            case 0: line.insert(alphabet.randomElement(using: &random)!, at: at)
            case 1: if at < line.count { line.remove(at: at) }
            default: if at < line.count { line[at] = alphabet.randomElement(using: &random)! }
            }
        }
        return String(line)
    }

    @Test("the byte parser agrees with IPNetwork's text parser on address-like lines (seeded)")
    func agreesWithTextParser() {
        var random = SeededRandom(state: 7)
        var accepted = 0
        for _ in 0..<20_000 {
            let line = Self.addressLikeLine(&random)
            guard !line.isEmpty, !line.contains(" ") else { continue }
            let parsed = try? AddressListParser.prefix(Array(line.utf8).span)
            #expect(parsed == IPNetwork(line), "\(line)")
            if parsed != nil { accepted += 1 }
        }
        #expect(accepted > 5000)
    }

    @Test("random bytes and random lines never trap, and every line is accounted for (seeded)")
    func fuzz() {
        var random = SeededRandom(state: 0xF022)
        let pieces = ["192.0.2.1", "::", ":", ".", "/", "/33", "#", ";", " ", "\t", "\r", "\n", "\0", "ff", "zz", "rpz-ip",
                      "$ORIGIN", "$TTL", "SOA", "CNAME", ".", "*.", "(", ")", "\u{FFFD}", "999", "2001:db8::", "0"]
        for round in 0..<400 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                bytes = (0..<Int.random(in: 0...400, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            } else {
                var text = ""
                for _ in 0..<Int.random(in: 0...60, using: &random) {
                    text += pieces.randomElement(using: &random)!
                    if Int.random(in: 0..<4, using: &random) == 0 { text += Self.addressLikeLine(&random) }
                }
                bytes = Array(text.utf8)
            }
            for format in [ListFormat.auto, .addresses, .rpz] {
                let list = readAddresses(bytes, format: format, file: "fuzz")
                #expect(list.report.entries == list.entries.count)
                #expect(list.report.diagnostics.allSatisfy { $0.file == "fuzz" && $0.line >= 1 })
                if list.report.format == .addresses {
                    #expect(list.report.entries + list.report.skippedLines == list.report.lines)
                }
                _ = list.table.lookup(.v4(0xC000_0201))
            }
        }
    }
}

@Suite("Address lists: rpz-ip triggers of an RPZ zone")
struct AddressListRPZTests {
    static let zone = """
    $TTL 2h
    $ORIGIN rpz.example.
    @   SOA ns.example. hostmaster.example. ( 1 12h
            15m 3w 2h )
        NS  ns.example.
    32.1.2.0.192.rpz-ip         CNAME .
    24.0.2.0.192.rpz-ip         CNAME *.
    48.zz.db8.2001.rpz-ip       CNAME rpz-passthru.
    128.1.zz.db8.2001.rpz-ip 300 IN CNAME rpz-drop.
    16.0.0.51.198.rpz-ip        A 192.0.2.53
    64.zz.3.2.1.2001.RPZ-IP     AAAA 2001:db8::53
    8.0.0.0.10.rpz-ip.rpz.example. CNAME walled.example.net.
    128.202.c000.ffff.zz.rpz-ip CNAME .
    nx.test                     CNAME .
    *.nx.test                   CNAME .
    32.1.0.0.127.rpz-client-ip  CNAME rpz-drop.
    ns.bad.rpz-nsdname          CNAME .
    32.2.2.0.192.rpz-nsip       CNAME .
    32.9.2.0.192.rpz-ip         CNAME rpz-tcp-only.
    """

    @Test("rpz-ip triggers with their actions; QNAME triggers ignored; other triggers reported")
    func zone() {
        let list = readAddresses(Self.zone, file: "z.rpz")
        #expect(list.report.format == .rpz)
        #expect(list.prefixes == ["192.0.2.1/32", "192.0.2.0/24", "2001:db8::/48", "2001:db8::1/128", "198.51.0.0/16",
                                  "2001:1:2:3::/64", "10.0.0.0/8", "::ffff:c000:202/128"])
        #expect(list.lines == [6, 7, 8, 9, 10, 11, 12, 13])
        #expect(list.entries.map(\.action) == [
            .nxdomain, .nodata, .passthru, .drop, .override(OverrideRecord(type: .a, ttl: 300, data: [192, 0, 2, 53])),
            .override(OverrideRecord(type: .aaaa, ttl: 300, data: address("2001:db8::53").bytes)),
            .override(OverrideRecord(type: .cname, ttl: 300, data: ListParser.key(for: "walled.example.net")! + [0])),
            .nxdomain,
        ])
        #expect(list.report.entries == 8)
        #expect(list.report.skipReasons == ["rpz-client-ip trigger (unsupported)": 1, "rpz-nsdname trigger (unsupported)": 1,
                                            "rpz-nsip trigger (unsupported)": 1, "unsupported action": 1])
        #expect(list.report.unreadableLines == 0)
        #expect(list.report.diagnostics.map(\.line) == [16, 17, 18, 19])
        #expect(list.report.diagnostics.allSatisfy { $0.file == "z.rpz" })
        #expect(list.report.diagnostics[0].message.contains("an ip_list reads only rpz-ip triggers"))
        #expect(ListHealth.collapse(list.report, list: "z", file: "z.rpz", allowEmpty: false) == nil)
        let table = list.table
        #expect(table.lookup(address("192.0.2.1"))?.line == 6)
        #expect(table.lookup(address("192.0.2.2"))?.line == 13, "the mapped /128 is 192.0.2.2/32")
        #expect(table.lookup(address("192.0.2.3"))?.line == 7)
        #expect(table.lookup(address("2001:db8::1"))?.line == 9)
        #expect(table.lookup(address("2001:db8::2"))?.line == 8)
        #expect(table.lookup(address("10.200.0.1"))?.line == 12)
    }

    @Test("the domain parser reads the QNAME triggers of the same file and points rpz-ip to ip_lists")
    func domainSide() {
        let list = ListParser.parse(text: Self.zone, format: .auto, file: "z.rpz", matchSubdomains: false)
        #expect(list.entries.count == 2)
        #expect(list.skipReasons["rpz-ip trigger (unsupported)"] == 9)
        let diagnostic = list.diagnostics.first { $0.line == 6 }
        #expect(diagnostic?.message.contains("read when the file is used as an ip_list") == true)
        #expect(list.report.unreadableLines == 0)
    }

    static let hostile: [(String, String)] = [
        ("33.1.2.0.192.rpz-ip", "prefix length 33 is out of range (1–32 for IPv4)"),
        ("129.zz.db8.2001.rpz-ip", "prefix length 129 is out of range (1–128 for IPv6)"),
        ("0.1.2.0.192.rpz-ip", "prefix length 0 is out of range"),
        ("32.2.0.192.rpz-ip", "3 words: an IPv6 address has 8"),
        ("32.1.1.2.0.192.rpz-ip", "5 words"),
        ("32.256.2.0.192.rpz-ip", "'256' is not an IPv4 octet"),
        ("32.1.2.0.1920.rpz-ip", "'1920' is not an IPv4 octet"),
        ("48.zz.db8.zz.2001.rpz-ip", "two 'zz'"),
        ("32.1..2.0.192.rpz-ip", "an empty label"),
        (".32.1.2.0.192.rpz-ip", "an empty label"),
        ("3x.1.2.0.192.rpz-ip", "prefix length '3x' is not a number"),
        ("-1.1.2.0.192.rpz-ip", "prefix length '-1' is not a number"),
        ("99999999999999999999.1.2.0.192.rpz-ip", "is not a number"),
        ("32.1.2.0.19x.rpz-ip", "'19x' is not an IPv4 octet"),
        ("48.zz.db8.12345.rpz-ip", "'12345' is not a 16-bit hex word"),
        ("48.zz.db8.g001.rpz-ip", "'g001' is not a 16-bit hex word"),
        ("128.1.2.3.4.5.6.7.8.9.rpz-ip", "9 address labels"),
        ("rpz-ip", "expected <prefix length>.<reversed address>.rpz-ip"),
        ("32.rpz-ip", "expected <prefix length>"),
        ("24.1.2.0.192.rpz-ip", "address bits set past the prefix length 24"),
        ("32.1.2.0.192.rpz-ip.sub", "must come right below the zone's origin"),
        ("32.1.2.0.192.rpz-ip..rpz.example.", "must come right below"),
        ("zz.rpz-ip", "expected <prefix length>"),
        ("zz.1.2.0.192.rpz-ip", "prefix length 'zz' is not a number"),
        ("128.zz.zz.rpz-ip", "two 'zz'"),
        ("1.zz.rpz-ip", ""),  // ::/1: well-formed
    ]

    @Test("hostile rpz-ip owners: each a diagnostic with its line, none an entry, no trap")
    func hostileOwners() {
        let text = "$ORIGIN rpz.example.\n" + Self.hostile.map { "\($0.0) CNAME ." }.joined(separator: "\n")
        let list = readAddresses(text, format: .rpz, file: "h.rpz")
        #expect(list.prefixes == ["::/1"])
        let bad = Self.hostile.count - 1
        #expect(list.report.skippedLines == bad && list.report.unreadableLines == bad)
        #expect(list.report.skipReasons == ["bad rpz-ip trigger": bad])
        #expect(list.report.diagnostics.count == bad)
        for (index, (owner, message)) in Self.hostile.dropLast().enumerated() {
            let diagnostic = list.report.diagnostics.first { $0.line == index + 2 }
            #expect(diagnostic?.file == "h.rpz", "\(owner)")
            #expect(diagnostic?.message.contains(message) == true, "\(owner): \(diagnostic?.message ?? "none")")
        }
    }

    @Test("the PowerDNS RPZ read as an ip_list: its one rpz-ip trigger, the rest reported or ignored",
          .enabled(if: publishedListsDirectory != nil, "../shared/data is absent"))
    func powerDNS() throws {
        let path = try #require(publishedListsDirectory) + "/powerdns_fuzz_rpz/basic.rpz"
        let list = readAddresses(try String(contentsOfFile: path, encoding: .utf8), file: path)
        #expect(list.report.format == .rpz)
        #expect(list.prefixes == ["10.0.0.2/32"])
        #expect(list.entries.first?.action == .nxdomain)
        #expect(list.report.skipReasons["rpz-client-ip trigger (unsupported)"] == 2)
        #expect(list.report.skipReasons["rpz-nsdname trigger (unsupported)"] == 3)
        #expect(list.report.skipReasons["rpz-ip trigger (unsupported)"] == nil)
        #expect(list.report.unreadableLines == 0)
    }

    @Test("an rpz-ip trigger's owner is read as BIND reads it (golden)", arguments: [
        ("32.1.2.0.192", "192.0.2.1/32"), ("24.0.2.0.192", "192.0.2.0/24"), ("8.0.0.0.10", "10.0.0.0/8"),
        ("1.0.0.0.128", "128.0.0.0/1"), ("32.255.255.255.255", "255.255.255.255/32"), ("32.001.2.0.192", "192.0.2.1/32"),
        ("48.zz.db8.2001", "2001:db8::/48"), ("128.1.zz.db8.2001", "2001:db8::1/128"),
        ("128.8.7.6.5.4.3.2.1", "1:2:3:4:5:6:7:8/128"), ("128.zz.1", "1::/128"), ("128.1.zz", "::1/128"),
        ("64.zz.ABCD.2001", "2001:abcd::/64"), ("96.zz.ffff.0", "0:ffff::/96"), ("128.1.zz.2", "2::1/128"),
        ("128.0.0.0.0.0.0.0.1", "1::/128"),
    ])
    func owners(owner: String, expected: String) {
        let list = readAddresses("$ORIGIN rpz.\n\(owner).rpz-ip CNAME .\n", format: .rpz)
        #expect(list.prefixes == [expected], "\(list.report.diagnostics)")
    }
}
