#if canImport(Glibc)
import Glibc
#endif
import Synchronization
public import WebSocketCodec

/// A server on 127.0.0.1 (or ::1) that answers each connection's HTTP head with bytes of the test's choosing, or
/// with nothing: a gateway that sends a frame in the same segment as its 101, a wrong answer, or a peer that accepts
/// and never speaks (not even TLS). It records the heads and whether the client closed its end, so a test sees that
/// a failed connect left no socket open.
public final class RawListener: Sendable {
    private let listener: LoopbackListener
    private let state = Mutex<(requests: [HTTPHead], clientCloses: Int, stopping: Bool)>(([], 0, false))

    public var port: Int { listener.port }
    /// The heads received, in order.
    public var requests: [HTTPHead] { state.withLock { $0.requests } }
    /// Connections the client closed (end of stream read).
    public var clientCloses: Int { state.withLock { $0.clientCloses } }

    /// `answer` gets each request head: its bytes go out in one write, nil sends nothing. With `thenClose` the
    /// connection ends after the answer; otherwise it stays until the client closes it or ``stop()``.
    public init(ipv6: Bool = false, thenClose: Bool = false, answer: @escaping @Sendable (HTTPHead) -> [UInt8]?) throws {
        listener = try LoopbackListener(ipv6: ipv6)
        // The accept thread holds the closure, and with it self, until stop() ends it.
        listener.start { [self] fd in serve(fd, thenClose: thenClose, answer: answer) }
    }

    /// A listener that accepts and never sends a byte.
    public static func silent(ipv6: Bool = false) throws -> RawListener {
        try RawListener(ipv6: ipv6) { _ in nil }
    }

    /// The 101 that accepts `request`'s upgrade (RFC 6455 section 4.2.2).
    public static func switchingProtocols(_ request: HTTPHead) -> [UInt8] {
        let key = request.value(of: "Sec-WebSocket-Key") ?? ""
        return HTTPHead(startLine: "HTTP/1.1 101 Switching Protocols", headers: [
            HTTPHeader("Upgrade", "websocket"), HTTPHeader("Connection", "Upgrade"),
            HTTPHeader("Sec-WebSocket-Accept", WebSocketUpgradeRequest.acceptValue(forKey: key)),
        ]).encoded()
    }

    /// Stops listening, ends every connection and waits for the threads.
    public func stop() async {
        await listener.stop { state.withLock { $0.stopping = true } }
    }

    private func serve(_ fd: Int32, thenClose: Bool, answer: @Sendable (HTTPHead) -> [UInt8]?) {
        defer { close(fd) }
        var received: [UInt8] = []
        var answered = false
        var chunk = [UInt8](repeating: 0, count: 4096)
        while !state.withLock({ $0.stopping }) {
            // Not a head (a TLS ClientHello) is a head not complete yet.
            if !answered, let (head, _) = (try? HTTPHead.parse(received)) ?? nil {
                answered = true
                state.withLock { $0.requests.append(head) }
                if let bytes = answer(head) {
                    _ = Socket.writeAll(fd, bytes, deadline: .now + .seconds(5))
                    if thenClose { return }
                }
            }
            _ = Socket.wait(fd, for: Int16(POLLIN), milliseconds: 50)
            guard let count = chunk.withUnsafeMutableBytes({ Socket.readSome(fd, into: $0) }) else {
                state.withLock { $0.clientCloses += 1 }
                return
            }
            received += chunk[..<count]
        }
    }
}
