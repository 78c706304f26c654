import Foundation
#if canImport(Glibc)
import Glibc
#endif
import MosquittoTestSupport
import Synchronization
public import WebSocketCodec

/// Ditto's streaming types, as the control messages name them (Ditto's `ProtocolMessageType`).
public enum DittoStreamingType: String, Sendable, CaseIterable {
    case events = "EVENTS"
    case messages = "MESSAGES"
    case liveCommands = "LIVE-COMMANDS"
    case liveEvents = "LIVE-EVENTS"
    case policyAnnouncements = "POLICY-ANNOUNCEMENTS"

    public var startMessage: String { "START-SEND-\(rawValue)" }
    public var stopMessage: String { "STOP-SEND-\(rawValue)" }
}

/// An acknowledged `START-SEND-*`, with its parameters decoded.
public struct DittoSubscription: Equatable, Sendable {
    public var type: DittoStreamingType
    public var namespaces: [String]
    public var filter: String?

    public init(type: DittoStreamingType, namespaces: [String] = [], filter: String? = nil) {
        self.type = type
        self.namespaces = namespaces
        self.filter = filter
    }
}

/// One client session of ``DittoWebSocketServer``: what the client sent, and the test's handles on what the
/// server sends or does next. Safe to use from any thread.
public final class DittoWebSocketSession: Sendable {
    enum Outgoing {
        case text(String)
        case close(WebSocketCloseCode, String)
    }

    struct State {
        var protocolMessages: [String] = []
        var controlMessages: [String] = []
        var subscriptions: [DittoStreamingType: DittoSubscription] = [:]
        var outgoing: [Outgoing] = []
        var closeNow: (WebSocketCloseCode, String)?
        var dropRequested = false
        var droppedFrames = 0
        var framesSent = 0
        var pingsSent = 0
        var pongsReceived = 0
        var pingsReceived = 0
        /// The server stopped reading: a hung gateway whose TCP connection stays up.
        var stalled = false
        var closeSent: WebSocketCloseCode?
        var closeReceived: WebSocketCloseCode?
        var framesIgnoredAfterClose = 0
        var isOpen = true
        var expiry: ContinuousClock.Instant?
    }

    /// The upgrade request as it arrived (request line and headers).
    public let request: HTTPHead
    /// Who the server authenticated: `nginx:<user>` for Basic, the token's subject for a bearer token.
    public let subject: String
    public let declaredAcknowledgementLabels: [String]
    private let server: DittoWebSocketServer
    private let fd: Int32
    private let wake: (read: Int32, write: Int32)
    private let state: Mutex<State>

    init(server: DittoWebSocketServer, fd: Int32, request: HTTPHead, subject: String,
         expiry: ContinuousClock.Instant?, declaredLabels: [String]) {
        self.server = server
        self.fd = fd
        self.request = request
        self.subject = subject
        declaredAcknowledgementLabels = declaredLabels
        var pipeEnds: [Int32] = [0, 0]
        pipe(&pipeEnds)
        Socket.setNonBlocking(pipeEnds[0])
        Socket.setNonBlocking(pipeEnds[1])
        wake = (pipeEnds[0], pipeEnds[1])
        var initial = State()
        initial.expiry = expiry
        state = Mutex(initial)
    }

    deinit {
        Glibc.close(wake.read)
        Glibc.close(wake.write)
    }

    /// The Ditto Protocol JSON frames the client sent, in order (acknowledgements and responses included).
    public var protocolMessages: [String] { state.withLock { $0.protocolMessages } }
    /// The control messages the client sent (`START-SEND-*`, `STOP-SEND-*`, `JWT-TOKEN?...`), in order.
    public var controlMessages: [String] { state.withLock { $0.controlMessages } }
    /// The subscriptions the server acknowledged (their `:ACK` queued; it can still be dropped).
    public var subscriptions: [DittoStreamingType: DittoSubscription] { state.withLock { $0.subscriptions } }
    /// Frames dropped because the outgoing buffer was full.
    public var droppedFrames: Int { state.withLock { $0.droppedFrames } }
    /// Frames waiting in the outgoing buffer.
    public var queuedFrames: Int { state.withLock { $0.outgoing.count } }
    /// Text frames taken from the outgoing buffer and encoded for the socket.
    public var framesSent: Int { state.withLock { $0.framesSent } }
    public var pingsSent: Int { state.withLock { $0.pingsSent } }
    public var pongsReceived: Int { state.withLock { $0.pongsReceived } }
    /// Pings the client sent (each answered with a pong unless the session is stalled).
    public var pingsReceived: Int { state.withLock { $0.pingsReceived } }
    /// The code of the server's close frame, once sent.
    public var closeSent: WebSocketCloseCode? { state.withLock { $0.closeSent } }
    /// The code of the client's close frame, once received.
    public var closeReceived: WebSocketCloseCode? { state.withLock { $0.closeReceived } }
    /// Data frames that arrived after the server's close frame and were not read.
    public var framesIgnoredAfterClose: Int { state.withLock { $0.framesIgnoredAfterClose } }
    /// Whether the TCP connection is still up.
    public var isOpen: Bool { state.withLock { $0.isOpen } }

    /// Queues a text frame for the client (a live command, a message, a response); false when the outgoing
    /// buffer was full and the frame was dropped, as Ditto drops it.
    @discardableResult
    public func send(_ text: String) -> Bool {
        let queued = state.withLock { state in
            guard state.outgoing.count < server.options.outgoingBufferFrames else {
                state.droppedFrames += 1
                return false
            }
            state.outgoing.append(.text(text))
            return true
        }
        wakeUp()
        return queued
    }

    /// Closes after what is queued, with `code` and `reason`.
    public func close(_ code: WebSocketCloseCode, reason: String = "") {
        state.withLock { $0.outgoing.append(.close(code, reason)) }
        wakeUp()
    }

    /// Closes at once, dropping what is queued: Ditto's stream failing (restart, expiry, invalid token).
    public func closeNow(_ code: WebSocketCloseCode, reason: String = "") {
        state.withLock { $0.closeNow = $0.closeNow ?? (code, reason) }
        wakeUp()
    }

    /// Another subscriber holds a declared label (at connect time, or found when gateway nodes sync): a 409
    /// `acknowledgement:label.not.unique` error frame, then close 1000.
    public func rejectDeclaredAcknowledgementLabels() {
        let error = DittoErrorFrame.make(status: 409, error: "acknowledgement:label.not.unique",
                                         message: "One or more declared acknowledgement labels are taken by other subscribers.",
                                         description: "Please ensure all other subscribers with the declared acknowledgement labels are offline.")
        state.withLock { $0.outgoing += [.text(error), .close(.normalClosure, "")] }
        wakeUp()
    }

    /// Stops reading from the socket and answering, with the TCP connection up: a hung gateway, or a half-open
    /// connection whose far end is gone. What the client sends from now on is never read.
    public func stall() {
        state.withLock { $0.stalled = true }
        wakeUp()
    }

    /// Ends the TCP connection without a close frame (a network failure, a crashed gateway).
    public func drop() {
        state.withLock { $0.dropRequested = true }
        wakeUp()
    }

    private func wakeUp() {
        var byte: UInt8 = 1
        _ = write(wake.write, &byte, 1)
    }

    // MARK: The session's thread

    /// Linux's POLLRDHUP (the peer shut down its writing side), which Glibc's module leaves out without _GNU_SOURCE.
    private static let pollReadHangUp: Int16 = 0x2000

    func run(initialBytes: [UInt8]) {
        var connection = WebSocketConnection(role: .server, maximumMessageSize: server.options.maximumMessageSize)
        connection.decoder.append(initialBytes)
        var lastReceived = ContinuousClock.now
        var lastPing = ContinuousClock.now
        var closeDeadline: ContinuousClock.Instant?
        defer {
            state.withLock { $0.isOpen = false }
            shutdown(fd, Int32(SHUT_RDWR))
        }
        while true {
            let now = ContinuousClock.now
            guard step(&connection, now: now, lastReceived: lastReceived, lastPing: &lastPing) else { return }
            if connection.state != .open, closeDeadline == nil { closeDeadline = now + .seconds(1) }
            if let closeDeadline, now >= closeDeadline { return }
            if connection.state == .closed, !connection.encoder.hasPendingBytes { return }

            let idle = server.options.keepAliveIdle - (now - max(lastReceived, lastPing))
            let timeout = Int32(max(1, min(200, idle / .milliseconds(1))))
            let stalled = state.withLock { $0.stalled }
            if stalled {
                // Reads nothing, but notices the client's close: the gateway's end of TCP sees the FIN.
                let ready = Socket.wait(fd, for: Self.pollReadHangUp, wake: wake.read, milliseconds: timeout)
                if ready & (Self.pollReadHangUp | Int16(POLLHUP | POLLERR)) != 0 { return }
                continue
            }
            let events = Int16(POLLIN) | (connection.encoder.hasPendingBytes ? Int16(POLLOUT) : 0)
            let ready = Socket.wait(fd, for: events, wake: wake.read, milliseconds: timeout)
            if ready & Int16(POLLOUT) != 0 {
                guard let written = Socket.writeSome(fd, connection.encoder.pendingBytes) else { return }
                connection.encoder.consume(written)
            }
            if ready & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                let count = connection.decoder.readIntoBuffer { Socket.readSome(fd, into: $0) ?? -1 }
                guard count >= 0 else { return }
                if count > 0 { lastReceived = .now }
                receive(&connection)
            }
        }
    }

    /// Applies the test's requests and the timers; false when the connection must end at once.
    private func step(_ connection: inout WebSocketConnection, now: ContinuousClock.Instant,
                      lastReceived: ContinuousClock.Instant, lastPing: inout ContinuousClock.Instant) -> Bool {
        let (drop, closeNow, expired) = state.withLock { state in
            (state.dropRequested, state.closeNow, state.expiry.map { now >= $0 } ?? false)
        }
        if drop { return false }
        if let (code, reason) = closeNow ?? (expired ? (.normalClosure, "JWT expired") : nil), connection.state == .open {
            state.withLock { $0.outgoing.removeAll() }
            sendClose(&connection, code, reason)
        }
        while connection.state == .open, !connection.encoder.hasPendingBytes,
              let next = state.withLock({ $0.outgoing.isEmpty ? nil : $0.outgoing.removeFirst() }) {
            switch next {
            case .text(let text):
                connection.sendText(text)
                state.withLock { $0.framesSent += 1 }
            case .close(let code, let reason):
                sendClose(&connection, code, reason)
            }
        }
        if connection.state == .open, now - lastReceived >= server.options.keepAliveIdle,
           now - lastPing >= server.options.keepAliveIdle {
            connection.sendPing()
            lastPing = now
            state.withLock { $0.pingsSent += 1 }
        }
        return true
    }

    private func sendClose(_ connection: inout WebSocketConnection, _ code: WebSocketCloseCode, _ reason: String) {
        connection.close(code, reason: reason)
        state.withLock { $0.closeSent = code }
    }

    /// Handles every complete frame received, up to the end of the connection.
    private func receive(_ connection: inout WebSocketConnection) {
        while true {
            let event: WebSocketEvent?
            do {
                event = try connection.nextEvent()
            } catch {
                state.withLock { $0.closeSent = error.closeCode }
                return
            }
            state.withLock { $0.framesIgnoredAfterClose = connection.droppedAfterClose }
            switch event {
            case nil: return
            case .text(let text): handle(text, &connection)
            case .binary: break  // Ditto reads text frames only (WebSocketRoute's strictify flow)
            case .ping: state.withLock { $0.pingsReceived += 1 }
            case .pong: state.withLock { $0.pongsReceived += 1 }
            case .closed(let code, _):
                state.withLock { $0.closeReceived = code }
                return
            }
        }
    }

    private func handle(_ text: String, _ connection: inout WebSocketConnection) {
        guard let control = DittoControlMessage(text) else {
            if (try? JSONSerialization.jsonObject(with: Data(text.utf8))) is [String: Any] {
                state.withLock { $0.protocolMessages.append(text) }
            } else {
                send(DittoErrorFrame.make(status: 400, error: "json.invalid", message: "Failed to parse JSON string '\(text)'!",
                                          description: "Check if the JSON was valid (e.g. on https://jsonlint.com) and if it was in required format."))
            }
            return
        }
        state.withLock { $0.controlMessages.append(text) }
        guard let parameters = control.parameters else {
            // Ditto's ProtocolMessageExtractor throws on these; the exception fails the stream: close 1011.
            state.withLock { $0.outgoing.removeAll() }
            sendClose(&connection, .internalError, "malformed control message")
            return
        }
        switch control.kind {
        case .start(let type):
            let namespaces = parameters["namespaces"].map { $0.split(separator: ",").map(String.init) } ?? []
            state.withLock {
                $0.subscriptions[type] = DittoSubscription(type: type, namespaces: namespaces, filter: parameters["filter"])
            }
            if server.takeAcknowledgementToDrop() {
                state.withLock { $0.droppedFrames += 1 }
            } else {
                send(type.startMessage + ":ACK")
            }
        case .stop(let type):
            _ = state.withLock { $0.subscriptions.removeValue(forKey: type) }
            send(type.stopMessage + ":ACK")
        case .jwt:
            if let token = parameters["jwtToken"].flatMap(server.validToken), token.subject == subject {
                state.withLock { $0.expiry = token.expiry }
            } else {
                state.withLock { $0.outgoing.removeAll() }
                sendClose(&connection, .normalClosure, "invalid JWT")
            }
        }
    }
}

/// A control message as Ditto's `ProtocolMessageExtractor` reads it: the first identifier the text starts with,
/// then `?name=value&...`, each side URL-decoded (`+` is a space, as in Java's `URLDecoder`).
struct DittoControlMessage {
    enum Kind {
        case start(DittoStreamingType)
        case stop(DittoStreamingType)
        case jwt
    }

    var kind: Kind
    /// nil when Ditto's parsing throws: a parameter without `=`, a bad escape, a name given twice.
    var parameters: [String: String]?

    init?(_ text: String) {
        let kinds: [(String, Kind)] = [("JWT-TOKEN", .jwt)]
            + DittoStreamingType.allCases.flatMap { [($0.startMessage, .start($0)), ($0.stopMessage, .stop($0))] }
        guard let (_, kind) = kinds.first(where: { text.hasPrefix($0.0) }) else { return nil }
        self.kind = kind
        guard let question = text.firstIndex(of: "?") else {
            parameters = [:]
            return
        }
        var parameters: [String: String]? = [:]
        var pairs = text[text.index(after: question)...].split(separator: "&", omittingEmptySubsequences: false)
        // Java's String.split drops trailing empty strings, except that an empty input gives one.
        while pairs.count > 1, pairs.last?.isEmpty == true { pairs.removeLast() }
        for pair in pairs {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let decode = { (part: Substring) in QueryParameter.percentDecoded(part.replacingOccurrences(of: "+", with: " ")) }
            guard parts.count == 2, let name = decode(parts[0]), let value = decode(parts[1]),
                  parameters?[name] == nil
            else {
                parameters = nil
                break
            }
            parameters?[name] = value
        }
        self.parameters = parameters
    }
}

/// A Ditto Protocol error message as the gateway sends it for an error without an entity (Ditto's
/// `protocol-specification-errors.md`): topic `_/_/things/twin/errors`, the error's JSON as value.
enum DittoErrorFrame {
    static func make(status: Int, error: String, message: String, description: String) -> String {
        let frame: [String: Any] = [
            "topic": "_/_/things/twin/errors", "headers": [String: String](), "path": "/", "status": status,
            "value": ["status": status, "error": error, "message": message, "description": description],
        ]
        let data = (try? JSONSerialization.data(withJSONObject: frame, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
