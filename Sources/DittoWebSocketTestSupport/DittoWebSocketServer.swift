import Foundation
#if canImport(Glibc)
import Glibc
#endif
import MosquittoTestSupport
import Synchronization
import WebSocketCodec

/// A stand-in for Ditto's gateway endpoint `/ws/2` on 127.0.0.1, for tests of a WebSocket client of Ditto.
///
/// What it plays, each from Ditto's sources (paths in the eclipse-ditto/ditto repository):
/// - authentication at the upgrade, HTTP Basic (Ditto's nginx, `basic-auth.md`) or a bearer token in the
///   `Authorization` header or the `access_token` parameter (`WebSocketJwtExtractor`); anything else gets 401;
/// - the plain-text control messages of `ProtocolMessageType`, parsed as `ProtocolMessageExtractor` does and
///   answered with `<NAME>:ACK` (`WebSocketRoute.streamingAckToString`); a parameter without `=`, a bad
///   `%` escape or a repeated name fails Ditto's parsing and closes the session with 1011;
/// - `JWT-TOKEN?jwtToken=` (no ack): a valid token of the same subject extends the session, any other closes it
///   at once (`StreamingSessionActor.refreshWebSocketSession`); the session closes with 1000 when its token
///   expires (`startSessionTimeout`, `GatewayWebsocketSessionExpiredException` ending the stream);
/// - `declared-acks` taken by another subscriber: a 409 `acknowledgement:label.not.unique` error frame, then a
///   close 1000 (`declareAcknowledgementLabels`, `AcknowledgementLabelNotUniqueException`), at the upgrade or
///   injected mid-session (``DittoWebSocketSession/rejectDeclaredAcknowledgementLabels()``);
/// - a text frame that is no control message and not JSON: a `json.invalid` error frame (`JsonParseException`);
/// - a ping after `keepAliveIdle` (30 s, gateway.conf `periodic-keep-alive-max-idle`) without a frame from the
///   client, and no timeout of a silent client;
/// - at most `outgoingBufferFrames` (200, gateway.conf `publisher.backpressure-buffer-size`) frames waiting for
///   the socket; what does not fit is dropped, `:ACK`s included;
/// - nothing read after its own close frame; a restart closes every session with 1011.
public final class DittoWebSocketServer: Sendable {
    public struct Options: Sendable {
        public var username: String
        public var password: String
        /// How long the client may stay silent before the server pings it.
        public var keepAliveIdle: Duration
        public var outgoingBufferFrames: Int
        public var maximumMessageSize: Int
        /// SO_SNDBUF of each session's socket: a small one lets a test fill the outgoing buffer quickly.
        public var socketSendBufferBytes: Int?

        public init(username: String = "ditto", password: String = "ditto", keepAliveIdle: Duration = .seconds(30),
                    outgoingBufferFrames: Int = 200, maximumMessageSize: Int = 1 << 20,
                    socketSendBufferBytes: Int? = nil) {
            self.username = username
            self.password = password
            self.keepAliveIdle = keepAliveIdle
            self.outgoingBufferFrames = outgoingBufferFrames
            self.maximumMessageSize = maximumMessageSize
            self.socketSendBufferBytes = socketSendBufferBytes
        }
    }

    struct Token {
        var subject: String
        var expiry: ContinuousClock.Instant
    }

    struct State {
        var sessions: [DittoWebSocketSession] = []
        var refusedUpgrades: [Int] = []
        var tokens: [String: Token] = [:]
        var labelsDeclaredElsewhere: Set<String> = []
        var acknowledgementsToDrop = 0
    }

    public let options: Options
    public var port: Int { listener.port }
    private let listener: LoopbackListener
    let state = Mutex(State())

    public var url: String { "ws://127.0.0.1:\(port)/ws/2" }

    /// Listens at once; sessions are served on threads of their own.
    public init(_ options: Options = Options()) throws {
        self.options = options
        listener = try LoopbackListener()
        // The accept thread holds the closure, and with it self, until stop() ends it.
        listener.start { [self] fd in serve(fd) }
    }

    /// Every session so far, in the order the upgrades arrived.
    public var sessions: [DittoWebSocketSession] { state.withLock { $0.sessions } }
    /// The HTTP statuses of refused upgrades (401 for bad credentials).
    public var refusedUpgrades: [Int] { state.withLock { $0.refusedUpgrades } }

    /// The `index`th session, once its upgrade was answered.
    public func session(_ index: Int, timeout: Duration = .seconds(5)) async throws -> DittoWebSocketSession {
        _ = await eventually(timeout: timeout, every: .milliseconds(10)) { self.sessions.count > index }
        guard let session = sessions.dropFirst(index).first else { throw TestFailure("no session #\(index) within \(timeout)") }
        return session
    }

    /// A bearer token the server accepts until `validFor` from now; a JWT-TOKEN with another token of the same
    /// subject extends a session to that token's expiry. It is shaped as a JWT (header, payload with `sub` and
    /// `exp`, signature; RFC 7519), as the bridge's config check requires of a token file; the server goes by its
    /// own table, not by the signature.
    public func issueToken(subject: String, validFor: Duration) -> String {
        func base64URL(_ bytes: some Sequence<UInt8>) -> String {
            Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
                .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        }
        let expiry = Int((Date().timeIntervalSince1970 + Double(validFor.components.seconds)
            + Double(validFor.components.attoseconds) / 1e18).rounded(.up))
        let claims: [String: Any] = ["sub": subject, "exp": expiry, "jti": UUID().uuidString]
        // A dictionary of strings and an integer always serialises.
        let payload = (try? JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys])) ?? Data()
        let token = base64URL(#"{"alg":"RS256","typ":"JWT"}"#.utf8) + "." + base64URL(payload) + "."
            + base64URL(withUnsafeBytes(of: UUID().uuid) { Array($0) })
        state.withLock { $0.tokens[token] = Token(subject: subject, expiry: .now + validFor) }
        return token
    }

    /// Labels another subscriber (a connection, another socket) has declared: sessions declaring them conflict.
    public func declareElsewhere(_ labels: [String]) {
        state.withLock { $0.labelsDeclaredElsewhere.formUnion(labels) }
    }

    /// The next `count` `START-SEND-*:ACK`s are lost, as Ditto loses frames that do not fit a session's buffer.
    public func dropAcknowledgements(_ count: Int) {
        state.withLock { $0.acknowledgementsToDrop += count }
    }

    /// Whether the `:ACK` about to be sent is one to lose (counting it).
    func takeAcknowledgementToDrop() -> Bool {
        state.withLock { state in
            guard state.acknowledgementsToDrop > 0 else { return false }
            state.acknowledgementsToDrop -= 1
            return true
        }
    }

    /// A gateway restart: every open session closes with 1011 at once; new upgrades are served as before.
    public func restart() {
        for session in sessions { session.closeNow(.internalError, reason: "service restart") }
    }

    /// Every open session's TCP connection ends without a close frame.
    public func dropAll() {
        for session in sessions { session.drop() }
    }

    /// Stops listening, drops every session and waits for the server's threads to end.
    public func stop() async {
        await listener.stop { dropAll() }
    }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        if var size = options.socketSendBufferBytes {
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        let deadline = ContinuousClock.now + .seconds(5)
        guard let request = try? Socket.readHead(fd, deadline: deadline) else { return }
        guard let upgrade = authenticate(request.head) else {
            state.withLock { $0.refusedUpgrades.append(401) }
            DittoUpgradeRequest.refuse(fd, deadline: deadline)
            return
        }
        guard upgrade.request.accept(fd, deadline: deadline) else { return }
        let session = DittoWebSocketSession(server: self, fd: fd, request: request.head, subject: upgrade.subject,
                                            expiry: upgrade.expiry, declaredLabels: upgrade.declaredLabels)
        let conflict = state.withLock { state in
            let taken = state.sessions.filter(\.isOpen).flatMap(\.declaredAcknowledgementLabels)
            state.sessions.append(session)
            return !state.labelsDeclaredElsewhere.union(taken).isDisjoint(with: upgrade.declaredLabels)
        }
        if conflict { session.rejectDeclaredAcknowledgementLabels() }
        session.run(initialBytes: request.rest)
    }

    struct Upgrade {
        var request: DittoUpgradeRequest
        var subject: String
        var expiry: ContinuousClock.Instant?
        var declaredLabels: [String]
    }

    /// The subject and token expiry of an acceptable upgrade request, nil for a refusal.
    private func authenticate(_ head: HTTPHead) -> Upgrade? {
        guard let request = DittoUpgradeRequest(head) else { return nil }
        let query = request.query
        // Ditto's docs write `declared-acks` comma-separated; WebSocketRoute also reads a JSON array.
        let declared = query["declared-acks"].map { value -> [String] in
            if let array = try? JSONSerialization.jsonObject(with: Data(value.utf8)) as? [String] { return array }
            return value.split(separator: ",").map(String.init)
        } ?? []
        let authorization = head.value(of: "Authorization")
        let basic = HTTPAuthorization.basic(username: options.username, password: options.password).headerValue
        if authorization == basic {
            return Upgrade(request: request, subject: "nginx:\(options.username)", expiry: nil, declaredLabels: declared)
        }
        let bearer = authorization.flatMap { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : nil } ?? query["access_token"]
        guard let bearer, let token = state.withLock({ $0.tokens[bearer] }), token.expiry > .now else { return nil }
        return Upgrade(request: request, subject: token.subject, expiry: token.expiry, declaredLabels: declared)
    }

    /// A token's subject and expiry, if the server issued it and it has not expired.
    func validToken(_ token: String) -> Token? {
        state.withLock { $0.tokens[token] }.flatMap { $0.expiry > .now ? $0 : nil }
    }
}
