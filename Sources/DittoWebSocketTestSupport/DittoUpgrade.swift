#if canImport(Glibc)
import Glibc
#endif
import WebSocketCodec

/// An upgrade request to Ditto's `/ws/2` as both stand-ins read it (RFC 6455 section 4.2.1 plus the path): its
/// key and its query parameters, percent-decoded. Authentication is each server's own.
struct DittoUpgradeRequest {
    var key: String
    var query: [String: String]

    /// Nil for anything but a WebSocket upgrade (version 13) of `GET /ws/2`.
    init?(_ head: HTTPHead) {
        let parts = head.startLine.split(separator: " ")
        guard parts.count == 3, parts[0] == "GET", head.lists("websocket", in: "Upgrade"),
              head.value(of: "Sec-WebSocket-Version") == "13", let key = head.value(of: "Sec-WebSocket-Key")
        else { return nil }
        let target = parts[1].split(separator: "?", maxSplits: 1)
        guard target.first == "/ws/2" else { return nil }
        var query: [String: String] = [:]
        for parameter in target.dropFirst().first?.split(separator: "&") ?? [] {
            let pair = parameter.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if let name = QueryParameter.percentDecoded(pair[0]) {
                query[name] = pair.count == 2 ? QueryParameter.percentDecoded(pair[1]) : ""
            }
        }
        self.key = key
        self.query = query
    }

    /// The answer to a refused upgrade: 401 with Ditto's nginx's Basic challenge.
    static func refuse(_ fd: Int32, deadline: ContinuousClock.Instant) {
        let refusal = HTTPHead(startLine: "HTTP/1.1 401 Unauthorized", headers: [
            HTTPHeader("WWW-Authenticate", "Basic realm=\"ditto\""), HTTPHeader("Content-Length", "0"),
            HTTPHeader("Connection", "close"),
        ])
        _ = Socket.writeAll(fd, refusal.encoded(), deadline: deadline)
    }

    /// Answers the upgrade with 101; false when the socket failed or `deadline` passed.
    func accept(_ fd: Int32, deadline: ContinuousClock.Instant) -> Bool {
        let accept = HTTPHead(startLine: "HTTP/1.1 101 Switching Protocols", headers: [
            HTTPHeader("Upgrade", "websocket"), HTTPHeader("Connection", "Upgrade"),
            HTTPHeader("Sec-WebSocket-Accept", WebSocketUpgradeRequest.acceptValue(forKey: key)),
        ])
        return Socket.writeAll(fd, accept.encoded(), deadline: deadline)
    }
}
