/// A Ditto thing ID `namespace:name`, validated by Ditto's rules (`RegexPatterns.java`):
/// the namespace may be empty or `[a-zA-Z]\w*([.-][a-zA-Z]\w*)*`; the name is at least one character,
/// contains no `/` and no character in `\x00-\x1F\x7F-\xFF` (so `ü` is invalid, CJK and emoji are valid,
/// `:` is allowed); the whole ID has at most 256 UTF-16 code units.
public struct ThingID: Sendable, Hashable, CustomStringConvertible {
    /// The namespace (may be empty).
    public let namespace: String
    /// The entity name.
    public let name: String

    /// Maximum length of the whole ID, in UTF-16 code units as Java counts them.
    public static let maximumLength = 256

    /// Parses `namespace:name`, splitting at the first `:`.
    public init(_ string: String) throws(DittoError) {
        guard let colon = string.utf8.firstIndex(of: UInt8(ascii: ":")) else {
            throw DittoError.thingIDInvalid(string)
        }
        let namespace = String(string[..<colon])
        let name = String(string[string.utf8.index(after: colon)...])
        try self.init(namespace: namespace, name: name)
    }

    /// Builds and validates an ID from its parts.
    public init(namespace: String, name: String) throws(DittoError) {
        guard namespace.utf16.count + 1 + name.utf16.count <= Self.maximumLength else {
            throw DittoError.thingIDInvalid(namespace + ":" + name, description: "Not allowed to exceed length of 256.")
        }
        guard Self.isValidNamespace(namespace), Self.isValidName(name) else {
            throw DittoError.thingIDInvalid(namespace + ":" + name)
        }
        self.namespace = namespace
        self.name = name
    }

    /// Whether `namespace` matches Ditto's namespace pattern (empty allowed).
    public static func isValidNamespace(_ namespace: String) -> Bool {
        var expectLetter = true
        for byte in namespace.utf8 {
            let isLetter = (byte | 0x20) >= UInt8(ascii: "a") && (byte | 0x20) <= UInt8(ascii: "z")
            if expectLetter {
                guard isLetter else { return false }
                expectLetter = false
            } else if byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-") {
                expectLetter = true
            } else {
                let isWord = isLetter || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                    || byte == UInt8(ascii: "_")
                guard isWord else { return false }
            }
        }
        // Empty is fine; a trailing `.`/`-` is not.
        return namespace.isEmpty || !expectLetter
    }

    /// Whether `name` is a valid entity name: non-empty, no `/`, no `\x00-\x1F\x7F-\xFF`.
    public static func isValidName(_ name: String) -> Bool {
        guard !name.isEmpty else { return false }
        // On UTF-8 bytes: U+0000-U+001F, U+007F and `/` are single bytes; U+0080-U+00FF are exactly the
        // two-byte sequences led by 0xC2 or 0xC3. No other sequence contains these bytes.
        return !name.utf8.contains { $0 < 0x20 || $0 == 0x7F || $0 == 0x2F || $0 == 0xC2 || $0 == 0xC3 }
    }

    @inline(__always)
    static func isForbiddenNameScalar(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        return v <= 0x1F || (v >= 0x7F && v <= 0xFF) || v == 0x2F
    }

    /// `namespace:name`.
    public var description: String { namespace + ":" + name }
}
