import Foundation
#if canImport(Glibc)
import Glibc
#endif
import MosquittoTestSupport
import WebSocketClient
import WebSocketCodec

/// ``WebSocketConnector/connect(_:)`` on a thread of its own (it blocks).
func connect(_ endpoint: WebSocketEndpoint) async throws -> WebSocketEstablished {
    try await onOwnThread { try WebSocketConnector.connect(endpoint) }
}

/// The error a connect ends with; a connect that succeeds is a test failure.
func connectError(_ endpoint: WebSocketEndpoint) async throws -> WebSocketConnectError {
    let result = try await onOwnThread { () -> Result<WebSocketEstablished, WebSocketConnectError> in
        do throws(WebSocketConnectError) {
            return .success(try WebSocketConnector.connect(endpoint))
        } catch {
            return .failure(error)
        }
    }
    switch result {
    case .success(let established):
        established.stream.close()
        throw TestFailure("connected to \(endpoint.authority), expected a failure")
    case .failure(let error):
        return error
    }
}

/// A client's frames over an established stream, blocking with `poll`: what the event loop will do, in a test.
final class FrameChannel: @unchecked Sendable {
    // SAFETY: every method runs the stream on one thread of its own at a time (the tests await each call).
    private let established: WebSocketEstablished
    private var connection = WebSocketConnection(role: .client)

    init(_ established: WebSocketEstablished) {
        self.established = established
        connection.decoder.append(established.leftover)
    }

    var stream: any ByteStream { established.stream }

    /// Sends a text frame and returns the next text frame that arrives within `timeout`.
    func send(_ text: String, timeout: Duration = .seconds(5)) async throws -> String? {
        try await onOwnThread { [self] in
            _ = connection.sendText(text)
            return try nextText(timeout: timeout)
        }
    }

    /// The next text frame within `timeout` (pings and pongs skipped), nil when none came or the stream closed.
    func nextText(timeout: Duration = .seconds(5)) async throws -> String? {
        try await onOwnThread { [self] in try nextText(timeout: timeout) }
    }

    private func nextText(timeout: Duration) throws -> String? {
        let deadline = ContinuousClock.now + timeout
        let stream = established.stream
        while ContinuousClock.now < deadline {
            if case .text(let text) = try connection.nextEvent() { return text }
            while connection.encoder.hasPendingBytes {
                let written = connection.encoder.pendingBytes.withUnsafeBytes { stream.write($0) }
                switch written {
                case .transferred(let count): connection.encoder.consume(count)
                case .wouldBlock: _ = wait(Int16(POLLOUT) | stream.extraPollEvents)
                case .closed, .failed: return nil
                }
            }
            if !stream.hasBufferedBytes, wait(Int16(POLLIN) | stream.extraPollEvents) == 0 { continue }
            var outcome = StreamIO.wouldBlock
            _ = connection.decoder.readIntoBuffer { buffer in
                outcome = stream.read(into: buffer)
                if case .transferred(let count) = outcome { return count }
                return 0
            }
            switch outcome {
            case .transferred, .wouldBlock: continue
            case .closed, .failed: return try connection.nextEvent().flatMap { if case .text(let text) = $0 { text } else { nil } }
            }
        }
        return nil
    }

    private func wait(_ events: Int16) -> Int16 {
        var entry = pollfd(fd: established.stream.fd, events: events, revents: 0)
        return poll(&entry, 1, 100) > 0 ? entry.revents : 0
    }

    func close() { established.stream.close() }
}

/// A socket listening on 127.0.0.1 that the test drives by hand: one that never accepts (the kernel still completes
/// the TCP handshake, so a client waits for an answer that never comes), or one that answers a connection with
/// bytes of the test's choosing.
final class RawListener: Sendable {
    let port: Int
    private let fd: Int32

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                bind(fd, address, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, address, &length) == 0
            }
        }
        guard bound else {
            close(fd)
            throw TestFailure("bind/listen on 127.0.0.1: errno \(errno)")
        }
        self.fd = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(fd) }

    /// Accepts one connection, reads its HTTP head, writes `answer(head)` in one `send`, and keeps the connection
    /// open until the listener goes away.
    func answerOnce(_ answer: @escaping @Sendable (HTTPHead) -> [UInt8]) {
        let fd = fd
        Thread {
            let connection = accept(fd, nil, nil)
            guard connection >= 0 else { return }
            defer { close(connection) }
            var received: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                if let (head, _) = try? HTTPHead.parse(received) {
                    let bytes = answer(head)
                    _ = bytes.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    break
                }
                let count = recv(connection, &chunk, chunk.count, 0)
                guard count > 0 else { return }
                received += chunk[..<count]
            }
            // Until the client closes.
            while recv(connection, &chunk, chunk.count, 0) > 0 {}
        }.start()
    }
}
