import Testing

@testable import DittoProtocol

/// Issue #22, item 1: the bridge writes no number Ditto cannot read. Ditto's verdicts are in
/// `Resources/oracle/numbers.jsonl` (``OracleFixtureTests``); these hold each way into the rule.
@Suite struct DittoNumberRuleTests {
    static let unreadable = [
        "9223372036854775808", "-9223372036854775809", "12345678901234567890", "18446744073709551615",
        "123456789012345678901234567890", "1.7976931348623159e308", "1e309", "-1e309", "1E309",
        "1e99999999999999999999", "0." + String(repeating: "0", count: 300) + "1e610", "10e308", "0.1e310",
    ]
    static let readable = [
        "0", "-0", "-0.0", "1.0", "1e3", "1E+2", "1e-400", "2147483648", "9223372036854775807",
        "-9223372036854775808", "999999999999999999", "-999999999999999999", "9223372036854775807.0",
        "92233720368547758070e-1", "1e308", "1.7976931348623157e308", "1.7976931348623158e308",
        "-1.7976931348623157e308", "0.1e309", "0." + String(repeating: "1234567890", count: 10),
        "0." + String(repeating: "0", count: 300) + "1e609", "0e99999999999", "123456789012345678901234567890e-20",
    ]

    @Test(arguments: unreadable)
    func refusedEverywhere(_ literal: String) throws {
        #expect(JSONNumber(literal: literal) == nil)
        let refusal = try #require(JSONNumber.rangeRefusal(literal: literal))
        #expect(refusal.contains("out of the range Ditto reads"))
        let text = #"{"a":[1,{"b":\#(literal)}]}"#
        #expect(throws: JSONParseError.self) { try JSON.parse(text) }
        do {
            _ = try JSON.parse(text)
        } catch {
            #expect(error.offset == 13)
            #expect(error.reason.hasPrefix("Number \(literal.prefix(40))"))
        }
        #expect(JSON.compactValue(Array(text.utf8)) == nil)
        #expect(throws: JSONParseError.self) { try JSON.parseKeepingCompactText(Array(text.utf8)) }
        // Taken where only parts of a document reach Ditto, and found in those parts.
        let document = try JSON.parseAnyNumbers(Array(text.utf8))
        #expect(document.numberDittoCannotRead?.literal == literal)
        let event = #"{"topic":"org.example/d/things/live/events/modified","headers":{},"path":"/attributes/a","value":\#(literal),"revision":1}"#
        #expect(throws: DittoError.self) { try Envelope.decode(Array(event.utf8)) }
        do {
            _ = try Envelope.decode(Array(event.utf8))
        } catch {
            #expect(error.error == "json.invalid")
        }
    }

    @Test(arguments: readable)
    func readableNumbersPassAsWritten(_ literal: String) throws {
        #expect(JSONNumber(literal: literal)?.literal == literal)
        #expect(JSONNumber.rangeRefusal(literal: literal) == nil)
        let text = #"{"a":[1,{"b":\#(literal)}]}"#
        #expect(JSON.serializeToString(try JSON.parse(text)) == text)
        #expect(JSON.compactValue(Array(text.utf8))?.range == 0..<text.utf8.count)
        #expect(try JSON.parseAnyNumbers(Array(text.utf8)).numberDittoCannotRead == nil)
    }

    @Test func grammarErrorsStayGrammarErrors() {
        for literal in ["", "-", "01", "1.", ".5", "1e", "+1", "0x10", "1e+", "--1"] {
            #expect(JSONNumber(literal: literal) == nil, "\(literal)")
            #expect(JSONNumber.rangeRefusal(literal: literal) == nil, "\(literal)")
        }
        #expect(throws: JSONParseError.self) { try JSON.parseAnyNumbers(Array("[01]".utf8)) }
    }
}
