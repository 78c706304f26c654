import Foundation
import Logging
import MQTT
import Mosquitto
import MosquittoTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Runs a program to its end; its exit status and what it wrote, stdout and stderr apart.
struct ProgramRun: Sendable {
    var status: Int32
    var stdout: String
    var stderr: String

    /// On a thread of its own: the tests' cooperative pool has one thread per core, and a program that runs for
    /// a while (mosquitto_passwd hashes) would stall every other test, the operations endpoint's among them.
    static func run(_ executable: String, _ arguments: [String], stdin: String? = nil,
                    environment: [String: String] = [:]) async throws -> ProgramRun {
        try await onOwnThread { try runBlocking(executable, arguments, stdin: stdin, environment: environment) }
    }

    static func runBlocking(_ executable: String, _ arguments: [String], stdin: String? = nil,
                            environment: [String: String] = [:]) throws -> ProgramRun {
        let run = try ChildProcess.runBlocking(
            executable, arguments, environment: ProcessInfo.processInfo.environment.merging(environment) { $1 },
            standardInput: stdin ?? "")
        return ProgramRun(status: run.status, stdout: run.standardOutput, stderr: run.standardError)
    }
}

/// mosquitto with the shipped `Config/mosquitto.conf`, its files where `docker-compose.yml` mounts them, and its
/// users made by `scripts/add-device.sh`, as `scripts/add-device.sh sensor-1; docker compose up -d` would run it.
///
/// The config is rewritten only where a test machine must differ (``rewrite(_:)``):
/// - `listener <port> 0.0.0.0` becomes `listener <free port> 127.0.0.1` (``port(_:)`` maps the shipped port);
/// - `/mosquitto/`, the container's directory, becomes this broker's directory, where each bind mount of the
///   compose service is a symbolic link to its source (the repository's file, or the secrets add-device.sh made);
/// - with `tls`, lines starting with `#tls ` lose that prefix (the optional TLS listener), and the certificates
///   it names are made by openssl;
/// - on top: `user root` (started as root, mosquitto would switch to the user mosquitto, which cannot write
///   here) and logging to ``logFile``.
/// Every authentication and ACL line stays as shipped.
final class ShippedBroker: Sendable {
    /// The container's `/mosquitto`.
    let directory: URL
    /// `scripts/add-device.sh --secrets`: the repository's `secrets/` in a deployment.
    let secrets: URL
    /// Shipped listener port -> the loopback port here.
    let ports: [Int: Int]
    /// The loopback ports, held until the broker is gone (see ``PortReservation``).
    private let reservations: [PortReservation]
    let tls: Bool
    private let process = Mutex<ChildProcess?>(nil)

    var logFile: String { directory.appendingPathComponent("mosquitto.log").path }
    var caFile: String { directory.appendingPathComponent("certs/ca.crt").path }
    var bridgePassword: String { (try? Self.firstLine(secrets.appendingPathComponent("bridge.password"))) ?? "" }
    var dittoPassword: String { (try? Self.firstLine(secrets.appendingPathComponent("ditto.password"))) ?? "" }

    static let addDevice = Repository.file("scripts/add-device.sh").path
    static let devicePort = 1883
    static let dittoPort = 1884
    static let tlsPort = 8883

    static func firstLine(_ url: URL) throws -> String {
        String(try String(contentsOf: url, encoding: .utf8).prefix { $0 != "\n" })
    }

    /// Starts the broker with `devices` added by add-device.sh; their passwords: ``password(of:)``.
    static func start(devices: [String] = ["sensor-1", "sensor-2"], tls: Bool = false) async throws -> ShippedBroker {
        try await onOwnThread { try ShippedBroker(devices: devices, tls: tls) }
    }

    private init(devices: [String], tls: Bool) throws {
        self.tls = tls
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("shipped-broker-\(UUID().uuidString)")
        directory = base.appendingPathComponent("mosquitto")
        secrets = base.appendingPathComponent("secrets")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: base.appendingPathComponent("passwords"), withIntermediateDirectories: true)
        for device in devices {
            let run = try Self.addDeviceBlocking(["--password-out", Self.passwordFile(base, device).path, device], secrets: secrets)
            guard run.status == 0 else { throw TestFailure("add-device.sh \(device): \(run.stderr)") }
        }
        var ports: [Int: Int] = [:]
        var reservations: [PortReservation] = []
        let conf = try Repository.text("Config/mosquitto.conf")
        for line in conf.split(separator: "\n") {
            if let match = line.wholeMatch(of: /(?:#tls )?listener (\d+) 0\.0\.0\.0/), let port = Int(match.1) {
                let reservation = try PortReservation()
                reservations.append(reservation)
                ports[port] = reservation.port
            }
        }
        self.ports = ports
        self.reservations = reservations
        try placeComposeMounts(config: rewrite(conf))
        if tls { try makeCertificates() }
        try start()
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: directory.deletingLastPathComponent())
    }

    static func passwordFile(_ base: URL, _ device: String) -> URL {
        base.appendingPathComponent("passwords").appendingPathComponent(device)
    }

    /// The password add-device.sh gave `device` (at start or in the latest ``addDevice(_:)``).
    func password(of device: String) throws -> String {
        try Self.firstLine(Self.passwordFile(directory.deletingLastPathComponent(), device))
    }

    /// Runs add-device.sh with this broker's secrets directory.
    static func addDevice(_ arguments: [String], secrets: URL, stdin: String? = nil) async throws -> ProgramRun {
        try await onOwnThread { try addDeviceBlocking(arguments, secrets: secrets, stdin: stdin) }
    }

    static func addDeviceBlocking(_ arguments: [String], secrets: URL, stdin: String? = nil) throws -> ProgramRun {
        try ProgramRun.runBlocking("/bin/bash", [addDevice, "--secrets", secrets.path] + arguments, stdin: stdin)
    }

    /// Adds (or gives a new password to) `device`; the broker sees it after ``reload()``.
    @discardableResult
    func addDevice(_ device: String) async throws -> ProgramRun {
        let file = Self.passwordFile(directory.deletingLastPathComponent(), device)
        return try await Self.addDevice(["--password-out", file.path, device], secrets: secrets)
    }

    func removeDevice(_ device: String) async throws -> ProgramRun {
        try await Self.addDevice(["--remove", device], secrets: secrets)
    }

    /// What `docker compose kill -s HUP mosquitto` does: mosquitto re-reads its password and ACL files.
    func reload() {
        _ = process.withLock { $0?.signal(SIGHUP) }
    }

    /// The shipped config with the substitutions listed on the type, and nothing else.
    func rewrite(_ conf: String) -> String {
        var lines = ["user root", "log_dest stderr", "log_type error", "log_type warning", "log_type notice"]
        for raw in conf.split(separator: "\n", omittingEmptySubsequences: false) {
            var line = String(raw)
            if tls, line.hasPrefix("#tls ") { line.removeFirst(5) }
            if let match = line.wholeMatch(of: /listener (\d+) 0\.0\.0\.0/), let port = Int(match.1), let free = ports[port] {
                line = "listener \(free) 127.0.0.1"
            }
            lines.append(line.replacingOccurrences(of: "/mosquitto/", with: directory.path + "/"))
        }
        return lines.joined(separator: "\n")
    }

    /// The mosquitto service's volumes in docker-compose.yml, recreated under ``directory``.
    private func placeComposeMounts(config: String) throws {
        let service = try #require(try DeploymentFilesTests.services()["mosquitto"])
        let command = try #require(service["command"] as? [String])
        let configPath = command[try #require(command.firstIndex(of: "-c")) + 1]
        var placedConfig = false
        for volume in try #require(service["volumes"] as? [String]) {
            let parts = volume.split(separator: ":").map(String.init)
            let target = try #require(parts.count >= 2 ? parts[1] : nil)
            guard target.hasPrefix("/mosquitto/") else { throw TestFailure("mount outside /mosquitto: \(volume)") }
            let local = URL(fileURLWithPath: directory.path + "/" + target.dropFirst("/mosquitto/".count))
            try FileManager.default.createDirectory(at: local.deletingLastPathComponent(), withIntermediateDirectories: true)
            if target == configPath {
                try config.write(to: local, atomically: true, encoding: .utf8)
                placedConfig = true
            } else if parts[0].hasPrefix("./secrets/") {
                try FileManager.default.createSymbolicLink(
                    at: local, withDestinationURL: secrets.appendingPathComponent(String(parts[0].dropFirst("./secrets/".count))))
            } else if parts[0].hasPrefix("./") {
                try FileManager.default.createSymbolicLink(at: local, withDestinationURL: Repository.file(String(parts[0].dropFirst(2))))
            } else {
                // A named volume (the data directory).
                try FileManager.default.createDirectory(at: local, withIntermediateDirectories: true)
            }
        }
        guard placedConfig else { throw TestFailure("docker-compose.yml does not mount \(configPath)") }
    }

    /// A CA and a server certificate for 127.0.0.1, where the TLS listener's cafile/certfile/keyfile point.
    private func makeCertificates() throws {
        let certs = directory.appendingPathComponent("certs").path
        try FileManager.default.createDirectory(atPath: certs, withIntermediateDirectories: true)
        func openssl(_ arguments: [String]) throws { try TestBroker.run("/usr/bin/openssl", arguments) }
        try openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test ca",
                     "-keyout", "\(certs)/ca.key", "-out", "\(certs)/ca.crt"])
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\n".write(toFile: "\(certs)/san.ext", atomically: true, encoding: .utf8)
        try openssl(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                     "-keyout", "\(certs)/server.key", "-out", "\(certs)/server.csr"])
        try openssl(["x509", "-req", "-in", "\(certs)/server.csr", "-CA", "\(certs)/ca.crt", "-CAkey", "\(certs)/ca.key",
                     "-CAcreateserial", "-days", "2", "-extfile", "\(certs)/san.ext", "-out", "\(certs)/server.crt"])
    }

    private func start() throws {
        guard FileManager.default.isExecutableFile(atPath: TestBroker.executable) else {
            throw TestFailure("cannot find mosquitto (apt-get install mosquitto)")
        }
        let broker = try ChildProcess(
            TestBroker.executable, ["-c", directory.appendingPathComponent("config/mosquitto.conf").path],
            standardOutput: .file(logFile), standardError: .standardOutput)
        process.withLock { $0 = broker }
        let deadline = Date().addingTimeInterval(10)
        var waiting = Set(ports.values.filter { tls || $0 != ports[Self.tlsPort] })
        while Date() < deadline, !waiting.isEmpty {
            if let exit = broker.exit {
                throw TestFailure("mosquitto \(exit): \(log(logFile))")
            }
            for port in waiting {
                if let fd = try? Loopback.connect(port: port) {
                    close(fd)
                    waiting.remove(port)
                }
            }
            usleep(20_000)
        }
        if !waiting.isEmpty { throw TestFailure("mosquitto did not listen on \(waiting) within 10 s: \(log(logFile))") }
        func log(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
    }

    /// SIGTERM, and the wait (SIGKILL after a grace period a broker without persistence never needs).
    func stop() {
        process.withLock { process -> ChildProcess? in
            defer { process = nil }
            return process
        }?.terminate(gracePeriod: .seconds(5))
    }

    // MARK: - Clients

    /// The loopback port of the shipped listener `port` (1883, 1884, 8883).
    func port(_ shipped: Int) throws -> Int {
        try #require(ports[shipped], "Config/mosquitto.conf has no listener \(shipped)")
    }

    func configuration(listener: Int, username: String?, password: String?, clientID: String? = nil,
                       version: MQTTVersion = .v5) throws -> MQTTConfiguration {
        var configuration = MQTTConfiguration(
            host: "127.0.0.1", port: try port(listener), version: version,
            clientID: clientID ?? "test-\(UUID().uuidString.prefix(8))")
        configuration.reconnect = .init(initial: .milliseconds(100), maximum: .milliseconds(500))
        if let username { configuration.credentials = .init(username: username, password: password) }
        if listener == Self.tlsPort { configuration.tls = .init(caFile: caFile) }
        return configuration
    }

    /// A connected client of `username` with its real password (add-device.sh's, or the bridge's or Ditto's).
    func client(_ username: String, on listener: Int, clientID: String? = nil, subscribe filters: [String] = [])
        async throws -> Connected
    {
        let password = switch username {
        case "bridge": bridgePassword
        case "ditto": dittoPassword
        default: try password(of: username)
        }
        return try await Connected.start(
            try configuration(listener: listener, username: username, password: password, clientID: clientID),
            subscribe: filters)
    }

    /// The broker's answer to a connection attempt that must fail; nil (and an issue recorded) when it succeeded.
    func refusal(_ configuration: MQTTConfiguration, sourceLocation: SourceLocation = #_sourceLocation) async throws -> ReasonCode? {
        let client = try MosquittoClient(configuration: configuration, logger: .test)
        do {
            try await client.connect()
            Issue.record("\(configuration.credentials?.username ?? "anonymous") connected on \(configuration.port)",
                         sourceLocation: sourceLocation)
            await client.disconnect()
            return nil
        } catch {
            guard case .refused(let code) = error.kind else {
                Issue.record("expected a refusal, got \(error)", sourceLocation: sourceLocation)
                return nil
            }
            await client.disconnect()
            return code
        }
    }
}

/// A connected client, what it received, and its connection events.
struct Connected: Sendable {
    let client: MosquittoClient
    let received: MessageCollector
    let events: Shared<[ConnectionEvent]>

    static func start(_ configuration: MQTTConfiguration, subscribe filters: [String]) async throws -> Connected {
        let client = try MosquittoClient(configuration: configuration, logger: .test)
        let events = Shared<[ConnectionEvent]>([])
        Task {
            for await event in client.events { events.update { $0.append(event) } }
        }
        let received = MessageCollector(client.messages)
        try await client.connect()
        if !filters.isEmpty {
            let codes = try await client.subscribe(filters.map { Subscription(filter: $0, qos: .atLeastOnce) })
            #expect(codes.allSatisfy { !$0.isFailure }, "SUBACK \(codes) for \(filters)")
        }
        return Connected(client: client, received: received, events: events)
    }

    @discardableResult
    func publish(_ topic: String, _ text: String, retain: Bool = false) async throws(MQTTError) -> PublishAck {
        try await client.publish(to: topic, payload: Array(text.utf8), qos: .atLeastOnce, retain: retain)
    }

    /// Publishes at QoS 1 where this client may not: mosquitto drops it and says so in the MQTT 5 PUBACK (0x87).
    func publishDenied(_ topic: String, _ text: String = "forbidden", retain: Bool = false,
                       sourceLocation: SourceLocation = #_sourceLocation) async {
        do {
            try await publish(topic, text, retain: retain)
            Issue.record("the broker accepted the publish on \(topic)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.kind == .rejected(.notAuthorized), "\(error)", sourceLocation: sourceLocation)
        }
    }

    /// Waits until a message on `topic` with `text` arrived; everything published to this client before it
    /// (and acknowledged to its publisher before it was sent) has arrived by then, so what is missing stays missing.
    func waitFor(_ topic: String, _ text: String, sourceLocation: SourceLocation = #_sourceLocation) async -> [MQTTMessage] {
        let arrived = await received.first(timeout: .seconds(10)) { $0.topic == topic && $0.payload == Array(text.utf8) }
        #expect(arrived != nil, "\(topic) \(text) did not arrive; got \(received.messages.map(\.topic))",
                sourceLocation: sourceLocation)
        return received.messages
    }

    var disconnects: [ConnectionEvent] {
        events.value.filter { if case .disconnected = $0 { true } else { false } }
    }

    func close() async { await client.disconnect() }
}
