/// Why a JSON text could not be parsed, and where.
public struct JSONParseError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Byte offset into the input at which the problem was found.
    public var offset: Int
    /// What is wrong, in plain words.
    public var reason: String

    /// An error at byte `offset`.
    public init(offset: Int, reason: String) {
        self.offset = offset
        self.reason = reason
    }

    /// `<reason> at byte <offset>`.
    public var description: String { "\(reason) at byte \(offset)" }
}

/// Strict RFC 8259 JSON parsing and compact serialization working on UTF-8 bytes.
public enum JSON {
    /// Deepest nesting of arrays/objects accepted, so hostile input cannot exhaust the stack.
    public static let maximumDepth = 256

    /// Parses one JSON text (surrounding whitespace allowed, nothing else after it).
    public static func parse(_ bytes: some Collection<UInt8>) throws(JSONParseError) -> JSONValue {
        let result: Result<JSONValue, JSONParseError>? = bytes.withContiguousStorageIfAvailable { buffer in
            parseResult(buffer)
        }
        if let result { return try result.get() }
        let copy = Array(bytes)
        return try copy.withUnsafeBufferPointer { parseResult($0) }.get()
    }

    /// Parses one JSON text given as a string.
    public static func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        var text = text
        return try text.withUTF8 { parseResult($0) }.get()
    }

    /// Parses one JSON text like `parse(_:)`, but takes every number of the JSON grammar, also those Ditto cannot
    /// read (``JSONNumber/rangeRefusal(literal:)``): for a device document of which only some values reach Ditto.
    /// Whatever of it goes to Ditto must then pass ``JSONValue/numberDittoCannotRead``.
    public static func parseAnyNumbers(_ bytes: [UInt8]) throws(JSONParseError) -> JSONValue {
        try bytes.withUnsafeBufferPointer { buffer in
            var parser = JSONParser(buffer)
            parser.acceptsAnyNumber = true
            return parseDocument(buffer, parser: parser).map { $0.value }
        }.get()
    }

    /// Parses one JSON text like `parse(_:)` and also returns the range of `bytes` that is, byte for byte, what
    /// ``serialize(_:)`` writes for the value; nil when the text is not in that form (whitespace between tokens, an
    /// escape sequence in a string, a repeated key, or an object of more than `JSONObject.linearMemberLimit`
    /// members, whose keys are not compared on the way). Surrounding whitespace is outside the range. A writer can
    /// copy the range instead of walking the value.
    public static func parseKeepingCompactText(_ bytes: [UInt8]) throws(JSONParseError) -> (value: JSONValue, compact: Range<Int>?) {
        try bytes.withUnsafeBufferPointer { parseDocument($0) }.get()
    }

    /// The kinds of JSON values.
    public enum Kind: Sendable, Hashable {
        case null, bool, number, string, array, object
    }

    /// For a JSON text whose value is in the form ``serialize(_:)`` writes and whose strings are ASCII: the value's
    /// kind and the range of its bytes, the same range ``parseKeepingCompactText(_:)`` returns, found without
    /// building the value (no allocation). Nil for every other text, valid or not: the caller then parses it, for
    /// the value or for the error. A device payload copied whole into an event needs nothing more.
    public static func compactValue(_ bytes: [UInt8]) -> (kind: Kind, range: Range<Int>)? {
        bytes.withUnsafeBufferPointer { buffer in
            var parser = JSONParser(buffer)
            parser.skipWhitespace()
            let start = parser.position
            guard start < buffer.count, let kind = parser.skipCompactValue(depth: 0) else { return nil }
            let end = parser.position
            parser.skipWhitespace()
            guard parser.position == buffer.count else { return nil }
            return (kind, start..<end)
        }
    }

    static func parseResult(_ buffer: UnsafeBufferPointer<UInt8>) -> Result<JSONValue, JSONParseError> {
        parseDocument(buffer).map { $0.value }
    }

    private static func parseDocument(
        _ buffer: UnsafeBufferPointer<UInt8>, parser: JSONParser? = nil
    ) -> Result<(value: JSONValue, compact: Range<Int>?), JSONParseError> {
        var parser = parser ?? JSONParser(buffer)
        do throws(JSONParseError) {
            parser.skipWhitespace()
            let start = parser.position
            parser.isCompact = true
            let value = try parser.parseValue(depth: 0)
            let end = parser.position
            let compact = parser.isCompact
            parser.skipWhitespace()
            guard parser.position == buffer.count else {
                throw JSONParseError(offset: parser.position, reason: "Unexpected data after the JSON value")
            }
            return .success((value, compact ? start..<end : nil))
        } catch {
            return .failure(error)
        }
    }

    /// Compact serialization: no whitespace, `/` not escaped, non-ASCII written as UTF-8.
    public static func serialize(_ value: JSONValue) -> [UInt8] {
        var writer = JSONWriter()
        writer.write(value)
        return writer.bytes
    }

    /// Compact serialization as a `String`.
    public static func serializeToString(_ value: JSONValue) -> String {
        String(decoding: serialize(value), as: UTF8.self)
    }

    /// A JSON string literal (with quotes) for `string`.
    public static func serializeString(_ string: String) -> [UInt8] {
        var writer = JSONWriter()
        writer.writeString(string)
        return writer.bytes
    }

    /// Appends the JSON string literal (with quotes) for `string` to `bytes`.
    public static func serializeString(_ string: String, into bytes: inout [UInt8]) {
        var writer = JSONWriter(bytes: bytes)
        bytes = []
        writer.writeString(string)
        bytes = writer.bytes
    }
}

// MARK: - Parser

private let quote = UInt8(ascii: "\"")
private let backslash = UInt8(ascii: "\\")

struct JSONParser {
    let b: UnsafeBufferPointer<UInt8>
    var position = 0
    private var scratch: [UInt8] = []
    /// Whether everything parsed since this was last set to true is in the form `JSONWriter` writes: no
    /// whitespace, no escape sequences, no repeated keys.
    var isCompact = false
    /// Takes numbers Ditto cannot read (``JSON/parseAnyNumbers(_:)``).
    var acceptsAnyNumber = false

    init(_ buffer: UnsafeBufferPointer<UInt8>) { b = buffer }

    @inline(__always)
    mutating func skipWhitespace() {
        while position < b.count {
            switch b[position] {
            case 0x20, 0x0A, 0x0D, 0x09:
                position += 1
                isCompact = false
            default: return
            }
        }
    }

    private func fail(_ reason: String, at offset: Int? = nil) -> JSONParseError {
        JSONParseError(offset: offset ?? position, reason: reason)
    }

    mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        guard position < b.count else { throw fail("Unexpected end of input") }
        switch b[position] {
        case UInt8(ascii: "{"):
            return .object(try parseObject(depth: depth + 1))
        case UInt8(ascii: "["):
            return .array(try parseArray(depth: depth + 1))
        case quote:
            return .string(try parseString())
        case UInt8(ascii: "t"):
            try expectLiteral("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expectLiteral("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expectLiteral("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return .number(try parseNumber())
        default:
            throw fail("Unexpected character")
        }
    }

    private mutating func expectLiteral(_ word: StaticString) throws(JSONParseError) {
        let count = word.utf8CodeUnitCount
        guard b.count - position >= count else { throw fail("Invalid literal") }
        if let mismatch = literalMismatch(word) { throw fail("Invalid literal", at: position + mismatch) }
        position += count
    }

    /// The offset of the first byte at `position` that differs from `word` (which fits before the end), nil if none.
    private func literalMismatch(_ word: StaticString) -> Int? {
        let p = word.utf8Start
        for k in 0..<word.utf8CodeUnitCount where b[position + k] != p[k] { return k }
        return nil
    }

    private mutating func parseNumber() throws(JSONParseError) -> JSONNumber {
        let start = position
        guard let scanned = JSONNumber.scanGrammar(b, from: start), scanned.readable || acceptsAnyNumber else {
            throw fail(JSONNumber.refusal(b, from: start), at: start)
        }
        let end = scanned.end
        position = end
        let literal = String(decoding: UnsafeBufferPointer(rebasing: b[start..<end]), as: UTF8.self)
        return JSONNumber(validatedLiteral: literal)
    }

    private mutating func parseArray(depth: Int) throws(JSONParseError) -> [JSONValue] {
        guard depth <= JSON.maximumDepth else { throw fail("Nesting deeper than \(JSON.maximumDepth)") }
        position += 1  // [
        skipWhitespace()
        if position < b.count && b[position] == UInt8(ascii: "]") {
            position += 1
            return []
        }
        var elements: [JSONValue] = []
        // One allocation covers the usual small arrays; growing is left to larger ones.
        elements.reserveCapacity(4)
        while true {
            skipWhitespace()
            elements.append(try parseValue(depth: depth))
            skipWhitespace()
            guard position < b.count else { throw fail("Unterminated array") }
            let c = b[position]
            position += 1
            if c == UInt8(ascii: ",") { continue }
            if c == UInt8(ascii: "]") { return elements }
            throw fail("Expected ',' or ']' in array", at: position - 1)
        }
    }

    private mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONObject {
        guard depth <= JSON.maximumDepth else { throw fail("Nesting deeper than \(JSON.maximumDepth)") }
        position += 1  // {
        skipWhitespace()
        if position < b.count && b[position] == UInt8(ascii: "}") {
            position += 1
            return JSONObject()
        }
        var members: [JSONObject.Element] = []
        // One allocation covers the usual small objects (headers, property values).
        members.reserveCapacity(8)
        var needsDeduplication = false
        while true {
            skipWhitespace()
            guard position < b.count, b[position] == quote else { throw fail("Expected a string key") }
            let key = try parseString()
            skipWhitespace()
            guard position < b.count, b[position] == UInt8(ascii: ":") else { throw fail("Expected ':'") }
            position += 1
            skipWhitespace()
            let value = try parseValue(depth: depth)
            if !needsDeduplication {
                if members.count < JSONObject.linearMemberLimit {
                    for member in members where member.key.utf8Equals(key) {
                        needsDeduplication = true
                        break
                    }
                } else {
                    // Large objects: the general initializer finds duplicates through JSONObject's index.
                    needsDeduplication = true
                }
            }
            members.append((key, value))
            skipWhitespace()
            guard position < b.count else { throw fail("Unterminated object") }
            if needsDeduplication { isCompact = false }
            let c = b[position]
            position += 1
            if c == UInt8(ascii: ",") { continue }
            if c == UInt8(ascii: "}") {
                // Duplicate keys: the last value wins in the first position, as with Ditto's LinkedHashMap.
                return needsDeduplication ? JSONObject(members.lazy.map { ($0.key, $0.value) }) : JSONObject(uniqueMembers: members)
            }
            throw fail("Expected ',' or '}' in object", at: position - 1)
        }
    }

    mutating func parseString() throws(JSONParseError) -> String {
        let start = position + 1  // after the opening quote
        var i = start
        var ascii = true
        let n = b.count
        // Fast path: no escapes, so the bytes can be taken as they are.
        while i < n {
            let c = b[i]
            if c == quote {
                let slice = UnsafeBufferPointer(rebasing: b[start..<i])
                position = i + 1
                if ascii { return String(decoding: slice, as: UTF8.self) }
                guard let s = String(validating: slice, as: UTF8.self) else {
                    throw fail("Invalid UTF-8 in string", at: start)
                }
                return s
            }
            if c == backslash { break }
            if c < 0x20 { throw fail("Unescaped control character in string", at: i) }
            if c >= 0x80 { ascii = false }
            i += 1
        }
        guard i < n else { throw fail("Unterminated string", at: position) }
        return try parseEscapedString(start: start, firstEscape: i)
    }

    private mutating func parseEscapedString(start: Int, firstEscape: Int) throws(JSONParseError) -> String {
        isCompact = false
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeBufferPointer(rebasing: b[start..<firstEscape]))
        var i = firstEscape
        let n = b.count
        while i < n {
            let c = b[i]
            if c == quote {
                position = i + 1
                guard let s = scratch.withUnsafeBufferPointer({ String(validating: $0, as: UTF8.self) }) else {
                    throw fail("Invalid UTF-8 in string", at: start)
                }
                return s
            }
            if c < 0x20 { throw fail("Unescaped control character in string", at: i) }
            if c != backslash {
                scratch.append(c)
                i += 1
                continue
            }
            i += 1
            guard i < n else { break }
            let e = b[i]
            i += 1
            switch e {
            case quote: scratch.append(quote)
            case backslash: scratch.append(backslash)
            case UInt8(ascii: "/"): scratch.append(UInt8(ascii: "/"))
            case UInt8(ascii: "b"): scratch.append(0x08)
            case UInt8(ascii: "f"): scratch.append(0x0C)
            case UInt8(ascii: "n"): scratch.append(0x0A)
            case UInt8(ascii: "r"): scratch.append(0x0D)
            case UInt8(ascii: "t"): scratch.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4(at: i)
                i += 4
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    guard i + 1 < n, b[i] == backslash, b[i + 1] == UInt8(ascii: "u") else {
                        throw fail("Unpaired surrogate in string", at: i)
                    }
                    let low = try hex4(at: i + 2)
                    guard low >= 0xDC00 && low < 0xE000 else { throw fail("Unpaired surrogate in string", at: i) }
                    i += 6
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if scalar >= 0xDC00 && scalar < 0xE000 {
                    throw fail("Unpaired surrogate in string", at: i - 6)
                }
                appendUTF8(scalar)
            default:
                throw fail("Invalid escape sequence", at: i - 2)
            }
        }
        throw fail("Unterminated string", at: start - 1)
    }

    private func hex4(at offset: Int) throws(JSONParseError) -> UInt32 {
        guard offset + 4 <= b.count else { throw fail("Truncated \\u escape", at: offset) }
        var value: UInt32 = 0
        for k in 0..<4 {
            let c = b[offset + k]
            let digit: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = c - UInt8(ascii: "A") + 10
            default: throw fail("Invalid hex digit in \\u escape", at: offset + k)
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    private mutating func appendUTF8(_ scalar: UInt32) {
        switch scalar {
        case 0..<0x80:
            scratch.append(UInt8(scalar))
        case 0x80..<0x800:
            scratch.append(UInt8(0xC0 | (scalar >> 6)))
            scratch.append(UInt8(0x80 | (scalar & 0x3F)))
        case 0x800..<0x10000:
            scratch.append(UInt8(0xE0 | (scalar >> 12)))
            scratch.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
            scratch.append(UInt8(0x80 | (scalar & 0x3F)))
        default:
            scratch.append(UInt8(0xF0 | (scalar >> 18)))
            scratch.append(UInt8(0x80 | ((scalar >> 12) & 0x3F)))
            scratch.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
            scratch.append(UInt8(0x80 | (scalar & 0x3F)))
        }
    }
}

// MARK: - Compact values, walked without building them

extension JSONParser {
    /// Walks one value that `parseValue` would parse with `isCompact` still true and whose strings are ASCII, and
    /// returns its kind; nil at the first byte where that is not so (invalid, whitespace, an escape, a non-ASCII
    /// or control byte, a repeated key, a 17th member). Same grammar as `parseValue`, with the same number scan
    /// and literals; what it refuses goes to `parseValue`.
    mutating func skipCompactValue(depth: Int) -> JSON.Kind? {
        guard position < b.count else { return nil }
        switch b[position] {
        case UInt8(ascii: "{"):
            return skipCompactObject(depth: depth + 1) ? .object : nil
        case UInt8(ascii: "["):
            return skipCompactArray(depth: depth + 1) ? .array : nil
        case quote:
            return skipCompactString() == nil ? nil : .string
        case UInt8(ascii: "t"):
            return skipLiteral("true") ? .bool : nil
        case UInt8(ascii: "f"):
            return skipLiteral("false") ? .bool : nil
        case UInt8(ascii: "n"):
            return skipLiteral("null") ? .null : nil
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            guard let end = JSONNumber.scan(b, from: position) else { return nil }
            position = end
            return .number
        default:
            return nil
        }
    }

    private mutating func skipLiteral(_ word: StaticString) -> Bool {
        guard b.count - position >= word.utf8CodeUnitCount, literalMismatch(word) == nil else { return false }
        position += word.utf8CodeUnitCount
        return true
    }

    private mutating func skipCompactArray(depth: Int) -> Bool {
        guard depth <= JSON.maximumDepth else { return false }
        position += 1  // [
        if position < b.count && b[position] == UInt8(ascii: "]") {
            position += 1
            return true
        }
        while true {
            guard skipCompactValue(depth: depth) != nil, position < b.count else { return false }
            let c = b[position]
            position += 1
            if c == UInt8(ascii: ",") { continue }
            return c == UInt8(ascii: "]")
        }
    }

    private mutating func skipCompactObject(depth: Int) -> Bool {
        guard depth <= JSON.maximumDepth else { return false }
        position += 1  // {
        if position < b.count && b[position] == UInt8(ascii: "}") {
            position += 1
            return true
        }
        // `parseObject` compares each key with the ones before it up to `linearMemberLimit` members; one more or a
        // repeated key makes the object not compact. The keys' ranges live on the stack.
        return withUnsafeTemporaryAllocation(of: Range<Int>.self, capacity: JSONObject.linearMemberLimit) { keys in
            var count = 0
            while true {
                guard count < JSONObject.linearMemberLimit, position < b.count, b[position] == quote,
                      let key = skipCompactString()
                else {
                    return false
                }
                for k in 0..<count where keys[k].count == key.count
                    && sameBytes(UnsafeBufferPointer(rebasing: b[keys[k]]), UnsafeBufferPointer(rebasing: b[key])) {
                    return false
                }
                keys[count] = key
                count += 1
                guard position < b.count, b[position] == UInt8(ascii: ":") else { return false }
                position += 1
                guard skipCompactValue(depth: depth) != nil, position < b.count else { return false }
                let c = b[position]
                position += 1
                if c == UInt8(ascii: ",") { continue }
                return c == UInt8(ascii: "}")
            }
        }
    }

    /// The range of a string's contents when it has only ASCII (no control character) and no escape.
    private mutating func skipCompactString() -> Range<Int>? {
        let start = position + 1
        var i = start
        while i < b.count {
            let c = b[i]
            if c == quote {
                position = i + 1
                return start..<i
            }
            if c == backslash || c < 0x20 || c >= 0x80 { return nil }
            i += 1
        }
        return nil
    }
}

// MARK: - Writer

struct JSONWriter {
    var bytes: [UInt8]

    init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func write(_ value: JSONValue) {
        switch value {
        case .null: bytes.append(contentsOf: "null".utf8)
        case .bool(let flag): bytes.append(contentsOf: flag ? "true".utf8 : "false".utf8)
        case .number(let number): bytes.append(contentsOf: number.literal.utf8)
        case .string(let string): writeString(string)
        case .array(let elements):
            bytes.append(UInt8(ascii: "["))
            var first = true
            for element in elements {
                if !first { bytes.append(UInt8(ascii: ",")) }
                first = false
                write(element)
            }
            bytes.append(UInt8(ascii: "]"))
        case .object(let object):
            write(object)
        }
    }

    /// `value`, or `compactText` where given: the text it was parsed from, exactly what `write(value)` writes.
    mutating func write(_ value: JSONValue, compactText: ArraySlice<UInt8>?) {
        if let compactText {
            bytes.append(contentsOf: compactText)
        } else {
            write(value)
        }
    }

    /// Decimal digits straight into the buffer: revisions have 16 digits, and a `String` of more than 15 bytes
    /// would be one more allocation per event.
    mutating func writeInteger(_ integer: Int64) {
        if integer < 0 { bytes.append(UInt8(ascii: "-")) }
        var magnitude = integer.magnitude
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // room for the 20 digits of UInt64.max, on the stack
        withUnsafeMutableBytes(of: &digits) { buffer in
            var start = buffer.count
            repeat {
                start -= 1
                buffer[start] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            bytes.append(contentsOf: buffer[start...])
        }
    }

    mutating func write(_ object: JSONObject) {
        bytes.append(UInt8(ascii: "{"))
        var first = true
        for (key, value) in object {
            if !first { bytes.append(UInt8(ascii: ",")) }
            first = false
            writeString(key)
            bytes.append(UInt8(ascii: ":"))
            write(value)
        }
        bytes.append(UInt8(ascii: "}"))
    }

    /// Appends `"key":` for a member.
    mutating func writeKey(_ key: StaticString) {
        bytes.append(quote)
        bytes.append(contentsOf: UnsafeBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount))
        bytes.append(quote)
        bytes.append(UInt8(ascii: ":"))
    }

    mutating func writeString(_ string: String) {
        bytes.append(quote)
        writeStringContents(string)
        bytes.append(quote)
    }

    /// The escaped characters of `string`, without quotes.
    mutating func writeStringContents(_ string: String) {
        var string = string
        string.withUTF8 { utf8 in
            guard let base = utf8.baseAddress else { return }
            let count = utf8.count
            var runStart = 0
            var i = 0
            while i < count {
                // Eight bytes at a time while none needs an escape: most strings need none at all.
                if count &- i >= 8, !Self.anyNeedsEscape(UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self)) {
                    i &+= 8
                    continue
                }
                let c = base[i]
                i &+= 1
                guard c < 0x20 || c == quote || c == backslash else { continue }
                if runStart < i &- 1 { bytes.append(contentsOf: UnsafeBufferPointer(start: base + runStart, count: i &- 1 &- runStart)) }
                runStart = i
                bytes.append(backslash)
                switch c {
                case quote: bytes.append(quote)
                case backslash: bytes.append(backslash)
                case 0x08: bytes.append(UInt8(ascii: "b"))
                case 0x0C: bytes.append(UInt8(ascii: "f"))
                case 0x0A: bytes.append(UInt8(ascii: "n"))
                case 0x0D: bytes.append(UInt8(ascii: "r"))
                case 0x09: bytes.append(UInt8(ascii: "t"))
                default:
                    let hex: [UInt8] = Array("0123456789abcdef".utf8)
                    bytes.append(contentsOf: [UInt8(ascii: "u"), 0x30, 0x30, hex[Int(c >> 4)], hex[Int(c & 0xF)]])
                }
            }
            if runStart < count { bytes.append(contentsOf: UnsafeBufferPointer(start: base + runStart, count: count &- runStart)) }
        }
    }

    /// Whether any of the eight bytes of `word` is a control character, a quote or a backslash. The classic
    /// zero-byte tests ("Bit Twiddling Hacks": haszero, hasless), exact as a yes/no answer for the whole word.
    @inline(__always)
    static func anyNeedsEscape(_ word: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highBits: UInt64 = 0x8080_8080_8080_8080
        let control = (word &- ones &* 0x20) & ~word & highBits
        let quotes = word ^ (ones &* UInt64(quote))
        let backslashes = word ^ (ones &* UInt64(backslash))
        let quoteFound = (quotes &- ones) & ~quotes & highBits
        let backslashFound = (backslashes &- ones) & ~backslashes & highBits
        return (control | quoteFound | backslashFound) != 0
    }
}
