import Glibc
public import Mosquitto
public import WebSocketCodec

/// An open WebSocket client connection on the bridge's event loop: frames out and in, pings with numbered
/// payloads whose pongs it reports, and its own liveness check, since a server such as Ditto's gateway never
/// times out a silent client and a half-open TCP connection shows nothing until something is written.
///
/// Everything runs on the loop's thread: the socket is polled with the MQTT clients' (``LoopSocket``), frames
/// queued by a turn's reads leave in that turn, and the handlers are called inside the channel's reads. Reading
/// never pauses: a server that buffers a bounded number of frames for a slow client and drops the rest (Ditto
/// does) loses less when the client keeps reading.
public final class WebSocketChannel: LoopSocket {
    /// How the channel ended; the handler `ended` gets it once.
    public enum End: Equatable, Sendable, CustomStringConvertible {
        /// The close handshake finished; `byPeer`: the server started it.
        case closed(code: WebSocketCloseCode?, reason: String, byPeer: Bool)
        /// The server broke RFC 6455; the channel sent the close frame the error calls for.
        case protocolError(WebSocketProtocolError)
        /// The stream ended without a close frame.
        case streamClosed
        case streamFailed(String)
        /// No pong to a ping within the keepalive.
        case unresponsive(Duration)
        /// Our close frame got no answer in time.
        case closeTimedOut
        /// The event loop ended.
        case loopEnded

        public var description: String {
            switch self {
            case .closed(let code, let reason, let byPeer):
                "\(byPeer ? "the server closed" : "closed") with \(code.map { "\($0)" } ?? "no code")"
                    + (reason.isEmpty ? "" : " (\(reason))")
            case .protocolError(let error): "protocol error: \(error)"
            case .streamClosed: "the connection closed without a close frame"
            case .streamFailed(let reason): "the connection failed: \(reason)"
            case .unresponsive(let after): "no pong within \(after): taken for dead"
            case .closeTimedOut: "no answer to the close frame"
            case .loopEnded: "the event loop ended"
            }
        }
    }

    /// Installed once, before the first read.
    public struct Handlers {
        /// A text message, its UTF-8 bytes.
        public var text: (String) -> Void
        /// The pong to the ping ``sendPing()`` numbered so: the server has read every frame sent before it.
        public var pong: (UInt64) -> Void
        /// The output buffer fell below ``lowWater`` after having been above ``highWater``.
        public var writable: () -> Void
        public var ended: (End) -> Void

        public init(text: @escaping (String) -> Void, pong: @escaping (UInt64) -> Void,
                    writable: @escaping () -> Void, ended: @escaping (End) -> Void) {
            self.text = text
            self.pong = pong
            self.writable = writable
            self.ended = ended
        }
    }

    /// Above this many unwritten bytes the channel reports itself full (``isWritable`` false).
    public static let highWater = 1 << 20
    public static let lowWater = 256 << 10
    /// How long our close frame waits for the server's.
    public static let closeTimeout = Duration.seconds(2)

    private let loop: MQTTEventLoop
    private var stream: (any ByteStream)?
    private var connection: WebSocketConnection
    private var handlers: Handlers?
    private let keepalive: Duration
    private let keepaliveNanoseconds: Int64
    /// When a frame last arrived (monotonic nanoseconds).
    private var lastReceived: Int64
    /// Pings sent and not answered yet, oldest first: number and when it went out.
    private var pingsOutstanding: [(sequence: UInt64, sentAt: Int64)] = []
    private var nextPingSequence: UInt64 = 1
    private var livenessTimer: MQTTEventLoop.TimerID?
    private var closeTimer: MQTTEventLoop.TimerID?
    private var aboveHighWater = false
    private var ended = false

    /// Takes over a connected stream (`leftover`: bytes read past the upgrade answer) on `loop`'s thread; the
    /// channel reads from the next turn on.
    public init(stream: any ByteStream, leftover: [UInt8], loop: MQTTEventLoop, keepalive: Duration,
                maximumMessageSize: Int = 1 << 20) {
        loop.preconditionInEventLoop()
        self.loop = loop
        self.stream = stream
        connection = WebSocketConnection(role: .client, maximumMessageSize: maximumMessageSize)
        if !leftover.isEmpty { connection.decoder.append(leftover) }
        self.keepalive = keepalive
        keepaliveNanoseconds = Int64(keepalive.components.seconds) * 1_000_000_000
            + keepalive.components.attoseconds / 1_000_000_000
        lastReceived = MQTTEventLoop.monotonicNanoseconds()
    }

    /// Starts reading: handlers first, then the bytes that came with the upgrade answer.
    public func start(_ handlers: Handlers) {
        loop.preconditionInEventLoop()
        self.handlers = handlers
        loop.register(self)
        scheduleLivenessCheck()
        if connection.decoder.bufferedByteCount > 0 { processEvents() }
    }

    /// Open and not closing: frames sent now go out.
    public var isOpen: Bool { !ended && connection.state == .open }

    /// Open with room in the output buffer.
    public var isWritable: Bool { isOpen && !aboveHighWater }

    /// Bytes encoded and not yet taken by the socket.
    public var bufferedOutputBytes: Int { connection.encoder.pendingBytes.count }

    /// Queues one text message whose UTF-8 is `bytes`; false when the channel is closing or ended.
    @discardableResult
    public func sendText(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard isOpen else { return false }
        connection.encoder.append(.text, payload: bytes)
        noteOutput()
        return true
    }

    @discardableResult
    public func sendText(_ text: String) -> Bool {
        guard isOpen else { return false }
        connection.encoder.appendText(text)
        noteOutput()
        return true
    }

    /// Queues a ping numbered with the returned sequence (its 8-byte payload); ``Handlers/pong`` reports its pong.
    /// Frames are ordered, so that pong shows the server read every frame queued before the ping. Nil when closed.
    public func sendPing() -> UInt64? {
        guard isOpen else { return nil }
        let sequence = nextPingSequence
        nextPingSequence += 1
        withUnsafeBytes(of: sequence.bigEndian) { connection.encoder.append(.ping, payload: $0) }
        pingsOutstanding.append((sequence, MQTTEventLoop.monotonicNanoseconds()))
        return sequence
    }

    /// Pings sent and not yet answered.
    public var outstandingPings: Int { pingsOutstanding.count }

    /// Starts the close handshake; the channel ends when the server answers or after ``closeTimeout``.
    public func close(_ code: WebSocketCloseCode = .normalClosure, reason: String = "") {
        guard !ended, connection.state == .open else { return }
        connection.close(code, reason: reason)
        closeTimer = loop.schedule(at: .now + Self.closeTimeout) { [weak self] in self?.end(.closeTimedOut) }
    }

    // MARK: LoopSocket

    public func writeQueuedThenPollEvents() -> (fd: Int32, events: Int16)? {
        // TLS may hold decrypted bytes a read left behind (its budget ran out): poll would not report them.
        if stream?.hasBufferedBytes == true { readAvailable() }
        writeQueued()
        guard let stream else { return nil }
        var events = Int16(POLLIN) | stream.extraPollEvents
        if connection.encoder.hasPendingBytes { events |= Int16(POLLOUT) }
        return (stream.fd, events)
    }

    public func handle(revents: Int16) {
        if revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 { readAvailable() }
        if revents & Int16(POLLOUT) != 0 { writeQueued() }
    }

    public func flushWrites() {
        if connection.encoder.hasPendingBytes { writeQueued() }
    }

    public func closeNow() {
        end(.loopEnded)
    }

    // MARK: reading and writing

    private func readAvailable() {
        // Bounded per turn, so that one busy socket does not starve the others.
        var budget = 1 << 20
        while let stream, budget > 0 {
            var outcome = StreamIO.wouldBlock
            _ = connection.decoder.readIntoBuffer(minimumCapacity: 64 * 1024) { buffer in
                outcome = stream.read(into: buffer)
                if case .transferred(let count) = outcome { return count }
                return 0
            }
            switch outcome {
            case .transferred(let count):
                budget -= count
                lastReceived = MQTTEventLoop.monotonicNanoseconds()
                processEvents()
            case .wouldBlock:
                if !stream.hasBufferedBytes { return }
            case .closed:
                processEvents()
                return end(.streamClosed)
            case .failed(let reason):
                return end(.streamFailed(reason))
            }
        }
    }

    private func processEvents() {
        while !ended {
            let event: WebSocketEvent?
            do {
                event = try connection.nextEvent()
            } catch {
                writeQueued()
                return end(.protocolError(error))
            }
            guard let event else { break }
            switch event {
            case .text(let text):
                handlers?.text(text)
            case .binary:
                // Ditto Protocol frames are text; Ditto itself ignores binary frames.
                break
            case .ping:
                break
            case .pong(let payload):
                pong(payload)
            case .closed(let code, let reason):
                let byPeer = closeTimer == nil
                writeQueued()
                return end(.closed(code: code, reason: reason, byPeer: byPeer))
            }
        }
        if connection.encoder.hasPendingBytes { noteOutput() }
    }

    private func pong(_ payload: [UInt8]) {
        guard payload.count == 8 else { return }
        let sequence = payload.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        // A pong answers its ping and, frames being ordered, every earlier one whose pong the server skipped
        // (RFC 6455 section 5.5.3 lets it answer only the latest).
        guard let index = pingsOutstanding.firstIndex(where: { $0.sequence == sequence }) else { return }
        pingsOutstanding.removeFirst(index + 1)
        handlers?.pong(sequence)
    }

    private func writeQueued() {
        guard let stream else { return }
        while connection.encoder.hasPendingBytes {
            let outcome = connection.encoder.pendingBytes.withUnsafeBytes { stream.write($0) }
            switch outcome {
            case .transferred(let count):
                connection.encoder.consume(count)
            case .wouldBlock:
                noteOutput()
                return
            case .closed:
                return end(.streamClosed)
            case .failed(let reason):
                return end(.streamFailed(reason))
            }
        }
        if aboveHighWater {
            aboveHighWater = false
            handlers?.writable()
        }
    }

    private func noteOutput() {
        let pending = connection.encoder.pendingBytes.count
        if pending > Self.highWater {
            aboveHighWater = true
        } else if aboveHighWater, pending < Self.lowWater {
            aboveHighWater = false
            handlers?.writable()
        }
    }

    // MARK: liveness

    private func scheduleLivenessCheck() {
        // A quarter of the keepalive: an idle ping goes out at most a quarter late, a dead peer is noticed within
        // 1.25 keepalives.
        livenessTimer = loop.schedule(at: .now + keepalive / 4) { [weak self] in self?.checkLiveness() }
    }

    private func checkLiveness() {
        guard !ended else { return }
        let now = MQTTEventLoop.monotonicNanoseconds()
        if let oldest = pingsOutstanding.first, now - oldest.sentAt > keepaliveNanoseconds {
            return end(.unresponsive(keepalive))
        }
        if pingsOutstanding.isEmpty, now - lastReceived >= keepaliveNanoseconds, connection.state == .open {
            _ = sendPing()
            writeQueued()
        }
        scheduleLivenessCheck()
    }

    private func end(_ end: End) {
        guard !ended else { return }
        ended = true
        if let livenessTimer { loop.cancel(livenessTimer) }
        if let closeTimer { loop.cancel(closeTimer) }
        loop.unregister(self)
        stream?.close()
        stream = nil
        pingsOutstanding.removeAll()
        handlers?.ended(end)
    }
}
