/// A JSON pointer as Ditto uses them: `/`-separated keys, `/` (or empty) is the root, and the only escape
/// is `~0` for `~` (Ditto has no `~1`; a key cannot contain `/`). Consecutive slashes are invalid.
public struct JSONPointer: Sendable, Hashable, CustomStringConvertible {
    /// The keys, unescaped.
    public private(set) var segments: [String]

    /// The root pointer `/`.
    public static let root = JSONPointer(segments: [])

    /// A pointer made of `segments` (keys, unescaped).
    public init(segments: [String]) { self.segments = segments }

    /// Parses pointer text: one leading and one trailing `/` are optional; `//` is refused with
    /// `json.pointer.invalid`, as Ditto does. Works on UTF-8 bytes, so combining characters next to a `/`
    /// or `~` cannot change the split.
    public init(_ string: String) throws(DittoError) {
        var copy = string
        let parsed: [String]? = copy.withUTF8 { b in
            var start = 0
            var end = b.count
            if start < end && b[start] == UInt8(ascii: "/") { start += 1 }
            if start == end { return [] }
            if b[end - 1] == UInt8(ascii: "/") { end -= 1 }
            var result: [String] = []
            var segmentStart = start
            for i in start...end where i == end || b[i] == UInt8(ascii: "/") {
                if i == segmentStart { return nil }
                result.append(JSONPointer.unescape(UnsafeBufferPointer(rebasing: b[segmentStart..<i])))
                segmentStart = i + 1
            }
            return result
        }
        guard let parsed else {
            throw DittoError.jsonPointerInvalid(
                string, description: "Consecutive slashes in JSON pointers are not supported.")
        }
        segments = parsed
    }

    /// `~0` → `~`; any other `~` stays as it is (Ditto has no `~1`).
    static func unescape(_ b: UnsafeBufferPointer<UInt8>) -> String {
        guard b.contains(UInt8(ascii: "~")) else { return String(decoding: b, as: UTF8.self) }
        var out: [UInt8] = []
        out.reserveCapacity(b.count)
        var i = 0
        while i < b.count {
            out.append(b[i])
            if b[i] == UInt8(ascii: "~") && i + 1 < b.count && b[i + 1] == UInt8(ascii: "0") { i += 1 }
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `~` → `~0`, on bytes.
    static func escape(_ segment: String) -> String {
        guard segment.utf8.contains(UInt8(ascii: "~")) else { return segment }
        var out: [UInt8] = []
        out.reserveCapacity(segment.utf8.count + 2)
        for byte in segment.utf8 {
            out.append(byte)
            if byte == UInt8(ascii: "~") { out.append(UInt8(ascii: "0")) }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The first key that Ditto refuses as a feature ID or attribute/property key: control characters,
    /// U+007F–U+00FF (`NoControlCharactersNoSlashesValidator`, `JsonKeyValidator`), more than 256 characters.
    public var firstInvalidKey: String? {
        segments.first { !ThingID.isValidName($0) || $0.utf16.count > 256 }
    }

    /// Whether this is the root pointer.
    public var isRoot: Bool { segments.isEmpty }

    /// The pointer with `key` appended.
    public func appending(_ key: String) -> JSONPointer {
        JSONPointer(segments: segments + [key])
    }

    /// The pointer with all of `other`'s keys appended.
    public func appending(_ other: JSONPointer) -> JSONPointer {
        JSONPointer(segments: segments + other.segments)
    }

    /// The value at this pointer inside `value` (objects only, as Ditto's pointers address object keys).
    public func evaluate(in value: JSONValue) -> JSONValue? {
        var current = value
        for key in segments {
            guard let object = current.objectValue, let next = object[key] else { return nil }
            current = next
        }
        return current
    }

    /// Pointer text: `/` for the root, otherwise `/a/b` with `~` written as `~0`.
    public var description: String {
        if segments.isEmpty { return "/" }
        var out = ""
        for segment in segments {
            out.append("/")
            out.append(Self.escape(segment))
        }
        return out
    }
}
