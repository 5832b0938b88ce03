// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import Foundation
import Testing
@testable import ThreatDetection

/// The repository root, found from this file (Tests/ThreatDetectionTests/...).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path
let shippedListPath = repositoryRoot + "/detect/public_suffix_list.dat"

/// The registrable domain of `text` under `list` (both sections, or the ICANN
/// section alone), as text; nil when none.
func registrable(_ text: String, _ list: PublicSuffixList, icannOnly: Bool = false) throws -> String? {
    let name = try #require(DomainName(text: text))
    let starts = list.registrableDomainStarts(name)
    #expect(starts.all == list.registrableDomainStart(name), "\(text): the one-result call is `all`")
    guard let start = icannOnly ? starts.icann : starts.all else { return nil }
    return (start..<name.labelCount).map { label in
        String(decoding: (name.labelStart(label) + 1..<name.labelStart(label + 1)).map { name.wireByte($0) }, as: UTF8.self)
    }.joined(separator: ".").lowercased()
}

@Suite struct PublicSuffixListTests {
    let small = try! PublicSuffixList(text: """
        // comment
        com
        uk
        co.uk
        *.ck
        !www.ck
        jp
        *.kobe.jp
        !city.kobe.jp
        github.io   trailing text is ignored
        公司.cn
        cn
        """, file: "small.dat")

    @Test func plainRulesAndTheDefaultRule() throws {
        #expect(try registrable("com", small) == nil)
        #expect(try registrable("example.com", small) == "example.com")
        #expect(try registrable("www.example.com", small) == "example.com")
        #expect(try registrable("a.b.example.co.uk", small) == "example.co.uk")
        #expect(try registrable("co.uk", small) == nil)
        // Unknown TLD: the default rule `*` makes the TLD the suffix.
        #expect(try registrable("example", small) == nil)
        #expect(try registrable("example.example", small) == "example.example")
        #expect(try registrable("b.example.example", small) == "example.example")
        #expect(try registrable("WWW.Example.COM", small) == "example.com")
    }

    @Test func wildcardsAndExceptions() throws {
        #expect(try registrable("ck", small) == nil)
        #expect(try registrable("test.ck", small) == nil)
        #expect(try registrable("b.test.ck", small) == "b.test.ck")
        #expect(try registrable("a.b.test.ck", small) == "b.test.ck")
        #expect(try registrable("www.ck", small) == "www.ck")
        #expect(try registrable("www.www.ck", small) == "www.ck")
        #expect(try registrable("c.kobe.jp", small) == nil)
        #expect(try registrable("b.c.kobe.jp", small) == "b.c.kobe.jp")
        #expect(try registrable("city.kobe.jp", small) == "city.kobe.jp")
        #expect(try registrable("www.city.kobe.jp", small) == "city.kobe.jp")
        #expect(try registrable("kobe.jp", small) == "kobe.jp")
    }

    @Test func internationalisedRulesMatchPunycode() throws {
        #expect(try registrable("xn--55qx5d.cn", small) == nil)  // 公司.cn
        #expect(try registrable("shishi.xn--55qx5d.cn", small) == "shishi.xn--55qx5d.cn")
        #expect(try registrable("www.shishi.XN--55QX5D.cn", small) == "shishi.xn--55qx5d.cn")
        #expect(Punycode.encode("bücher".unicodeScalars.map(\.value)) == Array("bcher-kva".utf8))
    }

    @Test func unusualBytesDoNotMatchOrCrash() throws {
        #expect(try registrable("a_b.c=d.com", small) == "c=d.com")
        #expect(try registrable("x.co_uk", small) == "x.co_uk")
        #expect(try registrable("\\\\.com", small) == "\\\\.com")  // two backslashes
        #expect(small.registrableDomainStart(DomainName()) == nil)
    }

    @Test func badRulesNameFileAndLine() {
        #expect(throws: ThreatDetectionError.self) { try PublicSuffixList(text: "", file: "empty.dat") }
        do {
            _ = try PublicSuffixList(text: "com\na..b\n", file: "bad.dat")
            Issue.record("an empty label was accepted")
        } catch {
            #expect(error.description == "bad.dat:2: bad rule 'a..b'")
        }
        do {
            _ = try PublicSuffixList(text: "com\n\n*.a.*.b\n", file: "bad.dat")
            Issue.record("an inner wildcard was accepted")
        } catch {
            #expect(error.line == 3)
        }
    }

    /// Sections as publicsuffix.org marks them; a PRIVATE rule below an ICANN one.
    let sectioned = try! PublicSuffixList(text: """
        // ===BEGIN ICANN DOMAINS===
        com
        net
        io
        jp
        *.kobe.jp
        !city.kobe.jp
        // ===END ICANN DOMAINS===
        // ===BEGIN PRIVATE DOMAINS===
        cloudfront.net
        github.io
        *.compute.example.com
        !www.compute.example.com
        *.private.jp
        // ===END PRIVATE DOMAINS===
        """, file: "sectioned.dat")

    @Test func icannAndPrivateRegistrableDomainsInOneWalk() throws {
        let cases: [(name: String, icann: String?, all: String?)] = [
            ("www.example.com", "example.com", "example.com"),
            ("d2908q01vomqb2.cloudfront.net", "cloudfront.net", "d2908q01vomqb2.cloudfront.net"),
            ("a.b.d2908q01vomqb2.CloudFront.net", "cloudfront.net", "d2908q01vomqb2.cloudfront.net"),
            ("cloudfront.net", "cloudfront.net", nil),  // a private suffix: registrable at a registrar
            ("user.github.io", "github.io", "user.github.io"),
            ("x.host.compute.example.com", "example.com", "x.host.compute.example.com"),
            ("host.compute.example.com", "example.com", nil),
            ("a.www.compute.example.com", "example.com", "www.compute.example.com"),
            ("a.b.c.kobe.jp", "b.c.kobe.jp", "b.c.kobe.jp"),
            ("www.city.kobe.jp", "city.kobe.jp", "city.kobe.jp"),
            ("a.b.private.jp", "private.jp", "a.b.private.jp"),  // `*.private.jp`: b.private.jp is a suffix
            ("net", nil, nil),
            ("example.unknowntld", "example.unknowntld", "example.unknowntld"),  // the default rule `*`
        ]
        for (name, icann, all) in cases {
            #expect(try registrable(name, sectioned, icannOnly: true) == icann, "\(name) ICANN")
            #expect(try registrable(name, sectioned) == all, "\(name) both sections")
        }
        #expect(sectioned.registrableDomainStarts(DomainName()) == (nil, nil))
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: shippedListPath), "detect/public_suffix_list.dat missing"))
    func theShippedListsSectionsSplitTenantsFromRegistrars() throws {
        let list = try PublicSuffixList(text: String(contentsOfFile: shippedListPath, encoding: .utf8), file: shippedListPath)
        for (name, icann, all) in [("d2908q01vomqb2.cloudfront.net", "cloudfront.net", "d2908q01vomqb2.cloudfront.net"),
                                   ("foo-9f8e7d6c5b4a.azurewebsites.net", "azurewebsites.net", "foo-9f8e7d6c5b4a.azurewebsites.net"),
                                   ("www.bdtbgkwhsvtobpxq.firebaseapp.com", "firebaseapp.com", "bdtbgkwhsvtobpxq.firebaseapp.com"),
                                   ("someone.github.io", "github.io", "someone.github.io"),
                                   ("a.example.co.uk", "example.co.uk", "example.co.uk")] {
            #expect(try registrable(name, list, icannOnly: true) == icann, "\(name)")
            #expect(try registrable(name, list) == all, "\(name)")
        }
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: shippedListPath), "detect/public_suffix_list.dat missing"))
    func theShippedListUsesBothSections() throws {
        let list = try PublicSuffixList(text: String(contentsOfFile: shippedListPath, encoding: .utf8), file: shippedListPath)
        #expect(try registrable("www.example.com", list) == "example.com")
        #expect(try registrable("a.b.example.co.uk", list) == "example.co.uk")
        #expect(try registrable("www.ck", list) == "www.ck")
        #expect(try registrable("b.test.ck", list) == "b.test.ck")
        #expect(try registrable("www.city.kobe.jp", list) == "city.kobe.jp")
        // PRIVATE section: each user's site is its own registrable domain.
        #expect(try registrable("foo.github.io", list) == "foo.github.io")
        #expect(try registrable("github.io", list) == nil)
        #expect(try registrable("x.blogspot.com", list) == "x.blogspot.com")
        #expect(try registrable("bucket.s3.amazonaws.com", list) == "bucket.s3.amazonaws.com")
        #expect(try registrable("xn--85x722f.xn--55qx5d.cn", list) == "xn--85x722f.xn--55qx5d.cn")
        #expect(try registrable("unknowntld", list) == nil)
    }
}
