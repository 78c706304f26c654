import DittoProtocol
import Foundation

/// A JSON Web Token (RFC 7519) in the compact form Ditto's gateway takes in `Authorization: Bearer` and in
/// `JWT-TOKEN?jwtToken=`: three base64url parts (header, payload, signature) joined by `.`.
///
/// The bridge does not check the signature (Ditto does, against its configured issuers); it reads the token only to
/// refuse a file that holds something else and to learn when the token expires. `check` and the WebSocket side
/// both read token files through this type.
public struct JSONWebToken: Sendable, Hashable {
    /// The token as sent; never log it.
    public var token: Secret
    /// The `exp` claim: seconds since 1970-01-01T00:00:00Z (RFC 7519's NumericDate, fractions dropped); nil when the
    /// token has none. Ditto closes the session when it passes unless a `JWT-TOKEN` with a newer token came first.
    public var expiration: Int64?

    /// Reads a token file's text; white space around the token (a final newline) is ignored.
    /// - throws: ``ParseError`` saying what is wrong, never quoting the token.
    public init(parsing text: String) throws(ParseError) {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { throw ParseError("it is empty") }
        let parts = trimmed.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else {
            throw ParseError("it has \(parts.count) part\(parts.count == 1 ? "" : "s") separated by '.', a JWT has 3")
        }
        let names = ["header", "payload", "signature"]
        var decoded: [[UInt8]] = []
        for (index, part) in parts.enumerated() {
            guard let bytes = Self.base64URLDecoded(part), index == 2 || !bytes.isEmpty else {
                throw ParseError("its \(names[index]) is not base64url (letters, digits, '-' and '_', no padding)")
            }
            decoded.append(bytes)
        }
        guard (try? JSON.parse(decoded[0]))?.objectValue != nil else {
            throw ParseError("its header is not a JSON object")
        }
        guard let payload = try? JSON.parse(decoded[1]), payload.objectValue != nil else {
            throw ParseError("its payload is not a JSON object")
        }
        if let exp = payload["exp"] {
            guard let seconds = exp.int64Value ?? exp.doubleValue.flatMap({ Int64(exactly: $0.rounded(.down)) }) else {
                throw ParseError("its exp claim is not a number of seconds")
            }
            expiration = seconds
        }
        token = Secret(trimmed)
    }

    /// RFC 4648 section 5 without padding, as JWS uses it (RFC 7515 section 2).
    static func base64URLDecoded(_ text: Substring) -> [UInt8]? {
        guard text.utf8.count % 4 != 1,
            text.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-" || $0 == "_") })
        else { return nil }
        var standard = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        standard += String(repeating: "=", count: (4 - standard.utf8.count % 4) % 4)
        return Data(base64Encoded: standard).map { Array($0) }
    }

    /// Why a text is not a JWT; never contains the text.
    public struct ParseError: Error, Sendable, CustomStringConvertible {
        /// What is wrong.
        public var message: String
        init(_ message: String) { self.message = message }
        public var description: String { message }
    }
}
