/// A JSON value that keeps what a Ditto Protocol message carries exactly: object key order, the literal
/// text of numbers (`1.0` stays `1.0`, big integers stay exact) and strings byte for byte.
///
/// Equality follows JSON semantics for objects (same key/value set, any order); strings and keys compare
/// by their UTF-8 bytes, not by Unicode canonical equivalence, because Ditto (Java) compares code units.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case number(JSONNumber)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.number(let a), .number(let b)): return a == b
        case (.string(let a), .string(let b)): return a.utf8Equals(b)
        case (.array(let a), .array(let b)): return a == b
        case (.object(let a), .object(let b)): return a == b
        default: return false
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch self {
        case .null: hasher.combine(0 as UInt8)
        case .bool(let b): hasher.combine(1 as UInt8); hasher.combine(b)
        case .number(let n): hasher.combine(2 as UInt8); hasher.combine(n)
        case .string(let s): hasher.combine(3 as UInt8); s.hashUTF8(into: &hasher)
        case .array(let a): hasher.combine(4 as UInt8); hasher.combine(a)
        case .object(let o): hasher.combine(5 as UInt8); hasher.combine(o)
        }
    }
}

// MARK: - Accessors

extension JSONValue {
    /// Which of JSON's kinds this value is.
    public var kind: JSON.Kind {
        switch self {
        case .null: .null
        case .bool: .bool
        case .number: .number
        case .string: .string
        case .array: .array
        case .object: .object
        }
    }

    /// The string, if this is a JSON string.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The boolean, if this is `true` or `false`.
    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// The number, if this is a JSON number.
    public var numberValue: JSONNumber? {
        if case .number(let n) = self { return n }
        return nil
    }

    /// The number as an exact 64-bit integer, if it is one.
    public var int64Value: Int64? { numberValue?.int64Value }

    /// The number as an `Int`, if it is an exact integer in range.
    public var intValue: Int? { int64Value.flatMap { Int(exactly: $0) } }

    /// The number as a `Double`.
    public var doubleValue: Double? { numberValue?.doubleValue }

    /// The elements, if this is a JSON array.
    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// The object, if this is a JSON object.
    public var objectValue: JSONObject? {
        if case .object(let o) = self { return o }
        return nil
    }

    /// Whether this is JSON `null`.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// The member `key` if this is an object that has it.
    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    /// The element at `index` if this is an array that long.
    public subscript(index: Int) -> JSONValue? {
        if case .array(let a) = self, a.indices.contains(index) { return a[index] }
        return nil
    }

    /// The compact JSON text of this value.
    public var jsonText: String { String(decoding: JSON.serialize(self), as: UTF8.self) }
}

extension JSONValue: CustomStringConvertible {
    /// The compact JSON text of this value.
    public var description: String { jsonText }
}

// MARK: - Literals

extension JSONValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral,
    ExpressibleByDictionaryLiteral
{
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int) { self = .number(JSONNumber(value)) }
    public init(floatLiteral value: Double) { self = .number(JSONNumber(value)) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        var object = JSONObject()
        for (key, value) in elements { object[key] = value }
        self = .object(object)
    }
}

// MARK: - Byte-exact string helpers

extension String {
    /// Byte equality of the UTF-8 encodings (no Unicode canonical equivalence).
    @inline(__always)
    func utf8Equals(_ other: String) -> Bool {
        let a = utf8, b = other.utf8
        guard a.count == b.count else { return false }
        let fast = a.withContiguousStorageIfAvailable { pa in
            b.withContiguousStorageIfAvailable { pb in sameBytes(pa, pb) }
        }
        if let fast, let result = fast { return result }
        return a.elementsEqual(b)
    }

    @inline(__always)
    func hashUTF8(into hasher: inout Hasher) {
        let done: Void? = utf8.withContiguousStorageIfAvailable { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        if done == nil {
            for byte in utf8 { hasher.combine(byte) }
        }
        hasher.combine(0xFF as UInt8)  // terminator: no valid UTF-8 contains 0xFF
    }
}

// MARK: - Numbers

extension JSONValue {
    /// The first number in this value (depth first) that Ditto cannot read (``JSONNumber/rangeRefusal(literal:)``),
    /// nil when there is none: a value parsed with ``JSON/parseAnyNumbers(_:)`` must pass this before it goes to Ditto.
    public var numberDittoCannotRead: JSONNumber? {
        switch self {
        case .number(let number):
            return JSONNumber(literal: number.literal) == nil ? number : nil
        case .array(let elements):
            for element in elements { if let found = element.numberDittoCannotRead { return found } }
            return nil
        case .object(let object):
            for (_, value) in object { if let found = value.numberDittoCannotRead { return found } }
            return nil
        case .null, .bool, .string:
            return nil
        }
    }
}

/// A JSON number kept as its literal text, so nothing is lost between decode and encode.
public struct JSONNumber: Sendable, Hashable, CustomStringConvertible {
    /// The literal text as it appears in JSON, e.g. `21.5`, `1.0`, `1E+2`.
    public let literal: String

    private init(unchecked literal: String) { self.literal = literal }

    /// An integer number.
    public init(_ value: Int) { literal = String(value) }

    /// A 64-bit integer number.
    public init(_ value: Int64) { literal = String(value) }

    /// A floating-point number written with the shortest text that reads back to the same `Double`.
    ///
    /// JSON has no NaN or infinity: NaN becomes `0`, infinities become the largest finite `Double`.
    public init(_ value: Double) {
        if value.isNaN {
            literal = "0"
        } else if value.isInfinite {
            literal = value < 0 ? "-1.7976931348623157e+308" : "1.7976931348623157e+308"
        } else {
            literal = value.description
        }
    }

    /// Validates `literal` against the JSON number grammar (RFC 8259 section 6).
    public init?(literal: String) {
        var text = literal
        let valid = text.withUTF8 { buffer in
            JSONNumber.scan(buffer, from: 0) == buffer.count && !buffer.isEmpty
        }
        guard valid else { return nil }
        self.literal = literal
    }

    init(validatedLiteral: String) { self.init(unchecked: validatedLiteral) }

    /// Scans a JSON number starting at `start`; returns the end offset, or `nil` if the grammar is broken or the
    /// number is one Ditto cannot read (``scanGrammar(_:from:)``): every parse, compact scan and literal check goes
    /// through here, so the bridge never writes such a number.
    @inline(__always)
    static func scan(_ b: UnsafeBufferPointer<UInt8>, from start: Int) -> Int? {
        guard let scanned = scanGrammar(b, from: start), scanned.readable else { return nil }
        return scanned.end
    }

    /// Why ``scan(_:from:)`` returned nil at `start`: a broken number, or one Ditto cannot read (named).
    static func refusal(_ b: UnsafeBufferPointer<UInt8>, from start: Int) -> String {
        guard let scanned = scanGrammar(b, from: start) else { return "Invalid number" }
        var text = String(decoding: UnsafeBufferPointer(rebasing: b[start..<scanned.end]), as: UTF8.self)
        if text.utf8.count > 40 { text = String(text.prefix(40)) + "..." }
        return "Number \(text) is out of the range Ditto reads (\(rangeDescription))"
    }

    /// Ditto's limits in words, for error messages and documentation.
    public static let rangeDescription =
        "integers from -9223372036854775808 to 9223372036854775807, other numbers up to ±1.7976931348623157e308"

    /// For a `literal` in the JSON number grammar that Ditto cannot read, why (naming it); nil otherwise.
    public static func rangeRefusal(literal: String) -> String? {
        var text = literal
        return text.withUTF8 { buffer in
            guard let scanned = scanGrammar(buffer, from: 0), scanned.end == buffer.count, !scanned.readable else {
                return nil
            }
            return refusal(buffer, from: 0)
        }
    }

    /// Ditto reads JSON numbers with Java (`DefaultDittoJsonHandler`): a literal without `.`, `e` or `E` with
    /// `Long.parseLong`, which fails beyond 64 bits and makes the whole message `json.invalid`; any other with
    /// `Double.parseDouble`, whose infinity for a value beyond `Double.greatestFiniteMagnitude` Ditto then writes
    /// as `Infinity`, which is not JSON. Underflow to zero is a number Ditto reads and writes, so it passes.
    /// The grammar (RFC 8259 section 6) and that rule in one pass, without allocating for the usual numbers:
    /// only a decimal literal between 1e308 and 1e309 is converted to decide.
    @inline(__always)
    static func scanGrammar(_ b: UnsafeBufferPointer<UInt8>, from start: Int) -> (end: Int, readable: Bool)? {
        var i = start
        let n = b.count
        let negative = i < n && b[i] == UInt8(ascii: "-")
        if negative { i += 1 }
        guard i < n else { return nil }
        let integerStart = i
        var integerDigits = 0  // significant digits before the point: none for a leading "0"
        if b[i] == UInt8(ascii: "0") {
            i += 1
        } else if b[i] >= UInt8(ascii: "1") && b[i] <= UInt8(ascii: "9") {
            i += 1
            while i < n && b[i] &- UInt8(ascii: "0") < 10 { i += 1 }
            integerDigits = i - integerStart
        } else {
            return nil
        }
        var isInteger = true
        var fractionStart = 0
        var fractionEnd = 0
        if i < n && b[i] == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            guard i < n && b[i] &- UInt8(ascii: "0") < 10 else { return nil }
            fractionStart = i
            while i < n && b[i] &- UInt8(ascii: "0") < 10 { i += 1 }
            fractionEnd = i
        }
        var exponent = 0
        if i < n && (b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E")) {
            isInteger = false
            i += 1
            var exponentNegative = false
            if i < n && (b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-")) {
                exponentNegative = b[i] == UInt8(ascii: "-")
                i += 1
            }
            guard i < n && b[i] &- UInt8(ascii: "0") < 10 else { return nil }
            while i < n && b[i] &- UInt8(ascii: "0") < 10 {
                // Saturated far beyond any text's length: only the order of magnitude matters.
                if exponent < 1_000_000_000_000 { exponent = exponent &* 10 &+ Int(b[i] &- UInt8(ascii: "0")) }
                i += 1
            }
            if exponentNegative { exponent = -exponent }
        }
        if isInteger {
            // Long.parseLong: up to 18 digits always fit, 20 never (no leading zeros in JSON).
            if integerDigits < 19 { return (i, true) }
            if integerDigits > 19 { return (i, false) }
            // Long.MAX_VALUE, or for a negative number the magnitude of Long.MIN_VALUE.
            let limit: StaticString = negative ? "9223372036854775808" : "9223372036854775807"
            let p = limit.utf8Start
            for k in 0..<19 where b[integerStart + k] != p[k] {
                return (i, b[integerStart + k] < p[k])
            }
            return (i, true)
        }
        // The value is in [10^(magnitude-1), 10^magnitude): finite below 1e308, infinite from 1e309 on.
        var magnitude = integerDigits
        if integerDigits == 0 {
            var k = fractionStart
            while k < fractionEnd && b[k] == UInt8(ascii: "0") { k += 1 }
            if k == fractionEnd { return (i, true) }  // zero, whatever the exponent
            magnitude = fractionStart - k
        }
        magnitude += exponent
        if magnitude <= 308 { return (i, true) }
        if magnitude >= 310 { return (i, false) }
        let text = String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
        return (i, Double(text)?.isFinite ?? false)
    }

    /// The exact integer value if the number is an integer within `Int64` (`1e2` → 100, `1.5` → nil).
    public var int64Value: Int64? {
        if let exact = Int64(literal) { return exact }
        guard let double = Double(literal), double.rounded(.towardZero) == double,
            let exact = Int64(exactly: double)
        else { return nil }
        // Doubles beyond 2^53 are not exact representations of the literal.
        guard abs(double) <= 9_007_199_254_740_992 else { return nil }
        return exact
    }

    /// The nearest `Double`.
    public var doubleValue: Double { Double(literal) ?? 0 }

    /// Whether the literal is written as an integer (no fraction, no exponent).
    public var isIntegerLiteral: Bool {
        !literal.utf8.contains { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }
    }

    /// The literal text.
    public var description: String { literal }
}
