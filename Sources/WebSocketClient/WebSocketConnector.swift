#if canImport(Glibc)
import Glibc
#endif
public import MQTT
public import WebSocketCodec

/// Where and how to open a WebSocket to Ditto's `/ws/2`.
public struct WebSocketEndpoint: Sendable, Equatable {
    /// An HTTP forward proxy the connection tunnels through (`CONNECT host:port`) before TLS.
    public struct Proxy: Sendable, Equatable {
        public var host: String
        public var port: Int
        /// Sent as `Proxy-Authorization`.
        public var authorization: HTTPAuthorization?

        public init(host: String, port: Int, authorization: HTTPAuthorization? = nil) {
            self.host = host
            self.port = port
            self.authorization = authorization
        }
    }

    /// Ditto's host name or address (an IPv6 address without brackets).
    public var host: String
    public var port: Int
    /// The path as the URL gives it, with any query it has, percent-encoded (`/ws/2`).
    public var path: String
    /// More query parameters, appended to what ``path`` has (`declared-acks`).
    public var query: [QueryParameter]
    /// `wss://`; nil for `ws://`.
    public var tls: TLSSettings?
    public var authorization: HTTPAuthorization?
    public var proxy: Proxy?
    /// The whole connect: resolving, TCP, the proxy's tunnel, TLS and the upgrade.
    public var timeout: Duration
    public var additionalHeaders: [HTTPHeader]

    public init(host: String, port: Int, path: String = "/ws/2", query: [QueryParameter] = [], tls: TLSSettings? = nil,
                authorization: HTTPAuthorization? = nil, proxy: Proxy? = nil, timeout: Duration = .seconds(10),
                additionalHeaders: [HTTPHeader] = []) {
        self.host = host
        self.port = port
        self.path = path
        self.query = query
        self.tls = tls
        self.authorization = authorization
        self.proxy = proxy
        self.timeout = timeout
        self.additionalHeaders = additionalHeaders
    }

    /// The request target: ``path`` and ``query``.
    public var target: String {
        guard !query.isEmpty else { return path }
        return path + (path.contains("?") ? "&" : "?") + QueryParameter.queryString(query)
    }

    /// `host:port`, an IPv6 address in brackets.
    public var authority: String { HTTPConnectRequest(host: host, port: port).authority }

    /// The `Host` header: the authority without the port when it is the scheme's default (RFC 9110 section 7.2).
    public var hostHeader: String {
        port == (tls == nil ? 80 : 443) ? String(authority.dropLast(":\(port)".count)) : authority
    }
}

/// An open WebSocket, before its first frame.
///
/// SAFETY: made on the connector's thread and handed to the event loop once; the stream is never used by two
/// threads at a time.
public struct WebSocketEstablished: @unchecked Sendable {
    /// Non-blocking, for the loop's `poll`; over TLS it may already hold more decrypted bytes
    /// (``ByteStream/hasBufferedBytes``), so the first read comes before the first poll.
    public let stream: any ByteStream
    /// Bytes that came after the 101's head in the same reads: the first frames (Ditto may send at once), for the
    /// frame decoder before anything read from ``stream``.
    public let leftover: [UInt8]
    /// The server's 101 answer.
    public let response: HTTPHead

    public init(stream: any ByteStream, leftover: [UInt8], response: HTTPHead) {
        self.stream = stream
        self.leftover = leftover
        self.response = response
    }
}

/// The steps of a connect, each named in an error.
public enum WebSocketConnectStage: String, Sendable, Equatable {
    case resolve
    case connect
    case proxy
    case tls = "TLS"
    case upgrade

    /// What the stage does to `address`, for a log line.
    func phrase(_ address: String) -> String {
        switch self {
        case .resolve: "resolving \(address)"
        case .connect: "connecting to \(address)"
        case .proxy: "the HTTP CONNECT through the proxy \(address)"
        case .tls: "the TLS handshake with \(address)"
        case .upgrade: "the WebSocket upgrade at \(address)"
        }
    }
}

/// Why a connect failed; ``description`` names the stage and the address.
public enum WebSocketConnectError: Error, Equatable, CustomStringConvertible {
    case failed(WebSocketConnectStage, address: String, reason: String)
    /// The endpoint's timeout passed during `stage`.
    case timedOut(WebSocketConnectStage, address: String, after: Duration)
    /// The proxy answered `CONNECT` with a status outside 2xx (407: its credentials were refused).
    case proxyRefused(status: Int, reason: String, proxy: String)
    /// Ditto answered the upgrade with a status other than 101 (401 or 403: the credentials were refused).
    case refused(status: Int, reason: String, address: String)

    public var stage: WebSocketConnectStage {
        switch self {
        case .failed(let stage, _, _), .timedOut(let stage, _, _): stage
        case .proxyRefused: .proxy
        case .refused: .upgrade
        }
    }

    public var description: String {
        switch self {
        case .failed(let stage, let address, let reason):
            "\(stage.phrase(address)) failed: \(reason)"
        case .timedOut(let stage, let address, let after):
            "connecting to Ditto timed out after \(after), during \(stage.phrase(address))"
        case .proxyRefused(let status, let reason, let proxy):
            "the proxy \(proxy) refused the tunnel (\(status) \(reason))"
        case .refused(let status, let reason, let address) where status == 401 || status == 403:
            "Ditto refused the credentials (\(status) \(reason)) at the WebSocket upgrade at \(address)"
        case .refused(let status, let reason, let address):
            "\(WebSocketConnectStage.upgrade.phrase(address)) failed: "
                + WebSocketHandshakeError.refused(status: status, reason: reason).reasonText
        }
    }
}

/// Opens WebSocket connections to Ditto: everything before the first frame, blocking, on a thread of the caller's
/// (never the event loop's).
public enum WebSocketConnector {
    /// Resolves, connects (every address in turn), tunnels through the proxy, does TLS and the upgrade, all within
    /// the endpoint's timeout. On failure nothing stays open.
    public static func connect(_ endpoint: WebSocketEndpoint) throws(WebSocketConnectError) -> WebSocketEstablished {
        let deadline = ContinuousClock.now + endpoint.timeout
        let step = { (stage: WebSocketConnectStage, address: String) in
            ConnectStep(stage: stage, address: address, deadline: deadline, timeout: endpoint.timeout)
        }
        // The TCP connection goes to the proxy when there is one.
        let (dialedHost, dialedPort) = endpoint.proxy.map { ($0.host, $0.port) } ?? (endpoint.host, endpoint.port)
        let dialed = HTTPConnectRequest(host: dialedHost, port: dialedPort).authority
        let socket = try TCPConnection.open(host: dialedHost, port: dialedPort, step: step(.resolve, dialed))
        var stream: any ByteStream = socket
        do throws(WebSocketConnectError) {
            var address = endpoint.authority
            if let proxy = endpoint.proxy {
                try tunnel(socket, to: endpoint, through: proxy, step: step(.proxy, dialed))
                address += " through the proxy \(dialed)"
            }
            if let tls = endpoint.tls {
                stream = try TLSStream(over: socket, settings: tls, serverName: endpoint.host, step: step(.tls, address))
            }
            return try upgrade(stream, endpoint, step: step(.upgrade, address))
        } catch {
            stream.close()
            throw error
        }
    }

    private static func tunnel(_ socket: SocketStream, to endpoint: WebSocketEndpoint,
                               through proxy: WebSocketEndpoint.Proxy, step: ConnectStep) throws(WebSocketConnectError) {
        let request = HTTPConnectRequest(host: endpoint.host, port: endpoint.port, proxyAuthorization: proxy.authorization)
        let (_, rest) = try step.exchange(request.encoded(), over: socket, validate: request.validate)
        // Neither TLS nor the upgrade lets the server speak first: bytes here are not from Ditto.
        guard rest.isEmpty else { throw step.failure("the proxy sent \(rest.count) bytes after its 2xx answer") }
    }

    private static func upgrade(_ stream: any ByteStream, _ endpoint: WebSocketEndpoint,
                                step: ConnectStep) throws(WebSocketConnectError) -> WebSocketEstablished {
        let request = WebSocketUpgradeRequest(host: endpoint.hostHeader, path: endpoint.target,
                                              authorization: endpoint.authorization,
                                              additionalHeaders: endpoint.additionalHeaders)
        let (head, leftover) = try step.exchange(request.encoded(), over: stream, validate: request.validate)
        return WebSocketEstablished(stream: stream, leftover: leftover, response: head)
    }
}

extension WebSocketHandshakeError {
    /// What went wrong, for a log line.
    var reasonText: String {
        switch self {
        case .headTooLarge(let limit): "no complete HTTP head within \(limit) bytes"
        case .malformedHead(let detail): "malformed HTTP head: \(detail)"
        case .refused(let status, let reason): "answered \(status) \(reason), not 101 Switching Protocols"
        case .notAnUpgrade: "a 101 without Upgrade: websocket and Connection: Upgrade"
        case .acceptMismatch(let expected, let received):
            "Sec-WebSocket-Accept is \(received.map { "'\($0)'" } ?? "missing"), not '\(expected)'"
        case .proxyRefused(let status, let reason): "the proxy answered \(status) \(reason)"
        }
    }
}

/// One stage of a connect: its name and address for errors, and the blocking I/O it does until the deadline.
struct ConnectStep {
    let stage: WebSocketConnectStage
    let address: String
    let deadline: ContinuousClock.Instant
    let timeout: Duration

    /// At most this many bytes of an HTTP head (the proxy's or Ditto's answer).
    static let maximumHeadLength = 16 * 1024

    func failure(_ reason: String) -> WebSocketConnectError {
        .failed(stage, address: address, reason: reason)
    }

    var timedOut: WebSocketConnectError { .timedOut(stage, address: address, after: timeout) }

    /// Waits until `fd` reports one of `events` (or an error); throws once the deadline passes.
    func wait(_ fd: Int32, for events: Int16) throws(WebSocketConnectError) {
        while true {
            let left = deadline - .now
            guard left > .zero else { throw timedOut }
            var entry = pollfd(fd: fd, events: events, revents: 0)
            // Rounded up: a poll that returns a little early would only spin.
            let milliseconds = Int32(min(left / .milliseconds(1) + 1, Double(Int32.max)))
            let ready = poll(&entry, 1, milliseconds)
            if ready > 0 { return }
            if ready < 0, errno != EINTR { throw failure("poll: \(systemError(errno))") }
        }
    }

    func writeAll(_ bytes: [UInt8], to stream: any ByteStream) throws(WebSocketConnectError) {
        var offset = 0
        while offset < bytes.count {
            switch bytes[offset...].withUnsafeBytes({ stream.write($0) }) {
            case .transferred(let count): offset += count
            case .wouldBlock: try wait(stream.fd, for: Int16(POLLOUT) | stream.extraPollEvents)
            case .closed: throw failure("the connection closed")
            case .failed(let reason): throw failure(reason)
            }
        }
    }

    /// Sends an HTTP request head and reads and checks the answer's head; the bytes read after it come back with it.
    func exchange(_ request: [UInt8], over stream: any ByteStream,
                  validate: (HTTPHead) throws(WebSocketHandshakeError) -> Void)
        throws(WebSocketConnectError) -> (HTTPHead, [UInt8])
    {
        try writeAll(request, to: stream)
        let (head, rest) = try readHead(from: stream)
        do {
            try validate(head)
        } catch {
            switch error {
            case .refused(let status, let reason): throw .refused(status: status, reason: reason, address: address)
            case .proxyRefused(let status, let reason): throw .proxyRefused(status: status, reason: reason, proxy: address)
            default: throw failure(error.reasonText)
            }
        }
        return (head, rest)
    }

    /// Reads until an HTTP head is complete; the bytes read after it come back with it.
    func readHead(from stream: any ByteStream) throws(WebSocketConnectError) -> (HTTPHead, [UInt8]) {
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            do {
                if let (head, length) = try HTTPHead.parse(received, maximumLength: Self.maximumHeadLength) {
                    return (head, Array(received[length...]))
                }
            } catch {
                throw failure(error.reasonText)
            }
            switch chunk.withUnsafeMutableBytes({ stream.read(into: $0) }) {
            case .transferred(let count): received += chunk[..<count]
            case .wouldBlock: try wait(stream.fd, for: Int16(POLLIN) | stream.extraPollEvents)
            case .closed:
                throw failure(received.isEmpty ? "the connection closed without an answer"
                                               : "the connection closed within the answer's HTTP head")
            case .failed(let reason): throw failure(reason)
            }
        }
    }
}
