import Prometheus

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The request line and the headers the operations endpoint acts on, parsed strictly (RFC 9112):
/// `METHOD SP origin-form SP HTTP/1.x CRLF`, then `name: value` lines; no folded lines, no bare CR or LF,
/// no space before a colon, no control characters in values, exactly one `Host` in HTTP/1.1.
struct RequestHead: Sendable, Equatable {
    enum Method: Sendable, Equatable {
        case get
        case head
        /// Any other token: answered 405.
        case other(String)
    }

    var method: Method
    /// The target up to `?`, undecoded.
    var path: String
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    var minorVersion: Int
    /// HTTP/1.1 without `Connection: close`. HTTP/1.0 connections always close.
    var keepAlive: Bool
    /// A `Content-Length` other than 0, or any `Transfer-Encoding`: the server reads no bodies, so such a
    /// request is answered and its connection closed.
    var hasBody: Bool

    /// Why a head is refused.
    enum Failure: Error, Sendable, Equatable {
        /// 400, with the reason for the answer's body.
        case malformed(String)
        /// 505: a well-formed version other than 1.0 and 1.1.
        case versionNotSupported(String)
    }

    /// Parses `bytes`, a head without its final empty line (the `CRLF CRLF` that ends it).
    static func parse(_ bytes: ArraySlice<UInt8>) throws(Failure) -> RequestHead {
        var lines: [ArraySlice<UInt8>] = []
        var lineStart = bytes.startIndex
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let byte = bytes[index]
            if byte == .cr {
                guard index + 1 < bytes.endIndex, bytes[index + 1] == .lf else {
                    throw .malformed("a CR without LF")
                }
                lines.append(bytes[lineStart..<index])
                index += 2
                lineStart = index
            } else if byte == .lf {
                throw .malformed("a line ending in LF without CR")
            } else {
                index += 1
            }
        }
        lines.append(bytes[lineStart..<bytes.endIndex])

        // Request line: exactly three parts separated by single spaces.
        let parts = lines[0].split(separator: .space, omittingEmptySubsequences: false)
        guard parts.count == 3, parts.allSatisfy({ !$0.isEmpty }) else {
            throw .malformed("the request line is not METHOD SP TARGET SP VERSION")
        }
        guard parts[0].allSatisfy(isTokenByte) else { throw .malformed("the method is not a token") }
        let target = parts[1]
        guard target.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            throw .malformed("the request target has a character that must be percent-encoded")
        }
        guard target.first == .slash else {
            throw .malformed("the request target is not a path (origin-form, starting with /)")
        }
        let minorVersion: Int
        switch String(decoding: parts[2], as: UTF8.self) {
        case "HTTP/1.1": minorVersion = 1
        case "HTTP/1.0": minorVersion = 0
        case let version where isVersionSyntax(parts[2]): throw .versionNotSupported(version)
        default: throw .malformed("the version is not HTTP/1.0 or HTTP/1.1")
        }

        var hosts = 0
        var close = false
        var contentLength: ArraySlice<UInt8>?
        var hasBody = false
        for line in lines.dropFirst() {
            guard let first = line.first, first != .space, first != .tab else {
                throw .malformed("a header line starts with white space (line folding is obsolete)")
            }
            guard let colon = line.firstIndex(of: .colon) else { throw .malformed("a header line without a colon") }
            let name = line[line.startIndex..<colon]
            guard !name.isEmpty, name.allSatisfy(isTokenByte) else {
                throw .malformed("a header name is not a token (no space before the colon)")
            }
            var value = line[(colon + 1)...]
            while let byte = value.first, byte == .space || byte == .tab { value = value.dropFirst() }
            while let byte = value.last, byte == .space || byte == .tab { value = value.dropLast() }
            guard value.allSatisfy({ $0 == .tab || $0 >= 0x20 && $0 != 0x7F }) else {
                throw .malformed("a header value has a control character")
            }
            switch lowercased(name) {
            case "host":
                hosts += 1
            case "connection":
                for option in value.split(separator: .comma) where lowercased(trimmed(option)) == "close" {
                    close = true
                }
            case "content-length":
                guard !value.isEmpty, value.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else {
                    throw .malformed("Content-Length is not a number")
                }
                if let earlier = contentLength, !earlier.elementsEqual(value) {
                    throw .malformed("two different Content-Length headers")
                }
                contentLength = value
                if value.contains(where: { $0 != UInt8(ascii: "0") }) { hasBody = true }
            case "transfer-encoding":
                hasBody = true
            default:
                break
            }
        }
        if minorVersion == 1, hosts != 1 {
            throw .malformed(hosts == 0 ? "an HTTP/1.1 request needs a Host header" : "more than one Host header")
        }
        let method: Method
        switch String(decoding: parts[0], as: UTF8.self) {
        case "GET": method = .get
        case "HEAD": method = .head
        case let other: method = .other(other)
        }
        let path = target.firstIndex(of: .question).map { target[target.startIndex..<$0] } ?? target
        return RequestHead(
            method: method, path: String(decoding: path, as: UTF8.self), minorVersion: minorVersion,
            keepAlive: minorVersion == 1 && !close, hasBody: hasBody)
    }

    /// `tchar` of RFC 9110.
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }

    /// `HTTP/` DIGIT `.` DIGIT, the only version syntax there is.
    private static func isVersionSyntax(_ bytes: ArraySlice<UInt8>) -> Bool {
        let text = Array(bytes)
        let digits = UInt8(ascii: "0")...UInt8(ascii: "9")
        return text.count == 8 && text.starts(with: "HTTP/".utf8) && digits.contains(text[5])
            && text[6] == UInt8(ascii: ".") && digits.contains(text[7])
    }

    private static func lowercased(_ bytes: ArraySlice<UInt8>) -> String {
        String(decoding: bytes.map { (0x41...0x5A).contains($0) ? $0 + 0x20 : $0 }, as: UTF8.self)
    }

    private static func trimmed(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var bytes = bytes
        while let byte = bytes.first, byte == .space || byte == .tab { bytes = bytes.dropFirst() }
        while let byte = bytes.last, byte == .space || byte == .tab { bytes = bytes.dropLast() }
        return bytes
    }
}

/// One answer: always with `Content-Length`, `Content-Type`, `Cache-Control: no-store` and `Date`.
struct Response: Sendable {
    var status: Int
    var body: [UInt8]
    var contentType = Response.textPlain
    /// For HEAD: the headers (and the Content-Length) of the GET answer, without its body.
    var headOnly = false
    var extraHeaders: [(name: String, value: String)] = []

    static let textPlain = "text/plain; charset=utf-8"
    /// The Prometheus text exposition format the registry writes.
    static let prometheusText = "text/plain; version=0.0.4; charset=utf-8"

    static func text(_ status: Int, _ body: String) -> Response {
        Response(status: status, body: Array(body.utf8))
    }

    /// The bytes on the wire; `close` adds `Connection: close`.
    func encoded(close: Bool, date: String = Response.httpDate()) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(Self.reason(status))\r\n"
        head += "Content-Type: \(contentType)\r\n"
        head += "Content-Length: \(body.count)\r\n"
        head += "Cache-Control: no-store\r\n"
        head += "Date: \(date)\r\n"
        for (name, value) in extraHeaders { head += "\(name): \(value)\r\n" }
        if close { head += "Connection: close\r\n" }
        head += "\r\n"
        var bytes = Array(head.utf8)
        if !headOnly { bytes += body }
        return bytes
    }

    static func reason(_ status: Int) -> String {
        switch status {
        case 200: return "OK"
        case 400: return "Bad Request"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 503: return "Service Unavailable"
        case 505: return "HTTP Version Not Supported"
        default: return "Status \(status)"
        }
    }

    /// The current time as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), without locale.
    static func httpDate() -> String {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(days[Int(parts.tm_wday) % 7]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon) % 12]) "
            + "\(parts.tm_year + 1900) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}

/// Answers the three paths; one value for every connection, called on the server's thread.
struct OperationsHandler: Sendable {
    let registry: PrometheusCollectorRegistry
    let histograms: BridgeHistograms?
    let readiness: @Sendable () -> Readiness
    let isAlive: @Sendable () -> Bool

    func respond(to request: RequestHead) -> Response {
        let headOnly: Bool
        switch request.method {
        case .get: headOnly = false
        case .head: headOnly = true
        case .other:
            var answer = Response.text(405, "only GET and HEAD\n")
            answer.extraHeaders = [("Allow", "GET, HEAD")]
            return answer
        }
        if request.hasBody {
            return .text(400, "bad request: GET and HEAD take no body here\n")
        }
        var answer: Response
        switch request.path {
        case "/metrics":
            var body = registry.emitToBuffer()
            histograms?.emit(into: &body)
            answer = Response(status: 200, body: body, contentType: Response.prometheusText)
        case "/health":
            answer = isAlive() ? .text(200, "ok\n") : .text(503, "not alive\n")
        case "/ready":
            let state = readiness()
            answer = .text(state.isReady ? 200 : 503, "\(state)\n")
        default:
            answer = .text(404, "not found; this endpoint serves /metrics, /health and /ready\n")
        }
        answer.headOnly = headOnly
        return answer
    }
}

extension UInt8 {
    fileprivate static let cr = UInt8(ascii: "\r")
    fileprivate static let lf = UInt8(ascii: "\n")
    fileprivate static let space = UInt8(ascii: " ")
    fileprivate static let tab = UInt8(ascii: "\t")
    fileprivate static let colon = UInt8(ascii: ":")
    fileprivate static let comma = UInt8(ascii: ",")
    fileprivate static let slash = UInt8(ascii: "/")
    fileprivate static let question = UInt8(ascii: "?")
}
