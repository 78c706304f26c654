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
    /// `json.pointer.invalid`, as Ditto does.
    public init(_ string: String) throws(DittoError) {
        var body = Substring(string)
        if body.first == "/" { body = body.dropFirst() }
        if body.isEmpty {
            segments = []
            return
        }
        if body.last == "/" { body = body.dropLast() }
        var result: [String] = []
        for part in body.split(separator: "/", omittingEmptySubsequences: false) {
            if part.isEmpty {
                throw DittoError.jsonPointerInvalid(
                    string, description: "Consecutive slashes in JSON pointers are not supported.")
            }
            result.append(Self.unescape(part))
        }
        segments = result
    }

    private static func unescape(_ part: Substring) -> String {
        guard part.utf8.contains(UInt8(ascii: "~")) else { return String(part) }
        var out = ""
        var iterator = part.makeIterator()
        while let c = iterator.next() {
            if c == "~" {
                if let n = iterator.next() {
                    if n == "0" { out.append("~") } else { out.append("~"); out.append(n) }
                } else {
                    out.append("~")
                }
            } else {
                out.append(c)
            }
        }
        return out
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
            if segment.utf8.contains(UInt8(ascii: "~")) {
                for c in segment { if c == "~" { out.append("~0") } else { out.append(c) } }
            } else {
                out.append(segment)
            }
        }
        return out
    }
}
