#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One HTTP/1.1 header line.
public struct HTTPHeader: Equatable, Sendable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// The head of an HTTP/1.1 request or response (RFC 9112 section 2.1): start line and header fields, no body.
/// The WebSocket upgrade and the proxy's `CONNECT` answer are nothing but heads; what follows the head in the
/// same read belongs to the next layer (frames, or the TLS handshake), so ``parse(_:maximumLength:)`` says how
/// many bytes the head took.
public struct HTTPHead: Equatable, Sendable {
    public var startLine: String
    public var headers: [HTTPHeader]

    public init(startLine: String, headers: [HTTPHeader]) {
        self.startLine = startLine
        self.headers = headers
    }

    /// The first value of a header, by case-insensitive name (RFC 9110 section 5.1).
    public func value(of name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    /// Whether a comma-separated header (`Connection: keep-alive, Upgrade`) lists `token`, ignoring case.
    public func lists(_ token: String, in name: String) -> Bool {
        headers.contains { header in
            header.name.lowercased() == name.lowercased()
                && header.value.split(separator: ",").contains { $0.trimmedOfSpaces.lowercased() == token.lowercased() }
        }
    }

    /// The status code of a response head (`HTTP/1.1 101 Switching Protocols` -> 101), nil for a request.
    public var status: Int? {
        let parts = startLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1.") else { return nil }
        return Int(parts[1])
    }

    /// The reason phrase of a response head, or "" when there is none.
    public var reason: String {
        let parts = startLine.split(separator: " ", maxSplits: 2)
        return parts.count == 3 ? String(parts[2]) : ""
    }

    /// The bytes on the wire: start line, headers, empty line.
    public func encoded() -> [UInt8] {
        var text = startLine + "\r\n"
        for header in headers { text += "\(header.name): \(header.value)\r\n" }
        return Array((text + "\r\n").utf8)
    }

    /// Parses the head at the start of `bytes`; nil while its empty line has not arrived yet.
    ///
    /// - Returns: the head and the number of bytes it took, the empty line included.
    /// - Throws: ``WebSocketHandshakeError/headTooLarge(limit:)`` when `maximumLength` bytes hold no complete
    ///   head (a peer that is not an HTTP server must not make the client buffer without end), or
    ///   ``WebSocketHandshakeError/malformedHead(_:)``.
    public static func parse(_ bytes: some RandomAccessCollection<UInt8>, maximumLength: Int = 16 * 1024)
        throws(WebSocketHandshakeError) -> (head: HTTPHead, length: Int)?
    {
        let terminator: [UInt8] = [13, 10, 13, 10]
        var end: Int?
        var offset = 0
        var index = bytes.startIndex
        var matched = 0
        while index != bytes.endIndex, offset < maximumLength {
            matched = bytes[index] == terminator[matched] ? matched + 1 : (bytes[index] == 13 ? 1 : 0)
            offset += 1
            index = bytes.index(after: index)
            if matched == 4 { end = offset; break }
        }
        guard let end else {
            if offset >= maximumLength { throw .headTooLarge(limit: maximumLength) }
            return nil
        }
        guard let text = String(validating: bytes.prefix(end - 4), as: UTF8.self) else {
            throw .malformedHead("not UTF-8")
        }
        // "\r\n" is one Character (a grapheme cluster) in Swift.
        var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
        let startLine = String(lines.removeFirst())
        guard !startLine.isEmpty else { throw .malformedHead("empty start line") }
        var headers: [HTTPHeader] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex else {
                throw .malformedHead("header line without a name: \(line)")
            }
            headers.append(HTTPHeader(String(line[..<colon]),
                                      line[line.index(after: colon)...].trimmedOfSpaces))
        }
        return (HTTPHead(startLine: startLine, headers: headers), end)
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs (RFC 9110's optional whitespace).
    var trimmedOfSpaces: String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first...last])
    }
}

/// What can go wrong before the first frame: the HTTP part of RFC 6455 section 4 and of a proxy's `CONNECT`.
public enum WebSocketHandshakeError: Error, Equatable, Sendable {
    /// No complete head within the limit.
    case headTooLarge(limit: Int)
    case malformedHead(String)
    /// The server answered with another status than 101, e.g. 401 for refused credentials.
    case refused(status: Int, reason: String)
    /// A 101 without `Upgrade: websocket` and `Connection: Upgrade` (RFC 6455 section 4.1, points 2 and 3).
    case notAnUpgrade
    /// `Sec-WebSocket-Accept` is missing or not the one the key asks for (RFC 6455 section 4.1, point 4).
    case acceptMismatch(expected: String, received: String?)
    /// The proxy answered `CONNECT` with a status outside 2xx, e.g. 407 for refused proxy credentials.
    case proxyRefused(status: Int, reason: String)
}
