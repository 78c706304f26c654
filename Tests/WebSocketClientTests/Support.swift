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

/// Writes to `stream` until a write fails, as a peer that has gone makes it (the first writes may still reach the
/// kernel's buffer before the peer's reset arrives): the failure's text (nil when none came within 5 s), and whether
/// a write raised SIGPIPE.
///
/// SIGPIPE is blocked on the writing thread meanwhile, so a raised one stays pending there, where the check finds
/// it and takes it, whatever the process does with SIGPIPE: Linux never discards a blocked signal, and
/// libmosquitto's `mosquitto_new`, which other tests in this process call, sets SIGPIPE to be ignored.
func writeUntilFailure(_ stream: any ByteStream) async throws -> (reason: String?, raisedSIGPIPE: Bool) {
    let established = UncheckedStream(stream)
    return try await onOwnThread {
        var pipeSignal = sigset_t()
        sigemptyset(&pipeSignal)
        sigaddset(&pipeSignal, SIGPIPE)
        var previous = sigset_t()
        pthread_sigmask(SIG_BLOCK, &pipeSignal, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        let deadline = ContinuousClock.now + .seconds(5)
        let bytes = [UInt8](repeating: 0x81, count: 1024)
        var reason: String?
        while reason == nil, ContinuousClock.now < deadline {
            switch bytes.withUnsafeBytes({ established.stream.write($0) }) {
            case .failed(let text): reason = text
            case .closed: reason = "closed"
            case .transferred, .wouldBlock: usleep(10_000)
            }
        }
        var pending = sigset_t()
        sigpending(&pending)
        let raised = sigismember(&pending, SIGPIPE) == 1
        if raised {
            var now = timespec()
            _ = sigtimedwait(&pipeSignal, nil, &now)
        }
        return (reason, raised)
    }
}

/// A stream handed to one helper thread while the test awaits it.
struct UncheckedStream: @unchecked Sendable {
    // SAFETY: the test awaits the one thread that uses it.
    let stream: any ByteStream
    init(_ stream: any ByteStream) { self.stream = stream }
}
