/// How Ditto treats a payload of a given `content-type` (`ContentType.java`): the media type is the
/// lower-cased value up to the first `;`, not trimmed.
/// A `content-type` value with its ``ContentTypeStrategy``, classified once: a content type a config file names
/// is classified when the file is loaded, not for every message.
public struct ContentType: Sendable, Hashable, CustomStringConvertible {
    /// The header value as written.
    public let value: String
    /// How Ditto reads a payload of this type.
    public let strategy: ContentTypeStrategy

    public init(_ value: String) {
        self.value = value
        self.strategy = ContentTypeStrategy(contentType: value)
    }

    public var description: String { value }
}

public enum ContentTypeStrategy: Sendable, Hashable {
    /// `text/*`, `application/[vnd.]…+javascript|ecmascript`, `application/javascript|ecmascript`.
    case text
    /// `application/json`, `application/…+json` (except merge-patch).
    case json
    /// `application/merge-patch+json`: JSON for commands, but not for message payloads.
    case jsonMergePatch
    /// Anything else, or no content type.
    case binary

    /// Classifies a `content-type` header value; `nil` is binary.
    public init(contentType: String?) {
        guard let contentType else {
            self = .binary
            return
        }
        // The usual one, without the lower-casing and pattern tests below.
        if contentType.utf8Equals("application/json") {
            self = .json
            return
        }
        let mediaType = contentType.lowercased().utf8Prefix(before: UInt8(ascii: ";"))
        if mediaType.utf8Equals("application/merge-patch+json") {
            self = .jsonMergePatch
        } else if Self.isText(mediaType) {
            self = .text
        } else if Self.isJSON(mediaType) {
            self = .json
        } else {
            self = .binary
        }
    }

    /// Java's `.` does not match line terminators.
    private static func hasLineTerminator(_ s: String) -> Bool {
        s.unicodeScalars.contains { [0x0A, 0x0D, 0x85, 0x2028, 0x2029].contains($0.value) }
    }

    /// `application/((vnd\.)?.+\+)?<suffix>` matched against the whole media type (on bytes, as Java's
    /// regex works on code units).
    private static func matchesApplication(_ mediaType: String, suffix: String) -> Bool {
        let prefix = "application/"
        guard mediaType.utf8HasPrefix(prefix) else { return false }
        let rest = String(decoding: mediaType.utf8.dropFirst(prefix.utf8.count), as: UTF8.self)
        if rest.utf8Equals(suffix) { return true }
        guard rest.utf8HasSuffix("+" + suffix) else { return false }
        let middle = String(decoding: rest.utf8.dropLast(suffix.utf8.count + 1), as: UTF8.self)
        // `(vnd\.)?.+` needs at least one character before the `+`.
        return !middle.isEmpty && !hasLineTerminator(middle)
    }

    private static func isText(_ mediaType: String) -> Bool {
        if mediaType.utf8HasPrefix("text/") {
            return !hasLineTerminator(String(decoding: mediaType.utf8.dropFirst(5), as: UTF8.self))
        }
        return matchesApplication(mediaType, suffix: "javascript") || matchesApplication(mediaType, suffix: "ecmascript")
    }

    private static func isJSON(_ mediaType: String) -> Bool {
        matchesApplication(mediaType, suffix: "json")
    }
}

/// A live message payload in the form Ditto puts it into the envelope's `value` (`MessagePayloadSerializer`):
/// JSON content types carry JSON, text types a string, everything else (or no content type) base64.
public enum MessagePayload: Sendable, Hashable {
    case json(JSONValue)
    case text(String)
    case binary([UInt8])

    /// Interprets raw bytes by `content-type`: JSON types are parsed (falling back to text, then binary,
    /// when the bytes are not JSON), text types decoded as UTF-8, anything else kept as bytes.
    public static func from(bytes: [UInt8], contentType: String?) -> MessagePayload {
        switch ContentTypeStrategy(contentType: contentType) {
        case .json:
            if let value = try? JSON.parse(bytes) { return .json(value) }
            if let text = String(validating: bytes, as: UTF8.self) { return .text(text) }
            return .binary(bytes)
        case .text:
            return .text(String(decoding: bytes, as: UTF8.self))
        case .jsonMergePatch, .binary:
            return .binary(bytes)
        }
    }

    /// Reads an envelope's `value` by `content-type`: base64 strings are decoded for binary types (falling
    /// back to the string's UTF-8 bytes like Ditto); a missing value is an empty binary payload.
    public static func from(envelopeValue: JSONValue?, contentType: String?) -> MessagePayload {
        guard let value = envelopeValue else { return .binary([]) }
        switch ContentTypeStrategy(contentType: contentType) {
        case .json:
            return .json(value)
        case .text:
            if case .string(let s) = value { return .text(s) }
            return .text(value.jsonText)
        case .jsonMergePatch, .binary:
            if case .string(let s) = value {
                return .binary(Base64.decode(s) ?? Array(s.utf8))
            }
            return .json(value)
        }
    }

    /// The envelope `value`: JSON as is, text as a string, bytes as a base64 string.
    public var envelopeValue: JSONValue {
        switch self {
        case .json(let value): return value
        case .text(let text): return .string(text)
        case .binary(let bytes): return .string(Base64.encode(bytes))
        }
    }

    /// Ditto's message size limit: `ditto.limits.messages.max-size = 250k` (HOCON `k` = 1024).
    public static let sizeLimit = 256_000

    /// 413 `messages:payload.toolarge` when the payload bytes exceed `limit`.
    public func checkSize(limit: Int = MessagePayload.sizeLimit) throws(DittoError) {
        let size: Int
        switch self {
        case .json(let value): size = JSON.serialize(value).count
        case .text(let text): size = text.utf8.count
        case .binary(let bytes): size = bytes.count
        }
        if size > limit { throw DittoError.payloadTooLarge(size: size, limit: limit) }
    }

    /// The raw payload bytes (JSON serialized compactly, text as UTF-8).
    public var bytes: [UInt8] {
        switch self {
        case .json(let value): return JSON.serialize(value)
        case .text(let text): return Array(text.utf8)
        case .binary(let bytes): return bytes
        }
    }
}

/// Standard base64 (RFC 4648 §4), as `java.util.Base64`'s basic encoder/decoder.
public enum Base64 {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    private static let decodeTable: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in alphabet.enumerated() { table[Int(c)] = UInt8(i) }
        return table
    }()

    /// Encodes with padding.
    public static func encode(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(alphabet[Int(n >> 6 & 63)])
            out.append(alphabet[Int(n & 63)])
            i += 3
        }
        let rest = bytes.count - i
        if rest == 1 {
            let n = UInt32(bytes[i]) << 16
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(UInt8(ascii: "="))
            out.append(UInt8(ascii: "="))
        } else if rest == 2 {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(alphabet[Int(n >> 6 & 63)])
            out.append(UInt8(ascii: "="))
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes strictly (no whitespace; padding optional but correct if present); `nil` if not base64.
    public static func decode(_ string: String) -> [UInt8]? {
        var input = Array(string.utf8)
        var padding = 0
        while input.last == UInt8(ascii: "=") && padding < 2 {
            input.removeLast()
            padding += 1
        }
        if padding > 0 && (input.count + padding) % 4 != 0 { return nil }
        if input.count % 4 == 1 { return nil }
        var out = [UInt8]()
        out.reserveCapacity(input.count * 3 / 4)
        var accumulator: UInt32 = 0
        var bits = 0
        for c in input {
            let v = decodeTable[Int(c)]
            if v == 0xFF { return nil }
            accumulator = accumulator << 6 | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
            }
        }
        return out
    }
}
