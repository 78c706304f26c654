public import BridgeConfig
public import Logging
public import Prometheus
public import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

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
/// Anything else is 404; methods other than GET and HEAD are 405. Graceful shutdown closes the listening
/// socket and the open connections. Put it **first** in the `ServiceGroup` so it is shut down last and
/// `/health` keeps answering while the bridge drains.
///
/// The server is a few hundred lines of our own over POSIX sockets: one thread runs a `poll(2)` loop over
/// the listener, every connection and a wake-up pipe, with nonblocking sockets and the bounds in
/// ``Limits``. It answers HTTP/1.1 with keep-alive (HTTP/1.0 and `Connection: close` requests are
/// answered and closed), never reads a request body, and matches the path without its query string.
public final class OperationsServer: Service, Sendable {
    /// What one endpoint holds open at most, and for how long.
    public struct Limits: Sendable, Hashable {
        /// Connections open at once; one more is answered 503 and closed at once.
        public var maxConnections: Int
        /// Bytes of a request line plus headers; a longer head is answered 431.
        public var maxRequestHeadBytes: Int
        /// How long a connection may take to send a whole request head (counted from its accept, or from
        /// the end of the previous answer on a kept-alive connection), and to take a whole answer. A
        /// connection that needs longer is closed: a slow or silent client holds a slot for this long at most.
        public var requestTimeout: Duration

        public init(maxConnections: Int = 64, maxRequestHeadBytes: Int = 8192, requestTimeout: Duration = .seconds(10)) {
            self.maxConnections = max(1, maxConnections)
            self.maxRequestHeadBytes = max(64, maxRequestHeadBytes)
            self.requestTimeout = requestTimeout
        }

        /// 64 connections, 8 KiB heads, 10 s per request.
        public static let standard = Limits()
    }

    /// Where it listens (from `operations.listen`).
    public let address: ListenAddress
    /// The bounds the server keeps.
    public let limits: Limits
    private let socketAddress: IPSocketAddress
    private let handler: OperationsHandler
    private let logger: Logger
    private let control = ServerControl()

    /// Creates the server; nothing listens until ``run()``.
    ///
    /// - parameter readiness: called on every `/ready` request, on the server's thread; must be cheap and must
    ///   not block (read an atomic or a mutex-protected snapshot).
    /// - parameter isAlive: called on every `/health` request, on the server's thread; the default says the
    ///   process answers HTTP, which is what a container HEALTHCHECK needs. A runtime with an event loop can
    ///   report a stalled loop here.
    /// - parameter histograms: written to `/metrics` after `registry` (the executable passes
    ///   ``BridgeHistograms/processWide``).
    /// - throws: ``OperationsServerError`` when `address` cannot be turned into a socket address.
    public init(
        address: ListenAddress,
        registry: PrometheusCollectorRegistry,
        histograms: BridgeHistograms? = nil,
        logger: Logger,
        readiness: @escaping @Sendable () -> Readiness,
        isAlive: @escaping @Sendable () -> Bool = { true },
        limits: Limits = .standard
    ) throws(OperationsServerError) {
        self.address = address
        self.limits = limits
        var logger = logger
        logger[metadataKey: "component"] = "operations-http"
        self.logger = logger
        socketAddress = try IPSocketAddress(address)
        handler = OperationsHandler(registry: registry, histograms: histograms, readiness: readiness, isAlive: isAlive)
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
    /// - throws: ``OperationsServerError`` when it does not listen within `timeout` seconds, or when
    ///   ``run()`` has already ended.
    public func waitUntilListening(timeout: Double = 5) async throws -> ListenAddress {
        let deadline = ContinuousClock.now + .milliseconds(Int64(max(0, timeout) * 1000))
        while true {
            switch control.phase {
            case .listening(let bound): return bound
            case .ended: throw OperationsServerError(address: address, reason: "the endpoint has stopped")
            case .idle: break
            }
            if ContinuousClock.now >= deadline {
                throw OperationsServerError(address: address, reason: "not listening after \(timeout) s")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Binds the socket and starts the server's thread, on the caller's thread, and returns the bound address
    /// (with the real port when the configured one was 0). ``run()`` calls it when nobody has; calling it first
    /// makes a port in use an error at startup and the endpoint listen before any task of the service group has
    /// been scheduled (a busy cooperative pool cannot delay it). Runs once; later calls return the same address.
    /// - throws: ``OperationsServerError`` when the socket cannot be bound (port in use, address not local), or
    ///   when the server has already been stopped.
    @discardableResult
    public func start() throws(OperationsServerError) -> ListenAddress {
        let result: Result<ListenAddress, OperationsServerError> = control.startOnce(
            stopped: OperationsServerError(address: address, reason: "the endpoint has stopped")
        ) { () throws(OperationsServerError) in
            try self.bindAndServe()
        }
        return try result.get()
    }

    /// Listens until graceful shutdown (or cancellation), then closes the listener and its connections.
    /// Runs once.
    /// - throws: ``OperationsServerError`` when the socket cannot be bound (port in use, address not local).
    public func run() async throws {
        let started = Result { () throws(OperationsServerError) in try start() }
        if case .failure = started, control.stoppedBeforeBinding {
            // Shut down before it started: nothing to open, nothing to close.
            control.end(failure: nil)
            return
        }
        let bound = try started.get()
        let control = self.control
        let failure = await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await control.ended()
            } onGracefulShutdown: {
                control.stop()
            }
        } onCancel: {
            control.stop()
        }
        if let failure {
            throw OperationsServerError(address: address, reason: failure)
        }
        logger.info("operations endpoint closed", metadata: ["address": "\(bound)"])
    }

    /// Opens the listener and the wake pipe and hands both to the server's thread.
    private func bindAndServe() throws(OperationsServerError) -> ListenAddress {
        let listener: Listener
        do {
            listener = try Listener(socketAddress, backlog: Int32(min(limits.maxConnections, 128)))
        } catch {
            throw OperationsServerError(address: address, reason: error.description)
        }
        let wake: WakePipe
        do {
            wake = try WakePipe()
        } catch {
            listener.close()
            throw OperationsServerError(address: address, reason: error.description)
        }
        let bound = listener.boundAddress(family: address.family, host: address.host)
        control.listening(on: bound, wake: wake)
        let loop = LoopSettings(
            listener: listener.fd, wake: wake.readEnd, limits: limits, handler: handler, logger: logger)
        let control = self.control
        do {
            try ServerThread.start(name: "bridge-http") {
                let failure = HTTPServerLoop(loop, control: control).run()
                listener.close()
                control.end(failure: failure)  // closes the wake pipe under the lock stop() writes it with
            }
        } catch {
            listener.close()
            control.end(failure: "\(error)")
            throw OperationsServerError(address: address, reason: "\(error)")
        }
        logger.info("operations endpoint: GET /metrics, /health, /ready", metadata: ["address": "\(bound)"])
        return bound
    }
}

/// What the server's thread reads from the service and what ``OperationsServer/run()`` waits for.
final class ServerControl: Sendable {
    enum Phase: Sendable {
        case idle
        case listening(ListenAddress)
        case ended
    }

    private struct State {
        var phase = Phase.idle
        var stopRequested = false
        var wake: WakePipe?
        /// What ``OperationsServer/start()`` returned, so that it binds once.
        var started: Result<ListenAddress, OperationsServerError>?
        /// Why the server's thread ended (nil: it was asked to); set with ``Phase/ended``.
        var failure: String?
        var waiters: [CheckedContinuation<String?, Never>] = []
    }

    private let state = Mutex(State())
    /// Held while the socket is bound, so two concurrent starts bind once.
    private let starting = Mutex(())

    var phase: Phase { state.withLock { $0.phase } }
    var stopRequested: Bool { state.withLock { $0.stopRequested } }
    /// Asked to stop before the socket was bound (``startOnce(stopped:_:)`` then binds nothing).
    var stoppedBeforeBinding: Bool {
        state.withLock { state in
            guard state.stopRequested else { return false }
            if case .success = state.started { return false }
            return true
        }
    }

    /// Runs `bind` the first time and returns its result every time; after a stop, without binding.
    func startOnce(
        stopped: OperationsServerError, _ bind: () throws(OperationsServerError) -> ListenAddress
    ) -> Result<ListenAddress, OperationsServerError> {
        starting.withLock { _ in
            if let started = state.withLock({ $0.started }) { return started }
            let result: Result<ListenAddress, OperationsServerError>
            if stopRequested {
                result = .failure(stopped)
            } else {
                do throws(OperationsServerError) { result = .success(try bind()) } catch { result = .failure(error) }
            }
            state.withLock { $0.started = result }
            return result
        }
    }

    /// Asks the loop to end; wakes its `poll` when it has started.
    func stop() {
        state.withLock { state in
            state.stopRequested = true
            state.wake?.signal()
        }
    }

    func listening(on address: ListenAddress, wake: WakePipe) {
        state.withLock { state in
            state.phase = .listening(address)
            state.wake = wake
        }
    }

    /// The loop has ended: the pipe closes here, under the lock ``stop()`` writes it with, so a late stop
    /// never writes to a descriptor number the process has given to something else.
    func end(failure: String?) {
        let waiters = state.withLock { state in
            state.phase = .ended
            state.failure = failure
            state.wake?.close()
            state.wake = nil
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: failure) }
    }

    /// Waits until the server's thread has ended; returns why, when it failed.
    func ended() async -> String? {
        await withCheckedContinuation { (continuation: CheckedContinuation<String?, Never>) in
            let endedAlready: String?? = state.withLock { state in
                if case .ended = state.phase { return .some(state.failure) }
                state.waiters.append(continuation)
                return .none
            }
            if case .some(let failure) = endedAlready { continuation.resume(returning: failure) }
        }
    }
}

/// `close(2)`, under a name that the types' own `close()` methods do not hide.
@discardableResult @inline(__always) func closeDescriptor(_ fd: Int32) -> Int32 { close(fd) }

/// A socket error with the call that failed, as `bind failed: Address already in use (errno 98)`.
struct SocketFailure: Error, CustomStringConvertible {
    var call: String
    var code: Int32

    init(_ call: String, errno code: Int32 = errno) {
        self.call = call
        self.code = code
    }

    var description: String { "\(call) failed: \(String(cString: strerror(code))) (errno \(code))" }
}

/// A `sockaddr_in` or `sockaddr_in6` for a numeric address, kept as bytes.
struct IPSocketAddress: Sendable {
    let family: Int32
    private let bytes: [UInt8]

    init(_ address: ListenAddress) throws(OperationsServerError) {
        guard let port = UInt16(exactly: address.port) else {
            throw OperationsServerError(address: address, reason: "port out of range")
        }
        switch address.family {
        case .ipv4:
            var ipv4 = sockaddr_in()
            ipv4.sin_family = sa_family_t(AF_INET)
            ipv4.sin_port = port.bigEndian
            guard inet_pton(AF_INET, address.host, &ipv4.sin_addr) == 1 else {
                throw OperationsServerError(address: address, reason: "'\(address.host)' is not an IPv4 address")
            }
            family = AF_INET
            bytes = withUnsafeBytes(of: ipv4) { Array($0) }
        case .ipv6:
            var ipv6 = sockaddr_in6()
            ipv6.sin6_family = sa_family_t(AF_INET6)
            ipv6.sin6_port = port.bigEndian
            guard inet_pton(AF_INET6, address.host, &ipv6.sin6_addr) == 1 else {
                throw OperationsServerError(address: address, reason: "'\(address.host)' is not an IPv6 address")
            }
            family = AF_INET6
            bytes = withUnsafeBytes(of: ipv6) { Array($0) }
        }
    }

    func withSockaddr<Result>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> Result) -> Result {
        bytes.withUnsafeBytes { raw in
            body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
    }
}

/// The listening socket: nonblocking, close-on-exec, `SO_REUSEADDR` (a restart binds while old connections
/// sit in TIME_WAIT). An IPv6 wildcard (`::`) follows the system's `bindv6only` (dual-stack on Linux by default).
struct Listener: Sendable {
    let fd: Int32

    init(_ address: IPSocketAddress, backlog: Int32) throws(SocketFailure) {
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketFailure("socket") }
        var one: Int32 = 1
        guard setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            let failure = SocketFailure("setsockopt(SO_REUSEADDR)")
            closeDescriptor(fd)
            throw failure
        }
        guard address.withSockaddr({ bind(fd, $0, $1) }) == 0 else {
            let failure = SocketFailure("bind")
            closeDescriptor(fd)
            throw failure
        }
        guard listen(fd, backlog) == 0 else {
            let failure = SocketFailure("listen")
            closeDescriptor(fd)
            throw failure
        }
        self.fd = fd
    }

    /// The address the kernel bound, with the real port when the configured one was 0.
    func boundAddress(family: ListenAddress.Family, host: String) -> ListenAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let found = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard found == 0 else { return ListenAddress(host: host, port: 0, family: family) }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        switch Int32(storage.ss_family) {
        case AF_INET:
            let ipv4 = withUnsafeBytes(of: storage) { $0.load(as: sockaddr_in.self) }
            var address = ipv4.sin_addr
            inet_ntop(AF_INET, &address, &text, socklen_t(text.count))
            return ListenAddress(host: Self.string(text), port: Int(UInt16(bigEndian: ipv4.sin_port)), family: .ipv4)
        case AF_INET6:
            let ipv6 = withUnsafeBytes(of: storage) { $0.load(as: sockaddr_in6.self) }
            var address = ipv6.sin6_addr
            inet_ntop(AF_INET6, &address, &text, socklen_t(text.count))
            return ListenAddress(host: Self.string(text), port: Int(UInt16(bigEndian: ipv6.sin6_port)), family: .ipv6)
        default:
            return ListenAddress(host: host, port: 0, family: family)
        }
    }

    private static func string(_ characters: [CChar]) -> String {
        String(decoding: characters.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func close() { _ = closeDescriptor(fd) }
}

/// The self-pipe that wakes the loop's `poll` for shutdown: nonblocking, close-on-exec.
struct WakePipe: Sendable {
    let readEnd: Int32
    let writeEnd: Int32

    init() throws(SocketFailure) {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { throw SocketFailure("pipe") }
        for end in ends {
            _ = fcntl(end, F_SETFL, O_NONBLOCK)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        readEnd = ends[0]
        writeEnd = ends[1]
    }

    /// One byte; a full pipe already wakes the loop, so a failed write is fine.
    func signal() {
        var byte: UInt8 = 1
        _ = write(writeEnd, &byte, 1)
    }

    func close() {
        _ = closeDescriptor(readEnd)
        _ = closeDescriptor(writeEnd)
    }
}

/// A detached POSIX thread running one closure: the server's loop must not occupy the cooperative pool,
/// whose few threads the bridge's own tasks need.
enum ServerThread {
    private final class Body: Sendable {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    struct StartFailure: Error, CustomStringConvertible {
        var code: Int32
        var description: String { "pthread_create failed: \(String(cString: strerror(code))) (errno \(code))" }
    }

    static func start(name: String, _ run: @escaping @Sendable () -> Void) throws(StartFailure) {
        // SAFETY (Unmanaged): one retain travels to the new thread, which takes it back exactly once; if the thread
        // is never created, the release below balances it instead.
        let body = Unmanaged.passRetained(Body {
            // Named for `top -H` and `ps -L` (15 characters at most); best effort.
            let comm = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
            if comm >= 0 {
                _ = name.utf8CString.withUnsafeBufferPointer { write(comm, $0.baseAddress, min($0.count - 1, 15)) }
                _ = closeDescriptor(comm)
            }
            run()
        }).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        var thread = pthread_t()
        let result = pthread_create(&thread, &attributes, { argument in
            Unmanaged<Body>.fromOpaque(argument!).takeRetainedValue().run()
            return nil
        }, body)
        if result != 0 {
            Unmanaged<Body>.fromOpaque(body).release()
            throw StartFailure(code: result)
        }
    }
}
