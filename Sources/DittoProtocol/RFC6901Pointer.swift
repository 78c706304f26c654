/// A JSON pointer as RFC 6901 defines it, for pointers into device payloads (`payload.pointer`,
/// `payload.fields`, `reply.*-pointer`): `""` is the whole document, every other pointer starts with `/`,
/// `~0` is `~` and `~1` is `/` inside a key, a segment selects an object member or (decimal, no leading zero)
/// an array element. Ditto's own paths use ``JSONPointer`` (object keys only, no `~1`); this type is for the
/// device side, where arrays are what users of JSON telemetry expect (`/readings/0`).
public struct RFC6901Pointer: Sendable, Hashable, CustomStringConvertible {
    /// The reference tokens, unescaped.
    public let tokens: [String]
    /// The text as written.
    public let description: String

    /// Why a text is not an RFC 6901 pointer.
    public struct SyntaxError: Error, Sendable, Hashable, CustomStringConvertible {
        public let description: String
        /// A short fix, if there is one.
        public let hint: String?
    }

    /// Parses pointer text.
    public init(parsing text: String) throws(SyntaxError) {
        description = text
        guard !text.isEmpty else {
            tokens = []
            return
        }
        let scalars = Array(text.unicodeScalars)
        guard scalars[0] == "/" else {
            throw SyntaxError(description: "'\(text)' is not a JSON pointer: it must start with '/'", hint: "write /\(text)")
        }
        var result: [String] = []
        var current = ""
        var i = 1
        while i < scalars.count {
            let c = scalars[i]
            if c == "/" {
                result.append(current)
                current = ""
            } else if c == "~" {
                guard i + 1 < scalars.count, scalars[i + 1] == "0" || scalars[i + 1] == "1" else {
                    throw SyntaxError(
                        description: "'\(text)' is not a JSON pointer: '~' must be followed by 0 or 1",
                        hint: "write ~0 for '~' and ~1 for '/' inside a key")
                }
                current.unicodeScalars.append(scalars[i + 1] == "0" ? "~" : "/")
                i += 1
            } else {
                current.unicodeScalars.append(c)
            }
            i += 1
        }
        result.append(current)
        tokens = result
    }

    /// A pointer from unescaped tokens.
    public init(tokens: [String]) {
        self.tokens = tokens
        description = tokens.map { "/" + Self.escape($0) }.joined()
    }

    /// `~` → `~0`, `/` → `~1`.
    public static func escape(_ token: String) -> String {
        var out = ""
        for c in token.unicodeScalars {
            switch c {
            case "~": out += "~0"
            case "/": out += "~1"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// The value this pointer selects in `document`, `nil` when there is none.
    public func evaluate(in document: JSONValue) -> JSONValue? {
        var current = document
        for token in tokens {
            switch current {
            case .object(let object):
                guard let next = object[token] else { return nil }
                current = next
            case .array(let array):
                guard let index = Self.arrayIndex(token), index < array.count else { return nil }
                current = array[index]
            default:
                return nil
            }
        }
        return current
    }

    /// RFC 6901 array index: `0` or digits without a leading zero (`-`, past the end, selects nothing).
    static func arrayIndex(_ token: String) -> Int? {
        let utf8 = Array(token.utf8)
        guard !utf8.isEmpty, utf8.count <= 18, utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            utf8.count == 1 || utf8[0] != UInt8(ascii: "0")
        else { return nil }
        return Int(token)
    }

    /// Whether `other` is this pointer or lies inside what it selects (`/a` contains `/a` and `/a/b`): two
    /// values written at such pointers would overwrite each other.
    public func overlaps(_ other: RFC6901Pointer) -> Bool {
        let n = min(tokens.count, other.tokens.count)
        return tokens[..<n] == other.tokens[..<n]
    }

    /// `document` with `value` written at this pointer, creating objects for missing members (the whole
    /// document for `""`). Used to build payloads the device reads with the same pointers.
    public func setting(_ value: JSONValue, in document: JSONValue) -> JSONValue {
        Self.setting(value, at: tokens[...], in: document)
    }

    private static func setting(_ value: JSONValue, at tokens: ArraySlice<String>, in document: JSONValue) -> JSONValue {
        guard let token = tokens.first else { return value }
        if case .array(var array) = document, let index = arrayIndex(token), index < array.count {
            array[index] = setting(value, at: tokens.dropFirst(), in: array[index])
            return .array(array)
        }
        var object = document.objectValue ?? JSONObject()
        object[token] = setting(value, at: tokens.dropFirst(), in: object[token] ?? .object(JSONObject()))
        return .object(object)
    }
}
