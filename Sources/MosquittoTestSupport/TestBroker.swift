public import Foundation
public import MQTT
public import Mosquitto
import Synchronization

/// A private mosquitto for tests and benchmarks: its own temp directory and config, a free 127.0.0.1 port,
/// and it stops exactly the process it started.
///
/// A missing `mosquitto` binary is an error (tests fail, they do not skip): `scripts/setup.sh` installs it.
public final class TestBroker: Sendable {
    public struct Options: Sendable {
        /// Require a username and password (see ``TestBroker/username``/``TestBroker/password``).
        public var passwordFile: Bool
        /// Listen with TLS, certificates made at start by `openssl`.
        public var tls: Bool
        /// With `tls`: clients must present a certificate signed by the test CA.
        public var requireClientCertificate: Bool
        /// Keep sessions, subscriptions and queued messages in `mosquitto.db` in the broker's directory, so
        /// they survive ``TestBroker/restart()``. mosquitto writes the file at a clean stop and every
        /// `autosaveInterval`; a `kill -9` loses what changed since the last save.
        public var persistence: Bool
        /// Seconds between persistence saves (mosquitto's `autosave_interval`).
        public var autosaveInterval: Int
        /// Messages queued per client session beyond those in flight (mosquitto's `max_queued_messages`).
        public var maxQueuedMessages: Int
        /// Also log connects and disconnects (mosquitto's `log_type notice`: `New client connected from ... as
        /// <client id> (...)`, `Client <client id> disconnected.`) to ``TestBroker/logFile``.
        public var logConnections: Bool

        public init(passwordFile: Bool = false, tls: Bool = false, requireClientCertificate: Bool = false,
                    persistence: Bool = false, autosaveInterval: Int = 1, maxQueuedMessages: Int = 100_000,
                    logConnections: Bool = false) {
            self.passwordFile = passwordFile
            self.tls = tls
            self.requireClientCertificate = requireClientCertificate
            self.persistence = persistence
            self.autosaveInterval = autosaveInterval
            self.maxQueuedMessages = maxQueuedMessages
            self.logConnections = logConnections
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String

        public init(description: String) {
            self.description = description
        }
    }

    public let host = "127.0.0.1"
    public let port: Int
    /// Held for the broker's life, so that no other test's broker or client takes the port before mosquitto
    /// binds it, at the start and at each ``restart()``.
    private let reservation: PortReservation
    public let directory: URL
    public let options: Options
    public let username = "bridge"
    public let password = "s3cret-pass"
    private let process = Mutex<ChildProcess?>(nil)

    /// The CA certificate that signed the broker's (and the client's) certificate.
    public var caFile: String { directory.appendingPathComponent("ca.crt").path }
    public var clientCertFile: String { directory.appendingPathComponent("client.crt").path }
    public var clientKeyFile: String { directory.appendingPathComponent("client.key").path }
    /// A CA that did not sign anything here, for wrong-CA tests.
    public var otherCAFile: String { directory.appendingPathComponent("other-ca.crt").path }
    public var logFile: String { directory.appendingPathComponent("mosquitto.log").path }

    /// Starts a broker and waits until it accepts connections.
    public init(_ options: Options = .init()) throws {
        self.options = options
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("test-broker-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        reservation = try PortReservation()
        port = reservation.port
        try writeConfig()
        try start()
    }

    /// Starts a broker and waits until it accepts connections, on a thread of its own (see ``onOwnThread(_:)``):
    /// the start spawns processes (`openssl` for TLS) and polls the port. Tests use this; the synchronous
    /// initializer is for programs without a shared pool to keep free.
    public static func start(_ options: Options = .init()) async throws -> TestBroker {
        try await onOwnThread { try TestBroker(options) }
    }

    deinit {
        stopProcess()
        try? FileManager.default.removeItem(at: directory)
    }

    public static let executable: String = {
        for path in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"]
        where FileManager.default.isExecutableFile(atPath: path) {
            return path
        }
        return "mosquitto"
    }()

    /// A client configuration for this broker.
    public func clientConfiguration(version: MQTTVersion = .v5, clientID: String = "test-\(UUID().uuidString.prefix(8))")
        -> MQTTConfiguration
    {
        var configuration = MQTTConfiguration(host: host, port: port, version: version, clientID: clientID)
        configuration.reconnect = .init(initial: .milliseconds(100), maximum: .milliseconds(500))
        if options.passwordFile {
            configuration.credentials = .init(username: username, password: password)
        }
        if options.tls {
            configuration.tls = .init(caFile: caFile)
            if options.requireClientCertificate {
                configuration.tls?.certFile = clientCertFile
                configuration.tls?.keyFile = clientKeyFile
            }
        }
        return configuration
    }

    /// Kills the broker with SIGKILL (no clean shutdown, no DISCONNECT to anyone).
    public func kill9() {
        process.withLock { process -> ChildProcess? in
            defer { process = nil }
            return process
        }?.kill9()
    }

    /// Kills the broker (-9) and starts it again on the same port, on a thread of its own.
    public func restart() async throws {
        try await onOwnThread { [self] in
            kill9()
            try start()
        }
    }

    /// Stops the broker (SIGTERM, then SIGKILL after `gracePeriod`) and waits for it. A persistent broker
    /// saves its database on SIGTERM, so give it time when it holds many messages.
    ///
    /// Blocks only until the broker exits (at most the grace period); ``stopped(gracePeriod:)`` waits on a
    /// thread of its own.
    public func stop(gracePeriod: Duration = .milliseconds(300)) {
        stopProcess(gracePeriod: gracePeriod)
    }

    /// ``stop(gracePeriod:)`` on a thread of its own, for async code with a long grace period.
    public func stopped(gracePeriod: Duration = .milliseconds(300)) async {
        await takeProcess()?.terminate(gracePeriod: gracePeriod)
    }

    /// The broker's process id while it runs.
    public var processIdentifier: Int32? { process.withLock { $0?.isRunning == true ? $0?.processIdentifier : nil } }

    public var isRunning: Bool { process.withLock { $0?.isRunning ?? false } }

    /// Freezes the broker (SIGSTOP): connections stay open, nothing is answered.
    public func pause() {
        _ = process.withLock { $0?.signal(SIGSTOP) }
    }

    /// Lets a paused broker go on (SIGCONT).
    public func resume() {
        _ = process.withLock { $0?.signal(SIGCONT) }
    }

    private func takeProcess() -> ChildProcess? {
        process.withLock { process in
            defer { process = nil }
            return process
        }
    }

    /// SIGTERM first (the broker saves its persistence file); SIGKILL when it takes longer than the grace period.
    private func stopProcess(gracePeriod: Duration = .milliseconds(300)) {
        takeProcess()?.terminate(gracePeriod: gracePeriod)
    }

    private func start() throws {
        guard FileManager.default.isExecutableFile(atPath: Self.executable) else {
            throw Failure(description: "cannot find mosquitto (apt-get install mosquitto)")
        }
        let broker = try ChildProcess(Self.executable, ["-c", directory.appendingPathComponent("mosquitto.conf").path],
                                      standardOutput: .file(logFile), standardError: .standardOutput)
        process.withLock { $0 = broker }
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if let exit = broker.exit {
                let text = (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? ""
                throw Failure(description: "mosquitto \(exit): \(text)")
            }
            if Self.accepts(port: port) { return }
            usleep(20_000)
        }
        throw Failure(description: "mosquitto did not accept connections on 127.0.0.1:\(port) within 10 s")
    }

    private func writeConfig() throws {
        var lines = [
            "listener \(port) 127.0.0.1",
            "user root",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "max_inflight_messages 100",
            "max_queued_messages \(options.maxQueuedMessages)",
            // Nagle plus delayed ACKs would add ~40 ms to each small request/response hop.
            "set_tcp_nodelay true",
        ]
        if options.logConnections { lines.append("log_type notice") }
        if options.persistence {
            lines += [
                "persistence true",
                "persistence_location \(directory.path)/",
                "autosave_interval \(max(1, options.autosaveInterval))",
            ]
        } else {
            lines.append("persistence false")
        }
        if options.passwordFile {
            let file = directory.appendingPathComponent("passwords").path
            try Self.run("/usr/bin/mosquitto_passwd", ["-b", "-c", file, username, password])
            lines += ["allow_anonymous false", "password_file \(file)"]
        } else {
            lines.append("allow_anonymous true")
        }
        if options.tls {
            try makeCertificates()
            lines += [
                "cafile \(caFile)",
                "certfile \(directory.appendingPathComponent("server.crt").path)",
                "keyfile \(directory.appendingPathComponent("server.key").path)",
                "require_certificate \(options.requireClientCertificate)",
            ]
        }
        try (lines.joined(separator: "\n") + "\n").write(
            to: directory.appendingPathComponent("mosquitto.conf"), atomically: true, encoding: .utf8)
    }

    private func makeCertificates() throws {
        let dir = directory.path
        func openssl(_ arguments: [String]) throws { try Self.run("/usr/bin/openssl", arguments) }
        for ca in ["ca", "other-ca"] {
            try openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test \(ca)",
                         "-keyout", "\(dir)/\(ca).key", "-out", "\(dir)/\(ca).crt"])
        }
        let extensions = "\(dir)/san.ext"
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\n".write(toFile: extensions, atomically: true, encoding: .utf8)
        for (name, subject) in [("server", "/CN=localhost"), ("client", "/CN=test-client")] {
            try openssl(["req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
                         "-keyout", "\(dir)/\(name).key", "-out", "\(dir)/\(name).csr"])
            try openssl(["x509", "-req", "-in", "\(dir)/\(name).csr", "-CA", "\(dir)/ca.crt", "-CAkey", "\(dir)/ca.key",
                         "-CAcreateserial", "-days", "2", "-extfile", extensions, "-out", "\(dir)/\(name).crt"])
        }
    }

    /// Runs a helper program (openssl, mosquitto_passwd) and returns its output; throws when it fails.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String]) throws -> String {
        let run = try ChildProcess.runBlocking(executable, arguments, mergingStandardError: true)
        guard run.termination == .exited(0) else {
            throw Failure(description: "\(executable) \(arguments.joined(separator: " ")) \(run.termination): \(run.standardOutput)")
        }
        return run.standardOutput
    }

    /// A port that was free a moment ago (the kernel's choice for port 0). Another test may take it before
    /// it is bound; a mosquitto's port is better held with a ``PortReservation``.
    public static func freePort() throws -> Int {
        try PortReservation().port
    }

    static func accepts(port: Int) -> Bool {
        guard let fd = try? Loopback.connect(port: port) else { return false }
        close(fd)
        return true
    }
}

/// A 127.0.0.1 port bound (with SO_REUSEADDR, not listening) for as long as this lives.
///
/// mosquitto, which sets SO_REUSEADDR too, can still bind and listen on it, while the kernel gives it to no
/// other `bind` to port 0 and no outgoing connection: a port merely found free and let go can be taken by a
/// parallel test before the broker binds it, and the broker then exits with "Address already in use".
public final class PortReservation: Sendable {
    public let port: Int
    private let descriptor: Int32

    public init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestBroker.Failure(description: "socket() failed: errno \(errno)") }
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            let error = errno
            close(fd)
            throw TestBroker.Failure(description: "bind() failed: errno \(error)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        descriptor = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(descriptor) }
}

/// Drains a client's message stream into a buffer for the whole test, so tests can wait for what arrived
/// without iterating (and, on cancellation, ending) the stream themselves.
public final class MessageCollector: Sendable {
    private final class Buffer: Sendable {
        let messages = Mutex<[MQTTMessage]>([])
    }

    private let buffer = Buffer()

    /// A collector that only gets what ``append(_:)`` adds.
    public init() {}

    public init(_ messages: AsyncStream<MQTTMessage>) {
        let buffer = self.buffer
        Task {
            for await message in messages {
                buffer.messages.withLock { $0.append(message) }
            }
        }
    }

    public var messages: [MQTTMessage] { buffer.messages.withLock { $0 } }

    public var count: Int { buffer.messages.withLock { $0.count } }

    /// Waits until at least `count` messages arrived or the timeout passed; returns what arrived.
    @discardableResult
    public func wait(for count: Int, timeout: Duration = .seconds(10)) async -> [MQTTMessage] {
        let deadline = ContinuousClock.now + timeout
        while self.count < count, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        return messages
    }

    /// Waits for the first message that satisfies `predicate`.
    public func first(timeout: Duration = .seconds(10), where predicate: (MQTTMessage) -> Bool) async -> MQTTMessage? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let match = messages.first(where: predicate) { return match }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return messages.first(where: predicate)
    }

    public func removeAll() { buffer.messages.withLock { $0.removeAll() } }

    public func append(_ message: MQTTMessage) { buffer.messages.withLock { $0.append(message) } }
}
