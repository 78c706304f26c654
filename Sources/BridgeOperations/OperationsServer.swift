import BridgeConfig
import FlyingFox
import FlyingSocks
import Foundation
import Logging
import Prometheus
import ServiceLifecycle
import Synchronization

/// Whether the bridge can do its work right now, and if not, why.
///
/// `/ready` answers 200 when ``isReady``, else 503 with one reason per line, so a person reading
/// `curl -i` (or a Kubernetes event) sees which side is missing.
public struct Readiness: Sendable, Hashable, CustomStringConvertible {
    /// Short phrases such as `device broker: not connected`; empty when ready.
    public var reasons: [String]

    /// Ready when `reasons` is empty.
    public init(notReadyBecause reasons: [String]) {
        self.reasons = reasons
    }

    /// Both sides connected and subscribed.
    public static let ready = Readiness(notReadyBecause: [])

    /// Not ready, for the given reasons (at least one).
    public static func notReady(_ reason: String, _ more: String...) -> Readiness {
        Readiness(notReadyBecause: [reason] + more)
    }

    /// Whether `/ready` answers 200.
    public var isReady: Bool { reasons.isEmpty }

    public var description: String {
        isReady ? "ready" : "not ready: " + reasons.joined(separator: "; ")
    }
}

/// Why ``OperationsServer`` stopped before it was asked to.
public struct OperationsServerError: Error, Sendable, CustomStringConvertible {
    /// The address from the config.
    public var address: ListenAddress
    /// What the socket layer said.
    public var reason: String

    public var description: String {
        "the operations endpoint cannot listen on \(address): \(reason)"
            + " (operations.listen in the config file; is another process using the port?)"
    }
}

/// HTTP/1.1 endpoint for monitoring, as a swift-service-lifecycle `Service`:
///
/// - `GET /metrics`: the registry in Prometheus text format 0.0.4;
/// - `GET /health`: 200 `ok` while ``isAlive`` says so (the process and its event loop work), else 503;
/// - `GET /ready`: 200 `ready` or 503 `not ready: ...` from the ``Readiness`` closure the runtime provides.
///
/// Anything else is 404. Graceful shutdown closes the listening socket and the open connections.
/// Put it **first** in the `ServiceGroup` so it is shut down last and `/health` keeps answering while the
/// bridge drains.
public final class OperationsServer: Service, Sendable {
    /// Where it listens (from `operations.listen`).
    public let address: ListenAddress
    private let server: HTTPServer
    private let logger: Logger
    private let stopping: StoppingFlag

    /// Creates the server; nothing listens until ``run()``.
    ///
    /// - parameter readiness: called on every `/ready` request from a server task; must be cheap and must not
    ///   block (read an atomic or a mutex-protected snapshot).
    /// - parameter isAlive: called on every `/health` request; the default says the process answers HTTP, which
    ///   is what a container HEALTHCHECK needs. A runtime with an event loop can report a stalled loop here.
    /// - throws: ``OperationsServerError`` when `address` cannot be turned into a socket address.
    public init(
        address: ListenAddress,
        registry: PrometheusCollectorRegistry,
        logger: Logger,
        readiness: @escaping @Sendable () -> Readiness,
        isAlive: @escaping @Sendable () -> Bool = { true }
    ) throws(OperationsServerError) {
        self.address = address
        self.logger = logger
        let stopping = StoppingFlag()
        self.stopping = stopping
        let socketAddress: any SocketAddress
        do {
            guard let port = UInt16(exactly: address.port) else {
                throw OperationsServerError(address: address, reason: "port out of range")
            }
            switch address.family {
            case .ipv4: socketAddress = try sockaddr_in.inet(ip4: address.host, port: port)
            case .ipv6: socketAddress = try sockaddr_in6.inet6(ip6: address.host, port: port)
            }
        } catch let error as OperationsServerError {
            throw error
        } catch {
            throw OperationsServerError(address: address, reason: "\(error)")
        }
        let handler = OperationsHandler(registry: registry, readiness: readiness, isAlive: isAlive)
        server = HTTPServer(
            address: socketAddress, timeout: 10,
            logger: FlyingFoxLogger(logger: logger, stopping: stopping), handler: handler)
    }

    /// Convenience for a runtime that only knows yes or no: `/ready` then says `not ready` without a reason.
    public convenience init(
        address: ListenAddress, registry: PrometheusCollectorRegistry, logger: Logger,
        isReady: @escaping @Sendable () -> Bool
    ) throws(OperationsServerError) {
        try self.init(
            address: address, registry: registry, logger: logger,
            readiness: { isReady() ? .ready : .notReady("the bridge is not connected and subscribed on both sides") })
    }

    /// Waits until the socket listens and returns the bound address (with the real port when the
    /// configured one was 0).
    /// - throws: when it does not listen within `timeout` seconds.
    public func waitUntilListening(timeout: TimeInterval = 5) async throws -> ListenAddress {
        try await server.waitUntilListening(timeout: timeout)
        switch await server.listeningAddress {
        case .ip4(let host, let port): return ListenAddress(host: host, port: Int(port), family: .ipv4)
        case .ip6(let host, let port): return ListenAddress(host: host, port: Int(port), family: .ipv6)
        case .unix, nil: return address
        }
    }

    /// Listens until graceful shutdown (or cancellation), then closes the listener and its connections.
    /// - throws: ``OperationsServerError`` when the socket cannot be bound (port in use, address not local).
    public func run() async throws {
        let server = self.server
        let stopping = self.stopping
        logger.info("operations endpoint: GET /metrics, /health, /ready", metadata: ["address": "\(address)"])
        let runError: (any Error)? = await withTaskGroup(of: Outcome.self) { group in
            group.addTask {
                do {
                    try await server.run()
                    return .serverEnded(nil)
                } catch {
                    return .serverEnded(error)
                }
            }
            group.addTask {
                do { try await gracefulShutdown() } catch { return .cancelled }
                stopping.set()
                await server.stop(timeout: 0.25)
                return .shutdown
            }
            // Whichever ends first ends the other. A shutdown that came before the socket was listening found
            // nothing to stop; cancelling ends the pending run().
            var runError: (any Error)?
            while let outcome = await group.next() {
                if case .serverEnded(let error) = outcome { runError = error }
                group.cancelAll()
            }
            return runError
        }
        if stopping.isSet || Task.isCancelled || runError == nil || runError is CancellationError {
            // FlyingFox ends run() with an error even when stopped on purpose.
            logger.info("operations endpoint closed", metadata: ["address": "\(address)"])
            return
        }
        throw OperationsServerError(address: address, reason: Self.describe(runError ?? CancellationError()))
    }

    private enum Outcome: Sendable {
        case serverEnded((any Error)?)
        case shutdown
        case cancelled
    }

    private static func describe(_ error: any Error) -> String {
        if let socketError = error as? SocketError, case .failed(let type, let code, let message) = socketError {
            return "\(type) failed: \(message) (errno \(code))"
        }
        return "\(error)"
    }
}

/// Answers the three paths; one value shared by every connection.
struct OperationsHandler: HTTPHandler {
    let registry: PrometheusCollectorRegistry
    let readiness: @Sendable () -> Readiness
    let isAlive: @Sendable () -> Bool

    static let textPlain = "text/plain; charset=utf-8"
    /// The Prometheus text exposition format the registry writes.
    static let prometheusText = "text/plain; version=0.0.4; charset=utf-8"

    func handleRequest(_ request: HTTPRequest) async throws -> HTTPResponse {
        guard request.method == .GET || request.method == .HEAD else {
            return Self.text(.methodNotAllowed, "only GET\n", extra: [HTTPHeader("Allow"): "GET, HEAD"], head: false)
        }
        let head = request.method == .HEAD
        switch request.path {
        case "/metrics":
            var body = Data(registry.emitToBuffer())
            if head { body = Data() }
            return HTTPResponse(
                statusCode: .ok, headers: [.contentType: Self.prometheusText, .cacheControl: "no-store"], body: body)
        case "/health":
            return isAlive() ? Self.text(.ok, "ok\n", head: head) : Self.text(.serviceUnavailable, "not alive\n", head: head)
        case "/ready":
            let state = readiness()
            return Self.text(state.isReady ? .ok : .serviceUnavailable, "\(state)\n", head: head)
        default:
            return Self.text(.notFound, "not found; this endpoint serves /metrics, /health and /ready\n", head: head)
        }
    }

    static func text(
        _ status: HTTPStatusCode, _ body: String, extra: [HTTPHeader: String] = [:], head: Bool
    ) -> HTTPResponse {
        var headers: HTTPHeaders = [.contentType: textPlain, .cacheControl: "no-store"]
        for (name, value) in extra { headers[name] = value }
        return HTTPResponse(statusCode: status, headers: headers, body: head ? Data() : Data(body.utf8))
    }
}

/// FlyingFox's log lines through swift-log. It reports every connection at "info", which is noise for a
/// scrape endpoint, so those go to trace; its errors become warnings, except the ones it prints while
/// stopping on purpose.
struct FlyingFoxLogger: FlyingSocks.Logging {
    let logger: Logger
    let stopping: StoppingFlag

    init(logger: Logger, stopping: StoppingFlag) {
        var logger = logger
        logger[metadataKey: "component"] = "operations-http"
        self.logger = logger
        self.stopping = stopping
    }

    private var quiet: Bool { stopping.isSet }

    func logDebug(_ debug: @autoclosure () -> String) { logger.trace("\(debug())") }
    func logInfo(_ info: @autoclosure () -> String) { logger.trace("\(info())") }
    func logWarning(_ warning: @autoclosure () -> String) { logger.debug("\(warning())") }
    func logError(_ error: @autoclosure () -> String) {
        if quiet { logger.debug("\(error())") } else { logger.warning("\(error())") }
    }
    func logCritical(_ critical: @autoclosure () -> String) {
        if quiet { logger.debug("\(critical())") } else { logger.error("\(critical())") }
    }
}

/// Set once the server is being stopped on purpose, shared with the log adapter.
final class StoppingFlag: Sendable {
    private let state = Mutex(false)
    func set() { state.withLock { $0 = true } }
    var isSet: Bool { state.withLock { $0 } }
}
