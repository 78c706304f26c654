import BridgeConfig
import DequeModule
import Logging
import MQTT
import Mosquitto
import WebSocketClient
import WebSocketCodec

/// The loop-thread face of ``WebSocketDittoSide`` (``DittoTransport``): one Ditto Protocol message per text frame
/// on the session's socket, Ditto's frames to the pipelines, the session's `START-SEND-*` subscriptions and their
/// `:ACK`s, and the evidence that releases messages from the spool.
///
/// **Evidence.** A frame written to the socket is not a frame Ditto has read, and Ditto acknowledges nothing of its
/// own for live events. Frames on a WebSocket are ordered, so a pong to a ping sent after a run of frames shows
/// that Ditto's side read all of them: every message is covered by the next ping, one ping is out at a time, and
/// its pong completes what it covers with ``DittoSendOutcome/taken``. Under load one ping covers everything sent
/// in one round trip; at low rates a ping waits up to ``evidenceDelay`` for more messages to cover. When the
/// session ends, what no pong covered completes with ``DittoSendOutcome/unconfirmed`` and the spool sends it again
/// on the next session: at least once, and a duplicate only of messages Ditto read but whose pong was lost with
/// the connection.
final class WebSocketDittoTransport: DittoTransport {
    private let side: WebSocketDittoSide
    private var maxInflight: Int
    private var rateLimit: RateLimit?
    private var subscriptions: [WebSocketSubscription]
    private var handlers: Handlers?
    private var session: Session?
    /// The open session's URL, for the log of what it delivers.
    private var source = ""

    private struct Handlers {
        var message: (DittoDelivery) -> Void
        var publishCompleted: (UplinkToken, DittoSendOutcome) -> Void
        var capacityAvailable: () -> Void
    }

    /// One open session: its channel, what it sent and what covers that, its subscriptions' acknowledgements.
    private final class Session {
        let channel: WebSocketChannel
        let ended: (WebSocketChannel.End, Bool) -> Void
        /// Sent and not confirmed by a pong, oldest first.
        var sent = Deque<UplinkToken>()
        /// Messages sent on this session so far, and how many a pong confirmed.
        var sentCount = 0
        var confirmedCount = 0
        /// Evidence pings out: the ping's number and the `sentCount` it covers.
        var pings = Deque<(sequence: UInt64, covers: Int)>()
        /// `START-SEND-*:ACK`s still awaited.
        var awaitingAcknowledgements: Set<String> = []
        var acknowledgementTimer: MQTTEventLoop.TimerID?
        /// Ditto refused the declared labels (409 `acknowledgement:label.not.unique`); it closes the session next.
        var labelConflict = false
        /// The last time `canPublishNow` said no, so that `capacityAvailable` follows when it turns yes.
        var refused = false
        /// A timer asks again once the rate limit lets the next message go.
        var capacityCheckArmed = false
        /// A timer sends the evidence ping for messages sent while no ping was out.
        var evidenceTimerArmed = false

        init(channel: WebSocketChannel, ended: @escaping (WebSocketChannel.End, Bool) -> Void) {
            self.channel = channel
            self.ended = ended
        }
    }

    /// How long a `START-SEND-*` waits for its `:ACK` before it is sent again: Ditto drops frames, `:ACK`s
    /// included, that do not fit the session's buffer.
    static let acknowledgementTimeout = Duration.seconds(5)

    /// How long a message sent while no ping is out waits for the ping that covers it, unless `evidenceBatch`
    /// messages (or `max-inflight`) wait first. A ping right away would cover that message alone at low rates,
    /// and its pong would wake the loop once per message; meanwhile the next messages join it. Under load a pong
    /// finds more messages sent and the next ping follows at once.
    static let evidenceDelay = Duration.milliseconds(5)
    static let evidenceBatch = 64

    init(side: WebSocketDittoSide, connection: DittoWebSocketConnection, session: WebSocketDittoSide.WebSocketSession) {
        self.side = side
        maxInflight = connection.maxInflight
        rateLimit = connection.rateLimit.map(RateLimit.init(perSecond:))
        subscriptions = session.subscriptions
    }

    var isConnected: Bool { session?.channel.isOpen ?? false }

    var canPublishNow: Bool {
        guard let session, session.channel.isWritable, session.sent.count < maxInflight,
              rateLimit?.allowsNow() ?? true
        else {
            session?.refused = true
            if let wait = rateLimit?.wait, let session, !session.capacityCheckArmed { scheduleCapacityCheck(after: wait, session) }
            return false
        }
        return true
    }

    var publishesInFlight: Int { session?.sent.count ?? 0 }

    func setHandlers(message: @escaping (DittoDelivery) -> Void,
                     publishCompleted: @escaping (UplinkToken, DittoSendOutcome) -> Void,
                     capacityAvailable: @escaping () -> Void) {
        handlers = Handlers(message: message, publishCompleted: publishCompleted, capacityAvailable: capacityAvailable)
        side.slot.value.transport = self
    }

    func apply(_ configuration: BridgeConfiguration) {
        // The side applies connection settings with a new session; these take effect for the next message.
        guard let connection = configuration.connections.ditto.webSocket else { return }
        maxInflight = connection.maxInflight
        if connection.rateLimit != rateLimit?.perSecond { rateLimit = connection.rateLimit.map(RateLimit.init(perSecond:)) }
    }

    func connectionReplaced() {
        // The side ended the old session before the data plane took over; the next one starts from nothing.
    }

    func publish(_ payload: [UInt8], to address: String, properties: PublishProperties,
                 token: UplinkToken) -> DittoSendOutcome? {
        guard let session, session.channel.isOpen else { return .unconfirmed }
        guard payload.withUnsafeBytes({ session.channel.sendText($0) }) else { return .unconfirmed }
        rateLimit?.take()
        session.sent.append(token)
        session.sentCount += 1
        if session.pings.isEmpty {
            if session.sent.count >= min(Self.evidenceBatch, maxInflight) {
                coverWithPing(session)
            } else if !session.evidenceTimerArmed {
                scheduleEvidencePing(session)
            }
        }
        return nil
    }

    // MARK: sessions

    /// Takes over the socket of a new session: subscribes, then reads. `ended` runs once, when it ends, with whether
    /// Ditto refused the declared labels.
    func attach(_ established: WebSocketEstablished, url: String, subscriptions: [WebSocketSubscription],
                keepalive: Duration, ended: @escaping (WebSocketChannel.End, Bool) -> Void) {
        self.subscriptions = subscriptions
        source = url
        let channel = WebSocketChannel(stream: established.stream, leftover: established.leftover, loop: side.loop,
                                       keepalive: keepalive)
        let session = Session(channel: channel, ended: ended)
        self.session = session
        channel.start(WebSocketChannel.Handlers(
            text: { [unowned self, unowned session] text in received(text, on: session) },
            pong: { [unowned self, unowned session] sequence in confirmed(through: sequence, on: session) },
            writable: { [unowned self] in handlers?.capacityAvailable() },
            ended: { [unowned self, unowned session] end in sessionEnded(session, end) }))
        subscribe(subscriptions, on: session, from: [])
        handlers?.capacityAvailable()
    }

    /// Changes the subscriptions of the open session (a reload).
    func subscribe(_ new: [WebSocketSubscription]) {
        let old = subscriptions
        subscriptions = new
        guard let session else { return }
        subscribe(new, on: session, from: old)
    }

    /// Closes the open session with a normal close; the side's run loop sees it end.
    func endSession(reason: String) {
        session?.channel.close(.normalClosure, reason: reason)
    }

    /// Sends a refreshed bearer token: Ditto moves the session's expiry when the token's authorization context is the
    /// session's (it answers nothing) and closes the session otherwise.
    func refreshToken(_ token: String) {
        guard let session, session.channel.isOpen else { return }
        session.channel.sendText("JWT-TOKEN?jwtToken=" + token)
    }

    private func subscribe(_ new: [WebSocketSubscription], on session: Session, from old: [WebSocketSubscription]) {
        for stopped in old where !new.contains(where: { $0.kind == stopped.kind }) {
            session.channel.sendText(stopped.stopMessage)
            session.awaitingAcknowledgements.remove(stopped.acknowledgement)
        }
        for subscription in new where !old.contains(subscription) {
            session.channel.sendText(subscription.startMessage)
            session.awaitingAcknowledgements.insert(subscription.acknowledgement)
        }
        if session.awaitingAcknowledgements.isEmpty {
            side.subscribed()
        } else {
            awaitAcknowledgements(session)
        }
    }

    private func awaitAcknowledgements(_ session: Session) {
        if let timer = session.acknowledgementTimer { side.loop.cancel(timer) }
        session.acknowledgementTimer = side.loop.schedule(at: .now + Self.acknowledgementTimeout) { [weak self, weak session] in
            guard let self, let session, self.session === session, !session.awaitingAcknowledgements.isEmpty else { return }
            // Ditto dropped the `:ACK` (or the request): asking again is harmless, a repeated START replaces the
            // subscription.
            for subscription in subscriptions where session.awaitingAcknowledgements.contains(subscription.acknowledgement) {
                session.channel.sendText(subscription.startMessage)
            }
            side.acknowledgementMissing(session.awaitingAcknowledgements.sorted())
            awaitAcknowledgements(session)
        }
    }

    private func received(_ text: String, on session: Session) {
        if text.utf8.first == UInt8(ascii: "{") {
            let payload = Array(text.utf8)
            if Self.isLabelConflict(payload) {
                session.labelConflict = true
                side.labelConflict(text)
                return
            }
            handlers?.message(DittoDelivery(payload: payload, replyAddress: nil, source: source))
        } else if session.awaitingAcknowledgements.remove(text) != nil {
            guard session.awaitingAcknowledgements.isEmpty else { return }
            if let timer = session.acknowledgementTimer { side.loop.cancel(timer) }
            side.subscribed()
        } else if !text.hasSuffix(":ACK") {
            side.unexpectedText(text)
        }
    }

    /// Ditto's 409 `acknowledgement:label.not.unique`: another subscriber declared one of the session's labels.
    static func isLabelConflict(_ payload: [UInt8]) -> Bool {
        let needle = Array("acknowledgement:label.not.unique".utf8)
        guard payload.count < 4096, payload.count >= needle.count else { return false }
        return payload.withUnsafeBufferPointer { bytes in
            (0...(bytes.count - needle.count)).contains { start in
                bytes[start] == needle[0] && needle.indices.allSatisfy { bytes[start + $0] == needle[$0] }
            }
        }
    }

    private func coverWithPing(_ session: Session) {
        guard session.sentCount > (session.pings.last?.covers ?? session.confirmedCount),
              let sequence = session.channel.sendPing()
        else { return }
        session.pings.append((sequence, session.sentCount))
    }

    private func scheduleEvidencePing(_ session: Session) {
        session.evidenceTimerArmed = true
        side.loop.schedule(at: .now + Self.evidenceDelay) { [weak self, weak session] in
            session?.evidenceTimerArmed = false
            guard let self, let session, self.session === session, session.pings.isEmpty else { return }
            coverWithPing(session)
        }
    }

    private func confirmed(through sequence: UInt64, on session: Session) {
        var covered: Int?
        while let first = session.pings.first, first.sequence <= sequence {
            covered = first.covers
            session.pings.removeFirst()
        }
        guard let covered else { return }
        while session.confirmedCount < covered, let token = session.sent.popFirst() {
            session.confirmedCount += 1
            handlers?.publishCompleted(token, .taken)
        }
        if session.sentCount > covered { coverWithPing(session) }
        if session.refused, canPublishNow {
            session.refused = false
            handlers?.capacityAvailable()
        }
    }

    private func scheduleCapacityCheck(after wait: Duration, _ session: Session) {
        session.capacityCheckArmed = true
        side.loop.schedule(at: .now + wait) { [weak self, weak session] in
            session?.capacityCheckArmed = false
            guard let self, let session, self.session === session, session.refused, canPublishNow else { return }
            session.refused = false
            handlers?.capacityAvailable()
        }
    }

    private func sessionEnded(_ session: Session, _ end: WebSocketChannel.End) {
        if let timer = session.acknowledgementTimer { side.loop.cancel(timer) }
        if self.session === session { self.session = nil }
        let unconfirmed = session.sent
        session.sent.removeAll()
        for token in unconfirmed { handlers?.publishCompleted(token, .unconfirmed) }
        session.ended(end, session.labelConflict)
    }
}

/// A token bucket: at most `perSecond` messages a second, in bursts of a tenth of that.
struct RateLimit {
    let perSecond: Int
    private var tokens: Double
    private var refilledAt: Int64
    private let burst: Double

    init(perSecond: Int) {
        self.perSecond = perSecond
        burst = max(1, Double(perSecond) / 10)
        tokens = burst
        refilledAt = MQTTEventLoop.monotonicNanoseconds()
    }

    mutating func allowsNow() -> Bool {
        refill()
        return tokens >= 1
    }

    mutating func take() {
        tokens -= 1
    }

    /// How long until the next message may go.
    var wait: Duration {
        let missing = max(0, 1 - tokens)
        return .nanoseconds(Int64(missing / Double(perSecond) * 1e9) + 1)
    }

    private mutating func refill() {
        let now = MQTTEventLoop.monotonicNanoseconds()
        tokens = min(burst, tokens + Double(now - refilledAt) * Double(perSecond) / 1e9)
        refilledAt = now
    }
}
