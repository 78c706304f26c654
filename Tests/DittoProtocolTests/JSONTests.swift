import Foundation
import Testing

@testable import DittoProtocol

@Suite struct JSONTests {
    @Test func keepsKeyOrderAndNumberLiterals() throws {
        let text = #"{"z":1,"a":1.0,"m":21.5,"big":1.7976931348623157e308,"e":1E+2,"neg":-0.0}"#
        let value = try JSON.parse(text)
        #expect(value.objectValue?.keys == ["z", "a", "m", "big", "e", "neg"])
        #expect(JSON.serializeToString(value) == text)
        #expect(value["a"]?.numberValue?.literal == "1.0")
        #expect(value["m"]?.doubleValue == 21.5)
        #expect(value["big"]?.int64Value == nil)
        #expect(value["e"]?.int64Value == 100)
        #expect(value["z"]?.int64Value == 1)
    }

    /// Revisions and statuses are written digit by digit, without a `String`; they must read as `String(n)` does.
    @Test func integersAreWrittenAsTheirDecimalText() {
        for integer: Int64 in [0, 7, -1, 10, 99, 100, 404, 1_764_400_000_000_001, -42_000, .max, .min, .max - 1, .min + 1] {
            var writer = JSONWriter(capacity: 0)
            writer.writeInteger(integer)
            #expect(String(decoding: writer.bytes, as: UTF8.self) == String(integer))
        }
    }

    @Test func stringsRoundTripExactly() throws {
        let text = #"["a/b","\u00fc","ü","\ud83d\ude00","tab\there","quote\"back\\slash","\u0001"]"#
        let value = try JSON.parse(text)
        let strings = value.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(strings == ["a/b", "ü", "ü", "😀", "tab\there", "quote\"back\\slash", "\u{01}"])
        // `/` is not escaped, non-ASCII is written as UTF-8, control characters as \u00XX.
        #expect(JSON.serializeToString(value) == #"["a/b","ü","ü","😀","tab\there","quote\"back\\slash","\u0001"]"#)
    }

    /// The writer skips eight bytes at a time when none needs an escape: every character that needs one, at
    /// every offset in and around an eight-byte word, next to multi-byte UTF-8, is escaped as one at a time would.
    @Test func stringEscapesAtEveryOffset() {
        func reference(_ string: String) -> String {
            var out = "\""
            for scalar in string.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\u{08}": out += "\\b"
                case "\u{0C}": out += "\\f"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                case let s where s.value < 0x20: out += String(format: "\\u%04x", s.value)
                default: out.unicodeScalars.append(scalar)
                }
            }
            return out + "\""
        }
        let specials: [Character] = (0..<0x20).map { Character(UnicodeScalar(UInt8($0))) } + ["\"", "\\", "/", " ", "!", "#", "[", "]", "\u{7F}", "é", "€", "😀"]
        var checked = 0
        for special in specials {
            for length in [1, 7, 8, 9, 15, 16, 17, 24] {
                for offset in 0..<length {
                    var characters = Array(repeating: Character("a"), count: length)
                    characters[offset] = special
                    if length > 9 { characters[length - 1 - offset % 3] = "ü" }
                    let string = String(characters)
                    let written = String(decoding: JSON.serializeString(string), as: UTF8.self)
                    #expect(written == reference(string), "\(Array(string.utf8))")
                    checked += 1
                }
            }
        }
        #expect(checked == specials.count * 97)
        // The word test alone: each byte value at each of the eight places among harmless bytes.
        for byte in UInt8.min...UInt8.max {
            let needsEscape = byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
            for place in 0..<8 {
                let shift = UInt64(place * 8)
                let word = 0x6161_6161_6161_6161 & ~(0xFF << shift) | UInt64(byte) << shift
                #expect(JSONWriter.anyNeedsEscape(word) == needsEscape, "byte \(byte) at \(place)")
            }
        }
    }

    @Test func stringEqualityIsByteExact() {
        let precomposed = JSONValue.string("\u{E9}")
        let decomposed = JSONValue.string("e\u{301}")
        #expect(precomposed != decomposed)
        #expect(JSONValue.object(["\u{E9}": 1]) != JSONValue.object(["e\u{301}": 1]))
    }

    @Test func objectEqualityIgnoresOrderAndLastDuplicateWins() throws {
        let a = try JSON.parse(#"{"x":1,"y":[true,null]}"#)
        let b = try JSON.parse(#"{"y":[true,null],"x":1}"#)
        #expect(a == b)
        #expect(a.hashValue == b.hashValue)
        let duplicate = try JSON.parse(#"{"k":1,"other":2,"k":3}"#)
        #expect(duplicate.objectValue?.keys == ["k", "other"])
        #expect(duplicate["k"]?.intValue == 3)
    }

    @Test func largeObjectsStayIndexed() throws {
        var object = JSONObject()
        for i in 0..<100 { object["key\(i)"] = .number(JSONNumber(i)) }
        #expect(object.count == 100)
        #expect(object["key57"]?.intValue == 57)
        object["key10"] = "replaced"
        #expect(object.keys[10] == "key10")
        #expect(object.removeValue(forKey: "key0")?.intValue == 0)
        #expect(object["key99"]?.intValue == 99)
        #expect(object.keys.first == "key1")
    }

    @Test(arguments: [
        "", " ", "{", "}", "[1,]", "{\"a\":1,}", "{a:1}", "'x'", "01", "1.", ".5", "-", "1e", "+1", "NaN",
        "tru", "nul", "[1 2]", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"", "\"a\nb\"",
        "{} {}", "[\"\\ud83d\\u0041\"]",
    ])
    func rejectsInvalidJSON(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSON.parse(text) }
    }

    @Test func rejectsInvalidUTF8() {
        #expect(throws: JSONParseError.self) { try JSON.parse([0x22, 0xC3, 0x28, 0x22]) }
        #expect(throws: JSONParseError.self) { try JSON.parse([0x22, 0xFF, 0x22]) }
        #expect(throws: JSONParseError.self) { try JSON.parse([0x22, 0xED, 0xA0, 0x80, 0x22]) }  // encoded surrogate
    }

    @Test func depthIsLimited() throws {
        let ok = String(repeating: "[", count: JSON.maximumDepth) + String(repeating: "]", count: JSON.maximumDepth)
        _ = try JSON.parse(ok)
        let deep = String(repeating: "[", count: 100_000)
        let error = try #require(throws: JSONParseError.self) { try JSON.parse(deep) }
        #expect(error.reason.contains("Nesting"))
    }

    @Test func errorCarriesOffset() throws {
        let error = try #require(throws: JSONParseError.self) { try JSON.parse("{\"a\":tru}") }
        #expect(error.offset >= 5)
    }

    @Test func numbers() {
        #expect(JSONNumber(21.5).literal == "21.5")
        #expect(JSONNumber(1.0).literal == "1.0")
        #expect(JSONNumber(0.1).literal == "0.1")
        #expect(JSONNumber(Int64.max).literal == "9223372036854775807")
        #expect(JSONNumber(Double.nan).literal == "0")
        #expect(JSONNumber(literal: "1e5") != nil)
        #expect(JSONNumber(literal: "1.5e-3")?.doubleValue == 0.0015)
        #expect(JSONNumber(literal: "0x10") == nil)
        #expect(JSONNumber(literal: "") == nil)
        #expect(JSONNumber(literal: "1.5")?.int64Value == nil)
        for d in [0.1, 1e-7, 123456.789, 1e300, -2.5e-300, Double.leastNonzeroMagnitude] {
            let n = JSONNumber(d)
            #expect(Double(n.literal) == d)
            #expect(JSONNumber(literal: n.literal) != nil, "\(n.literal) must be JSON")
        }
    }

    @Test func literalsAndAccessors() {
        let value: JSONValue = ["s": "x", "n": 3, "d": 2.5, "b": true, "z": nil, "a": [1, "two"]]
        #expect(value["s"]?.stringValue == "x")
        #expect(value["n"]?.intValue == 3)
        #expect(value["d"]?.doubleValue == 2.5)
        #expect(value["b"]?.boolValue == true)
        #expect(value["z"]?.isNull == true)
        #expect(value["a"]?[1]?.stringValue == "two")
        #expect(value["a"]?[5] == nil)
        #expect(value["missing"] == nil)
        #expect(value.description == #"{"s":"x","n":3,"d":2.5,"b":true,"z":null,"a":[1,"two"]}"#)
    }

    @Test func pointers() throws {
        let root = try JSONPointer("/")
        #expect(root.isRoot)
        #expect(root.description == "/")
        let p = try JSONPointer("/features/temp/properties/a~0b")
        #expect(p.segments == ["features", "temp", "properties", "a~b"])
        #expect(p.description == "/features/temp/properties/a~0b")
        // Ditto has no ~1: it stays literal.
        #expect(try JSONPointer("/a~1b").segments == ["a~1b"])
        #expect(try JSONPointer("attributes/x").segments == ["attributes", "x"])
        #expect(try JSONPointer("/x/").segments == ["x"])
        let error = try #require(throws: DittoError.self) { try JSONPointer("/a//b") }
        #expect(error.error == "json.pointer.invalid")
        let doc: JSONValue = ["features": ["temp": ["properties": ["a~b": 21.5]]]]
        #expect(p.evaluate(in: doc)?.doubleValue == 21.5)
        #expect(root.evaluate(in: doc) == doc)
        #expect(try JSONPointer("/features/none").evaluate(in: doc) == nil)
        #expect(JSONPointer.root.appending("a").appending(try JSONPointer("/b/c")).description == "/a/b/c")
    }
}
