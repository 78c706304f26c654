#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Credentials sent in an `Authorization` (or `Proxy-Authorization`) header.
public enum HTTPAuthorization: Equatable, Sendable {
    /// RFC 7617; Ditto's stock nginx guards `/ws` with it (Ditto's `basic-auth.md`, pre-authentication).
    case basic(username: String, password: String)
    /// RFC 6750; Ditto's gateway validates the JWT itself (`basic-auth.md`: "send the JWT as an
    /// `Authorization: Bearer <token>` header (recommended)" for the WebSocket).
    case bearer(token: String)

    public var headerValue: String {
        switch self {
        case .basic(let username, let password): "Basic " + Data("\(username):\(password)".utf8).base64EncodedString()
        case .bearer(let token): "Bearer " + token
        }
    }
}

/// A query parameter, percent-encoded on the wire.
public struct QueryParameter: Equatable, Sendable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }

    /// RFC 3986 section 2.3's unreserved characters stay, every other UTF-8 byte becomes `%XX`: Ditto's
    /// `declared-acks` (`connection-id:label,other:label`) and RQL filters carry `:`, `,`, `(` and spaces.
    public static func percentEncoded(_ text: String) -> String {
        var encoded = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                 UInt8(ascii: "~"):
                encoded.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                encoded += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return encoded
    }

    /// The reverse of ``percentEncoded(_:)`` (`+` stays `+`); nil for a `%` not followed by two hex digits or
    /// bytes that are not UTF-8.
    public static func percentDecoded(_ text: some StringProtocol) -> String? {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else { bytes.append(byte); continue }
            guard let high = iterator.next(), let low = iterator.next(),
                  let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
            else { return nil }
            bytes.append(value)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    /// `name=value&name=value`, both sides percent-encoded.
    public static func queryString(_ parameters: [QueryParameter]) -> String {
        parameters.map { percentEncoded($0.name) + "=" + percentEncoded($0.value) }.joined(separator: "&")
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

/// The client's opening handshake (RFC 6455 section 4.1) and the check of the server's answer.
public struct WebSocketUpgradeRequest: Equatable, Sendable {
    /// The `Host` header: the host, with `:port` when the URL names a port other than the scheme's default.
    public var host: String
    /// The path, e.g. `/ws/2` (Ditto's `httpapi-protocol-bindings-websocket.md`).
    public var path: String
    public var query: [QueryParameter]
    public var authorization: HTTPAuthorization?
    /// 16 random bytes, base64 (RFC 6455 section 4.1, point 7); a new one for every connection.
    public var key: String
    public var additionalHeaders: [HTTPHeader]

    public init(host: String, path: String, query: [QueryParameter] = [], authorization: HTTPAuthorization? = nil,
                key: String = WebSocketUpgradeRequest.randomKey(), additionalHeaders: [HTTPHeader] = []) {
        self.host = host
        self.path = path
        self.query = query
        self.authorization = authorization
        self.key = key
        self.additionalHeaders = additionalHeaders
    }

    public static func randomKey() -> String {
        var generator = SystemRandomNumberGenerator()
        return Data((0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) }).base64EncodedString()
    }

    /// The request target: the path and the percent-encoded query.
    public var target: String { query.isEmpty ? path : path + "?" + QueryParameter.queryString(query) }

    public var head: HTTPHead {
        var headers = [
            HTTPHeader("Host", host), HTTPHeader("Upgrade", "websocket"), HTTPHeader("Connection", "Upgrade"),
            HTTPHeader("Sec-WebSocket-Key", key), HTTPHeader("Sec-WebSocket-Version", "13"),
        ]
        if let authorization { headers.append(HTTPHeader("Authorization", authorization.headerValue)) }
        return HTTPHead(startLine: "GET \(target) HTTP/1.1", headers: headers + additionalHeaders)
    }

    public func encoded() -> [UInt8] { head.encoded() }

    /// Checks the server's answer: 101, the upgrade headers, and the accept value for this request's key.
    public func validate(_ response: HTTPHead) throws(WebSocketHandshakeError) {
        guard let status = response.status else { throw .malformedHead("not a response: \(response.startLine)") }
        guard status == 101 else { throw .refused(status: status, reason: response.reason) }
        guard response.lists("websocket", in: "Upgrade"), response.lists("upgrade", in: "Connection") else {
            throw .notAnUpgrade
        }
        let expected = Self.acceptValue(forKey: key)
        let received = response.value(of: "Sec-WebSocket-Accept")
        guard received == expected else { throw .acceptMismatch(expected: expected, received: received) }
    }

    /// base64(SHA-1(key + the RFC's GUID)) (RFC 6455 section 4.2.2, point 5.4); the server side uses it too.
    public static func acceptValue(forKey key: String) -> String {
        Data(SHA1.hash(Array((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").utf8))).base64EncodedString()
    }
}

/// An HTTP `CONNECT` through a forward proxy (RFC 9110 section 9.3.6): gateways often reach the internet only
/// through one. After a 2xx answer the socket is a tunnel to `host:port`, for TLS and then the upgrade.
public struct HTTPConnectRequest: Equatable, Sendable {
    public var host: String
    public var port: Int
    public var proxyAuthorization: HTTPAuthorization?

    public init(host: String, port: Int, proxyAuthorization: HTTPAuthorization? = nil) {
        self.host = host
        self.port = port
        self.proxyAuthorization = proxyAuthorization
    }

    /// `host:port`, an IPv6 address in brackets (RFC 9110's authority-form).
    public var authority: String { (host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host) + ":\(port)" }

    public func encoded() -> [UInt8] {
        var headers = [HTTPHeader("Host", authority)]
        if let proxyAuthorization { headers.append(HTTPHeader("Proxy-Authorization", proxyAuthorization.headerValue)) }
        return HTTPHead(startLine: "CONNECT \(authority) HTTP/1.1", headers: headers).encoded()
    }

    /// Any 2xx opens the tunnel (RFC 9110 section 9.3.6); anything else is the proxy's refusal.
    public func validate(_ response: HTTPHead) throws(WebSocketHandshakeError) {
        guard let status = response.status else { throw .malformedHead("not a response: \(response.startLine)") }
        guard (200..<300).contains(status) else { throw .proxyRefused(status: status, reason: response.reason) }
    }
}
