#if canImport(Glibc)
import Glibc
#endif
import MosquittoTestSupport
import Synchronization
public import WebSocketCodec

/// A WebSocket client for tests, on ``WebSocketConnection`` and a socket: it exercises the codec's client side
/// against ``DittoWebSocketServer`` (and other servers) over real TCP. Blocking steps run on threads of their
/// own, never on the test's cooperative pool.
public final class WebSocketTestClient: Sendable {
    private let fd: Int32
    private let connection: Mutex<WebSocketConnection>
    private let isClosed = Atomic<Bool>(false)
    /// The server's answer to the upgrade.
    public let response: HTTPHead

    /// Connects to 127.0.0.1:`port` (through a `CONNECT` proxy listening there when `proxy` is given), upgrades,
    /// and checks the answer; throws ``WebSocketHandshakeError`` when the server refuses.
    public static func connect(port: Int, request: WebSocketUpgradeRequest, proxy: HTTPConnectRequest? = nil,
                               maximumMessageSize: Int = 1 << 20) async throws -> WebSocketTestClient {
        try await onOwnThread {
            try WebSocketTestClient(port: port, request: request, proxy: proxy, maximumMessageSize: maximumMessageSize)
        }
    }

    private init(port: Int, request: WebSocketUpgradeRequest, proxy: HTTPConnectRequest?, maximumMessageSize: Int) throws {
        let fd = try Loopback.connect(port: port)
        do {
            Socket.setNonBlocking(fd)
            let deadline = ContinuousClock.now + .seconds(5)
            var early: [UInt8] = []
            if let proxy {
                guard Socket.writeAll(fd, proxy.encoded(), deadline: deadline) else { throw TestFailure("CONNECT not written") }
                let answer = try Socket.readHead(fd, deadline: deadline)
                try proxy.validate(answer.head)
                early = answer.rest
            }
            guard early.isEmpty, Socket.writeAll(fd, request.encoded(), deadline: deadline) else {
                throw TestFailure("upgrade request not written")
            }
            let answer = try Socket.readHead(fd, deadline: deadline)
            try request.validate(answer.head)
            var connection = WebSocketConnection(role: .client, maximumMessageSize: maximumMessageSize)
            connection.decoder.append(answer.rest)
            self.fd = fd
            self.connection = Mutex(connection)
            response = answer.head
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    deinit { disconnect() }

    /// Sends a text frame; false once a close frame was sent or received.
    @discardableResult
    public func send(_ text: String) -> Bool {
        flush { $0.sendText(text) }
    }

    @discardableResult
    public func ping(_ payload: [UInt8] = []) -> Bool {
        flush { $0.sendPing(payload) }
    }

    /// Starts the close handshake.
    public func close(_ code: WebSocketCloseCode = .normalClosure, reason: String = "") {
        _ = flush { connection -> Bool in
            connection.close(code, reason: reason)
            return true
        }
    }

    /// Bytes as they are, for frames the codec would not make.
    public func sendRaw(_ bytes: [UInt8]) -> Bool {
        Socket.writeAll(fd, bytes, deadline: .now + .seconds(5))
    }

    private func flush(_ body: (inout WebSocketConnection) -> Bool) -> Bool {
        connection.withLock { connection in
            guard body(&connection) else { return false }
            let pending = Array(connection.encoder.pendingBytes)
            connection.encoder.consume(pending.count)
            return Socket.writeAll(fd, pending, deadline: .now + .seconds(5))
        }
    }

    /// The next event within `timeout`, nil when none came. A connection that ends without a close frame is
    /// reported as closed with 1006 (RFC 6455 section 7.1.5).
    public func nextEvent(timeout: Duration = .seconds(5)) async throws -> WebSocketEvent? {
        try await onOwnThread { try self.waitForEvent(timeout: timeout) }
    }

    /// The next text frame within `timeout`, skipping pings and pongs; nil when none came.
    public func nextText(timeout: Duration = .seconds(5)) async throws -> String? {
        try await onOwnThread {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                switch try self.waitForEvent(timeout: deadline - .now) {
                case .text(let text): return text
                case .ping, .pong, .binary: continue
                case .closed, nil: return nil
                }
            }
            return nil
        }
    }

    private func waitForEvent(timeout: Duration) throws -> WebSocketEvent? {
        let deadline = ContinuousClock.now + timeout
        while true {
            let (event, reply) = try connection.withLock { connection throws -> (WebSocketEvent?, [UInt8]) in
                let event = try connection.nextEvent()
                let reply = Array(connection.encoder.pendingBytes)
                connection.encoder.consume(reply.count)
                return (event, reply)
            }
            if !reply.isEmpty { _ = Socket.writeAll(fd, reply, deadline: .now + .seconds(5)) }
            if let event { return event }
            let left = deadline - .now
            guard left > .zero, !isClosed.load(ordering: .relaxed) else { return nil }
            _ = Socket.wait(fd, for: Int16(POLLIN), milliseconds: Int32(min(left, .milliseconds(100)) / .milliseconds(1)) + 1)
            let count = connection.withLock { connection in
                connection.decoder.readIntoBuffer { Socket.readSome(fd, into: $0) ?? -1 }
            }
            if count < 0 { return .closed(code: .abnormalClosure, reason: "") }
        }
    }

    /// Closes the socket without a close frame.
    public func disconnect() {
        guard !isClosed.exchange(true, ordering: .relaxed) else { return }
        Glibc.close(fd)
    }
}
