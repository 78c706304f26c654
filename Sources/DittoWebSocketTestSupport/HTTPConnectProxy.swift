#if canImport(Glibc)
import Glibc
#endif
import MosquittoTestSupport
import Synchronization
public import WebSocketCodec

/// A forward proxy for tests on 127.0.0.1: answers `CONNECT 127.0.0.1:<port>` (RFC 9110 section 9.3.6) with 200
/// and relays bytes both ways; with `credentials`, a request without the matching `Proxy-Authorization` gets
/// 407. Only loopback targets are tunnelled.
public final class HTTPConnectProxy: Sendable {
    public let credentials: HTTPAuthorization?
    private let listener: LoopbackListener
    private let state = Mutex<(tunnels: [String], refused: [Int], stopping: Bool)>(([], [], false))

    public var port: Int { listener.port }
    /// The authorities tunnelled to, in order.
    public var tunnels: [String] { state.withLock { $0.tunnels } }
    /// The statuses of refused requests (407 for credentials, 403 for a target other than 127.0.0.1).
    public var refused: [Int] { state.withLock { $0.refused } }

    public init(credentials: HTTPAuthorization? = nil) throws {
        self.credentials = credentials
        listener = try LoopbackListener()
        // The accept thread holds the closure, and with it self, until stop() ends it.
        listener.start { [self] fd in relay(fd) }
    }

    /// Stops listening, ends every tunnel and waits for the proxy's threads.
    public func stop() async {
        await listener.stop { state.withLock { $0.stopping = true } }
    }

    private func refuse(_ fd: Int32, _ status: Int, _ reason: String, deadline: ContinuousClock.Instant) {
        state.withLock { $0.refused.append(status) }
        var headers = [HTTPHeader("Content-Length", "0")]
        if status == 407 { headers.append(HTTPHeader("Proxy-Authenticate", "Basic realm=\"proxy\"")) }
        _ = Socket.writeAll(fd, HTTPHead(startLine: "HTTP/1.1 \(status) \(reason)", headers: headers).encoded(), deadline: deadline)
    }

    private func relay(_ client: Int32) {
        defer { close(client) }
        let deadline = ContinuousClock.now + .seconds(5)
        guard let request = try? Socket.readHead(client, deadline: deadline) else { return }
        let parts = request.head.startLine.split(separator: " ")
        guard credentials.map({ request.head.value(of: "Proxy-Authorization") == $0.headerValue }) ?? true else {
            return refuse(client, 407, "Proxy Authentication Required", deadline: deadline)
        }
        guard parts.count == 3, parts[0] == "CONNECT", parts[1].hasPrefix("127.0.0.1:"),
              let port = Int(parts[1].dropFirst("127.0.0.1:".count)),
              let upstream = try? Loopback.connect(port: port)
        else { return refuse(client, 403, "Forbidden", deadline: deadline) }
        defer { close(upstream) }
        Socket.setNonBlocking(upstream)
        state.withLock { $0.tunnels.append(String(parts[1])) }
        let established = HTTPHead(startLine: "HTTP/1.1 200 Connection established", headers: []).encoded()
        guard Socket.writeAll(client, established, deadline: deadline),
              Socket.writeAll(upstream, request.rest, deadline: deadline)
        else { return }
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while !state.withLock({ $0.stopping }) {
            var fds = [pollfd(fd: client, events: Int16(POLLIN), revents: 0), pollfd(fd: upstream, events: Int16(POLLIN), revents: 0)]
            guard poll(&fds, 2, 50) >= 0 else { return }
            for (from, to) in [(0, 1), (1, 0)] where fds[from].revents != 0 {
                guard let count = chunk.withUnsafeMutableBytes({ Socket.readSome(fds[from].fd, into: $0) }),
                      Socket.writeAll(fds[to].fd, Array(chunk[..<count]), deadline: .now + .seconds(5))
                else { return }
            }
        }
    }
}
