import BridgeConfig
import Foundation
import Logging
import MQTT
import Mosquitto
import Synchronization
import WebSocketClient
import WebSocketCodec

/// Ditto's side over Ditto's WebSocket binding `/ws/2` (``DittoSide``): connects (off the loop, on a thread of its
/// own: name resolution, TCP, the proxy tunnel, TLS and the upgrade block), hands the open socket to its
/// ``WebSocketDittoTransport`` on the loop, waits for the session to end and connects again with the config's
/// back-off. Ditto's sessions hold nothing across a reconnect: the transport subscribes again every time.
final class WebSocketDittoSide: DittoSide {
    /// The URL in use (a reload may change it).
    var endpoint: String { state.withLock { $0.connection.url } }
    let loop: MQTTEventLoop
    private let readiness: Readiness
    private let metrics: BridgeMetrics
    private let logger: Logger
    private let state: Mutex<State>
    /// Where the side finds its transport on the loop (the transport puts itself there).
    let slot: LoopBound<TransportSlot>

    private struct State {
        var connection: DittoWebSocketConnection
        var session: WebSocketSession
        var closed = false
        /// A reload moves the side to new settings: no reconnect until the data plane took over.
        var paused = false
    }

    /// What a session needs besides the connection: the subscriptions and the labels it declares.
    struct WebSocketSession: Equatable {
        var subscriptions: [WebSocketSubscription]
        var declaredAcknowledgementLabels: [String]
    }

    /// The loop-confined reference from the side to its transport.
    final class TransportSlot {
        weak var transport: WebSocketDittoTransport?
    }

    init(_ environment: DittoSideEnvironment, connection: DittoWebSocketConnection) throws {
        loop = environment.loop
        readiness = environment.readiness
        metrics = environment.metrics
        var logger = environment.logger
        logger[metadataKey: "ditto.transport"] = "websocket"
        self.logger = logger
        state = Mutex(State(connection: connection, session: Self.session(environment.configuration)))
        slot = LoopBound(TransportSlot(), loop: environment.loop)
    }

    func makeTransport() -> sending any DittoTransport {
        let session = state.withLock { $0.session }
        return WebSocketDittoTransport(side: self, connection: state.withLock { $0.connection }, session: session)
    }

    /// What the configuration subscribes to and declares.
    static func session(_ configuration: BridgeConfiguration) -> WebSocketSession {
        let namespaces = configuration.connections.ditto.webSocket?.namespaces ?? []
        var kinds: [WebSocketSubscription.Kind] = []
        if configuration.downlink.contains(where: { if case .messages = $0.match { true } else { false } }) {
            kinds.append(.messages)
        }
        if configuration.downlink.contains(where: { if case .commands = $0.match { true } else { false } }) {
            kinds.append(.liveCommands)
        }
        return WebSocketSession(subscriptions: kinds.map { WebSocketSubscription(kind: $0, namespaces: namespaces) },
                                declaredAcknowledgementLabels: configuration.acks.all)
    }

    // MARK: run

    func run() async {
        var failures = 0
        while true {
            guard let (connection, session) = await nextAttempt() else { return }
            let started = ContinuousClock.now
            let end: SessionEnd
            let request = Self.endpoint(connection, session)
            switch await Self.connect(request.map(\.endpoint), loop: loop) {
            case .failure(let error):
                metrics.increment("\(Readiness.dittoSide).connect-failed")
                logger.error("cannot connect to Ditto's WebSocket endpoint", metadata: [
                    "ditto.url": "\(connection.url)", "error": "\(error)",
                ])
                end = .failed
            case .success(let established) where state.withLock({ $0.closed }):
                // Closed while connecting: the socket is not used.
                await loop.submit { established.value.stream.close() }
                return
            case .success(let established):
                metrics.increment("\(Readiness.dittoSide).connected")
                logger.info("connected to Ditto's WebSocket endpoint", metadata: ["ditto.url": "\(connection.url)"])
                let token = try? request.get().token
                end = await attend(established, url: connection.url, session: session, token: token,
                                   keepalive: connection.keepalive)
                readiness.setConnected(Readiness.dittoSide, false)
                if state.withLock({ $0.closed }) {
                    logger.info("Ditto's WebSocket session closed", metadata: ["ditto.url": "\(connection.url)"])
                    return
                }
            }
            if case .session(let reason, let labelConflict) = end {
                metrics.increment("websocket.session-ended")
                if case .unresponsive = reason { metrics.increment("websocket.unresponsive") }
                logger.warning("Ditto's WebSocket session ended", metadata: [
                    "ditto.url": "\(connection.url)", "reason": "\(reason)",
                ])
                // A session that lasted resets the back-off; one that ended at once (refused labels, a token
                // Ditto rejects) counts as a failure, or the bridge would hammer Ditto.
                failures = labelConflict || ContinuousClock.now - started < .seconds(10) ? failures + 1 : 0
            } else {
                failures += 1
            }
            if failures > 0 { await backOff(failures: failures, policy: connection.reconnect) }
        }
    }

    private enum SessionEnd {
        case failed
        case session(WebSocketChannel.End, labelConflict: Bool)
    }

    /// The settings for the next connection, once the side may connect; nil once closed.
    private func nextAttempt() async -> (DittoWebSocketConnection, WebSocketSession)? {
        while true {
            let next = state.withLock { state -> (DittoWebSocketConnection, WebSocketSession)?? in
                if state.closed { return .some(nil) }
                return state.paused ? nil : (state.connection, state.session)
            }
            if let next { return next }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Sleeps the back-off for the `failures`-th failure in a row, waking early when the side closes.
    private func backOff(failures: Int, policy: ReconnectPolicy) async {
        var delay = policy.initial
        for _ in 1..<min(failures, 32) where delay < policy.maximum { delay *= 2 }
        let deadline = ContinuousClock.now + min(delay, policy.maximum)
        while ContinuousClock.now < deadline, !state.withLock({ $0.closed }) {
            try? await Task.sleep(for: min(.milliseconds(100), deadline - .now))
        }
    }

    /// Hands the open socket to the transport and waits for the session to end, meanwhile watching the token file.
    private func attend(_ established: LoopBound<WebSocketEstablished>, url: String, session: WebSocketSession,
                        token: (path: String, token: JSONWebToken)?, keepalive: Duration) async -> SessionEnd {
        let slot = self.slot
        let watcher = token.map { token in
            Task { await watchToken(token.path, sent: token.token, keepalive: keepalive) }
        }
        defer { watcher?.cancel() }
        return await withCheckedContinuation { (continuation: CheckedContinuation<SessionEnd, Never>) in
            loop.execute {
                let established = established.value
                guard let transport = slot.value.transport else {
                    established.stream.close()
                    return continuation.resume(returning: .session(.loopEnded, labelConflict: false))
                }
                transport.attach(established, url: url, subscriptions: session.subscriptions, keepalive: keepalive) { end, labelConflict in
                    continuation.resume(returning: .session(end, labelConflict: labelConflict))
                }
            }
        }
    }

    /// Re-reads the token file while the session lasts: a new token goes to Ditto as `JWT-TOKEN` at once, so that
    /// Ditto does not close the session when the one it has expires; a token about to expire with no new one in
    /// the file is logged once.
    private func watchToken(_ path: String, sent: JSONWebToken, keepalive: Duration) async {
        var sent = sent
        var warned = false
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            if Task.isCancelled { return }
            switch JSONWebToken.read(path) {
            case .failure(let error):
                if !warned { logger.error("cannot re-read the bearer token", metadata: ["error": "\(error)"]) }
                warned = true
            case .success(let token) where token != sent:
                sent = token
                warned = false
                let slot = self.slot
                loop.execute { slot.value.transport?.refreshToken(token.token.value) }
                metrics.increment("websocket.token-refreshed")
                logger.info("bearer token refreshed: sent to Ditto", metadata: [
                    "token.expires-in-seconds": "\(token.secondsLeft.map { "\(Int($0))" } ?? "unknown")",
                ])
            case .success(let token):
                let left = token.secondsLeft ?? .infinity
                if !warned, left < max(60, Double(keepalive.components.seconds) * 3) {
                    warned = true
                    logger.warning("the bearer token expires soon and its file has no new one: Ditto will close the session", metadata: [
                        "token.file": "\(path)", "token.expires-in-seconds": "\(Int(left))",
                    ])
                }
            }
        }
    }

    /// What the connector gets: the URL's endpoint, the credentials read now (a token file is read at every
    /// connect), and the labels to declare; with a bearer token, the token sent.
    static func endpoint(_ connection: DittoWebSocketConnection, _ session: WebSocketSession)
        -> Result<(endpoint: WebSocketEndpoint, token: (path: String, token: JSONWebToken)?), WebSocketDittoError>
    {
        var authorization: HTTPAuthorization?
        var sentToken: (path: String, token: JSONWebToken)?
        switch connection.authentication {
        case .none:
            break
        case .basic(let username, let password, _):
            authorization = .basic(username: username, password: password.value)
        case .bearer(let tokenFile):
            switch JSONWebToken.read(tokenFile) {
            case .success(let token):
                authorization = .bearer(token: token.token.value)
                sentToken = (tokenFile, token)
            case .failure(let error): return .failure(error)
            }
        }
        var query: [QueryParameter] = []
        if !session.declaredAcknowledgementLabels.isEmpty {
            query.append(QueryParameter("declared-acks", session.declaredAcknowledgementLabels.joined(separator: ",")))
        }
        let proxy = connection.proxy.map { proxy in
            WebSocketEndpoint.Proxy(
                host: proxy.host, port: proxy.port,
                authorization: proxy.username.map { .basic(username: $0, password: proxy.password?.value ?? "") })
        }
        let endpoint = WebSocketEndpoint(
            host: connection.host, port: connection.port, path: connection.path, query: query, tls: connection.tls,
            authorization: authorization, proxy: proxy, timeout: connection.connectTimeout)
        return .success((endpoint: endpoint, token: sentToken))
    }

    /// Connects on a thread of its own: every step before the first frame blocks.
    private static func connect(_ request: Result<WebSocketEndpoint, WebSocketDittoError>,
                                loop: MQTTEventLoop) async -> Result<LoopBound<WebSocketEstablished>, any Error> {
        let endpoint: WebSocketEndpoint
        switch request {
        case .success(let value): endpoint = value
        case .failure(let error): return .failure(error)
        }
        return await withCheckedContinuation { continuation in
            let thread = Thread {
                do {
                    let established = try WebSocketConnector.connect(endpoint)
                    continuation.resume(returning: .success(LoopBound(established, loop: loop)))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
            thread.name = "ditto ws connect"
            thread.start()
        }
    }

    // MARK: reload and close

    func reload(to new: BridgeConfiguration, from old: BridgeConfiguration,
                handover: DittoConnectionHandover) async -> [String] {
        guard let connection = new.connections.ditto.webSocket else { return [] }
        let session = Self.session(new)
        let (oldConnection, oldSession) = state.withLock { ($0.connection, $0.session) }
        let slot = self.slot
        if Self.upgradeSettings(connection) == Self.upgradeSettings(oldConnection),
           session.declaredAcknowledgementLabels == oldSession.declaredAcknowledgementLabels {
            // The transport applies the flow control (``DittoTransport/apply(_:)``); subscriptions change on the open
            // session.
            state.withLock {
                $0.connection = connection
                $0.session = session
            }
            guard session != oldSession else { return [] }
            await loop.submit { slot.value.transport?.subscribe(session.subscriptions) }
            return ["Ditto WebSocket subscriptions: \(session.subscriptions.map(\.startMessage))"]
        }
        // The connection's settings or the declared labels (fixed at the upgrade) changed: a new session.
        await handover.drain()
        state.withLock {
            $0.paused = true
            $0.connection = connection
            $0.session = session
        }
        await loop.submit { slot.value.transport?.endSession(reason: "the configuration changed") }
        await handover.takeOver()
        state.withLock { $0.paused = false }
        return ["Ditto-side connection changed: reconnected"]
    }

    // MARK: what the transport reports, on the loop

    /// Every `START-SEND-*` of the session is acknowledged: the side is ready.
    func subscribed() {
        readiness.setSubscribed(Readiness.dittoSide)
        logger.info("subscribed on Ditto's WebSocket session", metadata: [
            "ditto.subscriptions": "\(state.withLock { $0.session.subscriptions.map(\.startMessage) })",
        ])
    }

    func acknowledgementMissing(_ acknowledgements: [String]) {
        metrics.increment("websocket.subscribe-retried")
        logger.warning("no acknowledgement from Ditto in time: subscribing again", metadata: [
            "ditto.awaiting": "\(acknowledgements)",
        ])
    }

    func labelConflict(_ error: String) {
        metrics.increment("websocket.label-conflict")
        logger.error(
            "Ditto refused the declared acknowledgement labels: another subscriber declared one of them (an earlier session of this bridge keeps its labels until Ditto notices it is gone); Ditto closes the session and the bridge connects again with back-off",
            metadata: ["ditto.error": "\(error)"])
    }

    func unexpectedText(_ text: String) {
        metrics.increment("ditto.invalid")
        logger.warning("unexpected text frame from Ditto", metadata: ["ditto.frame": "\(text.prefix(200))"])
    }

    /// What a session is opened with: everything but what changes on an open one (subscriptions' namespaces,
    /// flow control).
    static func upgradeSettings(_ connection: DittoWebSocketConnection) -> DittoWebSocketConnection {
        var settings = connection
        settings.namespaces = []
        settings.rateLimit = nil
        settings.maxInflight = 0
        return settings
    }

    func close() async {
        state.withLock { $0.closed = true }
        let slot = self.slot
        await loop.submit { slot.value.transport?.endSession(reason: "the bridge stops") }
    }
}

/// One `START-SEND-*` subscription of a session.
struct WebSocketSubscription: Hashable {
    enum Kind: String {
        case messages = "MESSAGES"
        case liveCommands = "LIVE-COMMANDS"
    }

    var kind: Kind
    var namespaces: [String]

    private var parameters: String {
        namespaces.isEmpty ? "" : "?" + QueryParameter.queryString([QueryParameter("namespaces", namespaces.joined(separator: ","))])
    }

    var startMessage: String { "START-SEND-\(kind.rawValue)" + parameters }
    var stopMessage: String { "STOP-SEND-\(kind.rawValue)" }
    /// Ditto's answer: the protocol message's name (without parameters) and `:ACK`.
    var acknowledgement: String { "START-SEND-\(kind.rawValue):ACK" }
}

/// Why the WebSocket binding could not connect, besides the connector's own errors.
enum WebSocketDittoError: Error, CustomStringConvertible {
    case tokenFile(path: String, reason: String)

    var description: String {
        switch self {
        case .tokenFile(let path, let reason): "bearer token file \(path): \(reason)"
        }
    }
}

extension JSONWebToken {
    /// Reads the token file as `check` reads it: a file that holds no JWT is an error, not a token to send.
    static func read(_ path: String) -> Result<JSONWebToken, WebSocketDittoError> {
        guard let data = FileManager.default.contents(atPath: path) else {
            return .failure(.tokenFile(path: path, reason: "cannot be read"))
        }
        do {
            return .success(try JSONWebToken(parsing: String(decoding: data, as: UTF8.self)))
        } catch {
            return .failure(.tokenFile(path: path, reason: "does not hold a JWT: \(error)"))
        }
    }

    /// Seconds until ``expiration``; nil without one.
    var secondsLeft: Double? {
        expiration.map { Double($0) - Date().timeIntervalSince1970 }
    }
}
