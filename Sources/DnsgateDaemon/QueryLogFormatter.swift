// SPDX-License-Identifier: GPL-2.0-or-later
import DNSWire
import DnsgatePolicy
import ThreatDetection

/// Writes Route 53 Resolver–style query-log lines as bytes into a reused
/// buffer: numbers, times and IPv4 addresses by hand, and each rule's constant
/// fields encoded once per policy generation, so that logging costs the
/// gateway little.
struct QueryLogFormatter {
    /// `"firewall_rule_group":…,"block_response":…}` per (rule, outcome) of the generation in use.
    private var ruleFields: [RuleKey: [UInt8]] = [:]
    private(set) var generation = -1
    private var labels: RuleLabels?

    private struct RuleKey: Hashable {
        var rule: Int
        var action: RuleAction
        var blockResponse: BlockResponse
    }

    /// Formats records of `generation` from now on, with its rule labels
    /// (nil when that generation is too old to be kept: rules go by number).
    mutating func use(_ labels: RuleLabels?, generation: Int) {
        self.generation = generation
        self.labels = labels
        ruleFields.removeAll()
    }

    mutating func append(_ record: DecisionRecord, to out: inout [UInt8]) {
        out.append(contentsOf: #"{"query_timestamp":""#.utf8)
        Self.timestamp(seconds: record.seconds, microseconds: record.microseconds, to: &out)
        out.append(contentsOf: #"","srcaddr":""#.utf8)
        Self.address(record.source, to: &out)
        out.append(contentsOf: #"","srcport":""#.utf8)
        Self.decimal(Int(record.sourcePort), to: &out)
        out.append(contentsOf: #"","dstaddr":""#.utf8)
        Self.address(record.destination, to: &out)
        out.append(contentsOf: #"","dstport":""#.utf8)
        Self.decimal(Int(record.destinationPort), to: &out)
        out.append(contentsOf: record.transport == .tcp ? #"","transport":"TCP","query_name":"#.utf8
                   : #"","transport":"UDP","query_name":"#.utf8)
        Self.string(record.name.text + ".", to: &out)
        out.append(contentsOf: #","query_type":"#.utf8)
        Self.string(record.type.description, to: &out)
        out.append(contentsOf: #","query_class":"#.utf8)
        Self.string(record.queryClass.description, to: &out)
        if let answer = record.answer { Self.answerFields(answer, to: &out) }
        guard record.matched else {
            // As Route 53 logs a query no rule matched: no firewall fields.
            out.append(contentsOf: "}\n".utf8)
            return
        }
        if record.threat.level > .none {
            // What the detector found for this query (the rule's constant fields follow).
            out.append(contentsOf: #","threat_confidence":"#.utf8)
            Self.string(record.threat.level.configName, to: &out)
            out.append(contentsOf: #","threat_score":""#.utf8)  // a string, as Route 53 writes its numbers
            Self.decimal(Int((min(max(record.threat.score, 0), 1) * 1000).rounded()), minimumDigits: 4, fractionDigits: 3,
                         to: &out)
            out.append(UInt8(ascii: "\""))
        }
        let key = RuleKey(rule: record.ruleIndex, action: record.action, blockResponse: record.blockResponse)
        if let fields = ruleFields[key] {
            out.append(contentsOf: fields)
        } else {
            let index = record.ruleIndex
            let known = labels.map { index < $0.rule.count } ?? false
            var fields: [UInt8] = []
            fields.append(contentsOf: #","firewall_rule_group":"#.utf8)
            Self.string(known ? labels!.group[index] : "?", to: &fields)
            fields.append(contentsOf: #","firewall_rule":"#.utf8)
            Self.string(known ? labels!.rule[index] : "#\(index) of generation \(record.generation)", to: &fields)
            if known, let (threat, level) = labels!.threat[index] {
                // Route 53 names the rule's threat and threshold as its API does.
                fields.append(contentsOf: #","dns_threat_protection":"#.utf8)
                Self.string(threat.configName, to: &fields)
                fields.append(contentsOf: #","confidence_threshold":"#.utf8)
                Self.string(level.configName, to: &fields)
            } else if !known || labels!.listField[index] != nil {
                fields.append(contentsOf: #",""#.utf8)
                fields.append(contentsOf: (known ? labels!.listField[index]! : "firewall_domain_list").utf8)
                fields.append(contentsOf: #"":"#.utf8)
                Self.string(known ? labels!.list[index] : "?", to: &fields)
            } else {
                fields.append(contentsOf: #","firewall_rebinding_protection":true"#.utf8)
            }
            fields.append(contentsOf: #","firewall_rule_action":"#.utf8)
            Self.string(record.action.rawValue, to: &fields)
            if record.action == .block {
                fields.append(contentsOf: #","block_response":"#.utf8)
                Self.string(record.blockResponse.rawValue, to: &fields)
            }
            fields.append(contentsOf: "}\n".utf8)
            ruleFields[key] = fields
            out.append(contentsOf: fields)
        }
    }

    /// Most answer records a line lists.
    static let maximumLoggedAnswers = 32

    /// A decision on a response: its `rcode` and `answers` as Route 53 names
    /// them (RDATA in presentation form; types dnsgate does not read in RFC
    /// 3597's generic form), what the rule matched in it, and the stage.
    static func answerFields(_ answer: LoggedAnswer, to out: inout [UInt8]) {
        out.append(contentsOf: #","rcode":"#.utf8)
        string(answer.responseCode.description, to: &out)
        out.append(contentsOf: #","answers":["#.utf8)
        let message = answer.response.bytes.span.extracting(0..<answer.response.length)
        var listed = 0
        _ = AnswerSection.forEach(in: message, from: answer.answersStart) { record in
            if listed > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: #"{"Rdata":"#.utf8)
            switch record.data {
            case .address(let address): string(address.description, to: &out)
            case .redirection(let target): string(target.text + ".", to: &out)
            case .other, .service:
                var generic = "\\# \(record.dataRange.count)"
                if !record.dataRange.isEmpty { generic += " " }
                for offset in record.dataRange {
                    generic.unicodeScalars.append(UnicodeScalar(hexDigits[Int(message[offset] >> 4)]))
                    generic.unicodeScalars.append(UnicodeScalar(hexDigits[Int(message[offset] & 0xf)]))
                }
                string(generic, to: &out)
            }
            out.append(contentsOf: #","Type":"#.utf8)
            string(record.type.description, to: &out)
            out.append(contentsOf: #","Class":"#.utf8)
            string(record.recordClass.description, to: &out)
            out.append(UInt8(ascii: "}"))
            listed += 1
            return listed < maximumLoggedAnswers
        }
        out.append(contentsOf: #"],"decision_stage":"ANSWER""#.utf8)
        if answer.redirection.labelCount > 0 {
            out.append(contentsOf: #","redirection_domain":"#.utf8)
            string(answer.redirection.text + ".", to: &out)
        } else if let address = answer.address {
            out.append(contentsOf: #","answer_address":""#.utf8)
            Self.address(address, to: &out)
            out.append(UInt8(ascii: "\""))
        }
    }

    /// `value` in decimal; with `fractionDigits`, that many of the last
    /// digits follow a decimal point (a score of 0.875 is 875 with 3).
    static func decimal(_ value: Int, minimumDigits: Int = 1, fractionDigits: Int = 0, to out: inout [UInt8]) {
        var digits = InlineArray<20, UInt8>(repeating: 0)
        var count = 0
        var rest = max(value, 0)
        repeat {
            digits[count] = UInt8(48 + rest % 10)
            rest /= 10
            count += 1
        } while rest > 0 || count < minimumDigits
        for index in stride(from: count - 1, through: 0, by: -1) {
            out.append(digits[index])
            if index == fractionDigits, index > 0 { out.append(UInt8(ascii: ".")) }
        }
    }

    /// RFC 3339 in UTC with microseconds, from Unix time (civil-from-days, H. Hinnant).
    static func timestamp(seconds: Int, microseconds: Int, to out: inout [UInt8]) {
        let days = seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400
        let secondOfDay = seconds - days * 86400
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        decimal(year, minimumDigits: 4, to: &out)
        out.append(UInt8(ascii: "-"))
        decimal(month, minimumDigits: 2, to: &out)
        out.append(UInt8(ascii: "-"))
        decimal(day, minimumDigits: 2, to: &out)
        out.append(UInt8(ascii: "T"))
        decimal(secondOfDay / 3600, minimumDigits: 2, to: &out)
        out.append(UInt8(ascii: ":"))
        decimal(secondOfDay / 60 % 60, minimumDigits: 2, to: &out)
        out.append(UInt8(ascii: ":"))
        decimal(secondOfDay % 60, minimumDigits: 2, to: &out)
        out.append(UInt8(ascii: "."))
        decimal(microseconds, minimumDigits: 6, to: &out)
        out.append(UInt8(ascii: "Z"))
    }

    static func address(_ address: IPAddress, to out: inout [UInt8]) {
        guard case .v4(let value) = address else {
            out.append(contentsOf: address.description.utf8)
            return
        }
        for shift in stride(from: 24, through: 0, by: -8) {
            decimal(Int((value >> UInt32(shift)) & 0xff), to: &out)
            if shift > 0 { out.append(UInt8(ascii: ".")) }
        }
    }

    /// A JSON string literal.
    static func string(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                out.append(UInt8(ascii: "\\"))
                out.append(byte)
            case 0..<0x20:
                out.append(contentsOf: "\\u00".utf8)
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0xf)])
            default:
                out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)
}
