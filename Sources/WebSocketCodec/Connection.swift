/// What the application sees of a connection, after pings are answered and the close handshake is handled.
public enum WebSocketEvent: Equatable, Sendable {
    case text(String)
    case binary([UInt8])
    /// A ping arrived; its pong is already encoded.
    case ping([UInt8])
    /// A pong arrived: the peer has read everything sent before the ping it answers (frames are ordered).
    case pong([UInt8])
    /// The close handshake finished (both close frames exchanged): the socket can be closed.
    case closed(code: WebSocketCloseCode?, reason: String)
}

/// The frame codec plus the parts of RFC 6455 every endpoint does the same way: a ping gets a pong with its
/// payload (section 5.5.2), a received close is answered with the same code (section 5.5.1), after its own
/// close frame an endpoint sends no data (section 5.5.1) and drops the data that still arrives, and a protocol
/// error is answered with a close frame carrying its code (section 7.1.7). No I/O: bytes go in through
/// ``decoder`` and come out of ``encoder``.
public struct WebSocketConnection: Sendable {
    public enum State: Equatable, Sendable {
        case open
        /// This side sent its close frame and waits for the peer's.
        case closeSent(WebSocketCloseCode?)
        /// Both close frames are exchanged, or a protocol error failed the connection.
        case closed
    }

    public var decoder: WebSocketFrameDecoder
    public var encoder: WebSocketFrameEncoder
    public private(set) var state: State = .open
    /// Data messages that arrived after this side's close frame and were dropped.
    public private(set) var droppedAfterClose = 0

    public init(role: WebSocketRole, maximumMessageSize: Int = 1 << 20) {
        decoder = WebSocketFrameDecoder(role: role, maximumMessageSize: maximumMessageSize)
        encoder = WebSocketFrameEncoder(role: role)
    }

    /// Encodes a text message; false (and nothing encoded) once a close frame was sent.
    @discardableResult
    public mutating func sendText(_ text: String) -> Bool {
        guard state == .open else { return false }
        encoder.appendText(text)
        return true
    }

    @discardableResult
    public mutating func sendPing(_ payload: [UInt8] = []) -> Bool {
        guard state == .open else { return false }
        encoder.appendPing(payload)
        return true
    }

    /// Starts the close handshake; nothing happens when it has started already.
    public mutating func close(_ code: WebSocketCloseCode = .normalClosure, reason: String = "") {
        guard state == .open else { return }
        encoder.appendClose(code, reason: reason)
        state = .closeSent(code)
    }

    /// The next event from the bytes received so far, or nil when more bytes are needed.
    ///
    /// - Throws: the peer's protocol error, after encoding the close frame that fails the connection.
    public mutating func nextEvent() throws(WebSocketProtocolError) -> WebSocketEvent? {
        while state != .closed {
            let message: WebSocketMessage?
            do {
                message = try decoder.nextMessage()
            } catch {
                if state == .open { encoder.appendClose(error.closeCode, reason: error.description) }
                state = .closed
                throw error
            }
            guard let message else { return nil }
            switch message {
            case .ping(let payload):
                if state == .open { encoder.appendPong(payload) }
                return .ping(payload)
            case .pong(let payload):
                return .pong(payload)
            case .close(let code, let reason):
                // Echo the peer's code (RFC 6455 section 5.5.1); an empty close is answered with an empty one.
                if state == .open { encoder.appendClose(code) }
                state = .closed
                return .closed(code: code, reason: reason)
            case .text where state != .open, .binary where state != .open:
                droppedAfterClose += 1
            case .text(let text):
                return .text(text)
            case .binary(let bytes):
                return .binary(bytes)
            }
        }
        return nil
    }
}
