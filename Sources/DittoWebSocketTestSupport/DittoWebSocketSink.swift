import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import WebSocketCodec

/// A lightweight stand-in for Ditto's `/ws/2` for benchmarks: it accepts HTTP Basic `username`/`password`,
/// acknowledges `START-SEND-*` and `STOP-SEND-*` as ``DittoWebSocketServer`` does, answers pings (the codec does),
/// hands every Ditto Protocol frame's bytes to `received` without parsing them, keeps nothing, and sends text
/// frames for the client from any thread. What ``DittoWebSocketServer`` plays beyond that (tokens, label
/// conflicts, the bounded outgoing buffer, keep-alive pings) it leaves out.
public final class DittoWebSocketSink: Sendable {
    public typealias Receiver = @Sendable (UnsafeRawBufferPointer) -> Void

    public let username: String
    public let password: String
    public var port: Int { listener.port }
    public var url: String { "ws://127.0.0.1:\(port)/ws/2" }
    private let listener: LoopbackListener
    private let received: Receiver
    private let sessions = Mutex<[DittoWebSocketSinkSession]>([])
    private let stopping = Atomic<Bool>(false)
    private let refused = Atomic<Int>(0)

    /// Listens at once; each session is served on a thread of its own, which calls `received` with the UTF-8 of
    /// each Ditto Protocol text frame (any text frame that is not a control message) as it arrives.
    public init(username: String = "ditto", password: String = "ditto", received: @escaping Receiver) throws {
        self.username = username
        self.password = password
        self.received = received
        listener = try LoopbackListener()
        // The accept thread holds the closure, and with it self, until stop() ends it.
        listener.start { [self] fd in serve(fd) }
    }

    /// Upgrades refused for wrong credentials or a wrong request.
    public var refusedUpgrades: Int { refused.load(ordering: .relaxed) }

    /// Sessions whose TCP connection is up.
    public var openSessions: Int { sessions.withLock { $0.count } }

    /// Sends one text frame whose UTF-8 is `bytes` on the newest open session, writing it on this thread as far as
    /// the socket takes it; false when no session is open.
    @discardableResult
    public func send(_ bytes: [UInt8]) -> Bool {
        guard let session = sessions.withLock({ $0.last }) else { return false }
        return bytes.withUnsafeBytes { session.send($0) }
    }

    /// Stops listening, ends every session's connection and waits for the sink's threads.
    public func stop() async {
        await listener.stop { stopping.store(true, ordering: .relaxed) }
    }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        let deadline = ContinuousClock.now + .seconds(5)
        guard let request = try? Socket.readHead(fd, deadline: deadline) else { return }
        let basic = HTTPAuthorization.basic(username: username, password: password).headerValue
        guard let upgrade = DittoUpgradeRequest(request.head), request.head.value(of: "Authorization") == basic else {
            refused.add(1, ordering: .relaxed)
            DittoUpgradeRequest.refuse(fd, deadline: deadline)
            return
        }
        guard upgrade.accept(fd, deadline: deadline) else { return }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let session = DittoWebSocketSinkSession(fd: fd, initialBytes: request.rest)
        sessions.withLock { $0.append(session) }
        defer { sessions.withLock { $0.removeAll { $0 === session } } }
        session.run(received: received) { stopping.load(ordering: .relaxed) }
    }
}

/// One connection of ``DittoWebSocketSink``: the codec's state under a lock, read on the session's thread and
/// written by ``send(_:)`` from the sender's thread.
final class DittoWebSocketSinkSession: Sendable {
    private let fd: Int32
    private let connection: Mutex<WebSocketConnection>
    private let wake: (read: Int32, write: Int32)

    init(fd: Int32, initialBytes: [UInt8]) {
        self.fd = fd
        var initial = WebSocketConnection(role: .server)
        initial.decoder.append(initialBytes)
        connection = Mutex(initial)
        var pipeEnds: [Int32] = [0, 0]
        pipe(&pipeEnds)
        Socket.setNonBlocking(pipeEnds[0])
        Socket.setNonBlocking(pipeEnds[1])
        wake = (pipeEnds[0], pipeEnds[1])
    }

    deinit {
        Glibc.close(wake.read)
        Glibc.close(wake.write)
    }

    func send(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let (sent, pending) = connection.withLock { connection -> (Bool, Bool) in
            guard connection.state == .open else { return (false, false) }
            connection.encoder.append(.text, payload: bytes)
            return (true, !flush(&connection))
        }
        if pending {
            // The session's thread waits for POLLOUT only when it knows there is something to write.
            var byte: UInt8 = 1
            _ = write(wake.write, &byte, 1)
        }
        return sent
    }

    /// Writes what the socket takes now; true when nothing is left pending.
    private func flush(_ connection: inout WebSocketConnection) -> Bool {
        while connection.encoder.hasPendingBytes {
            guard let written = Socket.writeSome(fd, connection.encoder.pendingBytes), written > 0 else { return false }
            connection.encoder.consume(written)
        }
        return true
    }

    func run(received: DittoWebSocketSink.Receiver, stopping: () -> Bool) {
        defer { shutdown(fd, Int32(SHUT_RDWR)) }
        var frames: [String] = []
        while !stopping() {
            let wantsOutput = connection.withLock { $0.encoder.hasPendingBytes }
            let events = Int16(POLLIN) | (wantsOutput ? Int16(POLLOUT) : 0)
            let ready = Socket.wait(fd, for: events, wake: wake.read, milliseconds: 50)
            let open = connection.withLock { connection -> Bool in
                guard ready & Int16(POLLIN | POLLHUP | POLLERR) != 0 || connection.decoder.bufferedByteCount > 0 else { return true }
                let count = connection.decoder.readIntoBuffer(minimumCapacity: 64 * 1024) { Socket.readSome(fd, into: $0) ?? -1 }
                return count >= 0 && receive(&connection, into: &frames)
            }
            // Outside the lock, so that a receiver may send (a downlink answer) without waiting for this thread.
            for var frame in frames { frame.withUTF8 { received(UnsafeRawBufferPointer($0)) } }
            frames.removeAll(keepingCapacity: true)
            // Then the pongs and acks (or the echoed close frame) the reads produced: a pong leaves after the
            // receiver had every frame sent before its ping, as Ditto reads a session's frames in order.
            let closing = connection.withLock { connection -> Bool in
                _ = flush(&connection)
                return connection.state != .open
            }
            if !open || closing { return }
        }
    }

    /// Decodes every complete frame: control messages are acknowledged, Ditto Protocol frames collected in
    /// `frames`; false when the connection ended (a close or a protocol error).
    private func receive(_ connection: inout WebSocketConnection, into frames: inout [String]) -> Bool {
        while true {
            let event: WebSocketEvent?
            do {
                event = try connection.nextEvent()
            } catch {
                return false
            }
            switch event {
            case nil: return true
            case .text(let text):
                // A Ditto Protocol message is a JSON object; anything else is taken for a control message.
                if text.utf8.first == UInt8(ascii: "{") {
                    frames.append(text)
                } else if let control = DittoControlMessage(text) {
                    switch control.kind {
                    case .start(let type): connection.sendText(type.startMessage + ":ACK")
                    case .stop(let type): connection.sendText(type.stopMessage + ":ACK")
                    case .jwt: break
                    }
                }
            case .binary, .ping, .pong: break
            case .closed: return false
            }
        }
    }
}
