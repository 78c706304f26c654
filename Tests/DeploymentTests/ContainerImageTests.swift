import Foundation
import Logging
import MQTT
import Mosquitto
import MosquittoTestSupport
import Testing
import Yams

/// The container image without a container engine: the Dockerfile's runtime stage rebuilt as a chroot
/// (`debootstrap --variant=minbase` of the stage's Debian release, then the stage's own `RUN` lines), the binary
/// built by the build stage's own command, and the compose service's command and environment run in it, as the
/// image's user, against brokers on loopback. Every command comes from the Dockerfile and docker-compose.yml, so
/// what passes here is what `docker compose up` starts.
@Suite(.serialized)
struct ContainerImageTests {
    static let dockerfile = Result { try Dockerfile(text: Repository.text("Dockerfile")) }

    @Test func theDockerfileHasWhatTheChrootNeeds() throws {
        let file = try Self.dockerfile.get()
        let runtime = try file.stage("runtime")
        #expect(runtime.base.hasPrefix("debian:"))
        #expect(try file.stage("build").all("RUN").contains { $0.arguments.contains("swift build") })
        #expect(runtime.last("USER") != nil, "the image runs as a user of its own")
        #expect(runtime.last("ENTRYPOINT") != nil && runtime.last("HEALTHCHECK") != nil)
        let packages = runtime.all("RUN").flatMap { Dockerfile.aptPackages(in: $0.arguments) }
        #expect(packages.contains("libmosquitto1"))
    }

    /// The packages the binary's shared libraries come from, as written in the Dockerfile's `# ldd:` comment.
    static func documentedLibraryPackages() throws -> Set<String> {
        let text = try Repository.text("Dockerfile")
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("# ldd:") }) else {
            throw TestFailure("the Dockerfile has no '# ldd:' line naming the packages of the binary's libraries")
        }
        return Set(line.dropFirst("# ldd:".count).split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init))
    }

    @Test(.timeLimit(.minutes(20)))
    func theRuntimeStageRunsTheComposeBridgeAsAChroot() async throws {
        guard getuid() == 0 else {
            throw TestFailure("debootstrap and chroot need root (CI and the project's machines run as root)")
        }
        let file = try Self.dockerfile.get()
        let image = try await ImageRoot.build(from: file)
        defer { image.remove() }

        // What the binary loads, and where it comes from.
        let ldd = try await image.run(["/usr/bin/ldd", ImageRoot.binary])
        #expect(ldd.status == 0, "\(ldd)")
        #expect(!ldd.output.contains("not found"), "a library the binary needs is not in the image:\n\(ldd.output)")
        #expect(!ldd.output.contains("libcurl"), "libcurl is loaded:\n\(ldd.output)")
        let packages = try await image.packagesOwning(libraries: ImageRoot.libraries(inLDDOutput: ldd.output))
        let documented = Result { try Self.documentedLibraryPackages() }
        #expect((try? documented.get()) == packages,
                "the Dockerfile's '# ldd:' line must name the packages of the binary's libraries: \(packages.sorted()) (\(documented))")

        // `--version`, as the image's user.
        let version = try await image.run(["/usr/local/bin/ditto-mqtt-bridge", "--version"], asImageUser: true)
        #expect(version.status == 0 && !version.output.isEmpty, "\(version)")
        try #require(version.status == 0, "the binary does not start in the image")

        // The compose service, against two brokers on loopback that want the bridge's password (the compose secret,
        // mounted where compose mounts it).
        let deviceBroker = try await TestBroker.start(.init(passwordFile: true))
        let dittoBroker = try await TestBroker.start(.init(passwordFile: true))
        defer {
            deviceBroker.stop()
            dittoBroker.stop()
        }
        let compose = try ComposeBridgeService.load()
        #expect(!compose.secrets.isEmpty, "the bridge service gets its broker password as a compose secret")
        for secret in compose.secrets {
            try image.write("\(deviceBroker.password)\n", to: "/run/secrets/\(secret)", mode: 0o644)
        }
        let operationsPort = try TestBroker.freePort()
        var environment = compose.environment
        for key in environment.keys where key.hasSuffix("_HOST") { environment[key] = "127.0.0.1" }
        environment["BRIDGE_DEVICE_PORT"] = "\(deviceBroker.port)"
        environment["BRIDGE_DITTO_PORT"] = "\(dittoBroker.port)"
        environment["BRIDGE_OPERATIONS_LISTEN"] = "127.0.0.1:\(operationsPort)"

        let command = try compose.command ?? file.cmd
        let configPath = try #require(command.firstIndex(of: "--config").map { command[$0 + 1] }, "\(command)")
        let check = try await image.run(try file.entrypoint + ["check", "--config", configPath], asImageUser: true,
                                        environment: environment)
        #expect(check.status == 0, "\(check)")

        let ditto = try MosquittoClient(configuration: dittoBroker.clientConfiguration(clientID: "ditto-standin"),
                                        logger: Logger(label: "image-test"))
        try await ditto.connect()
        defer { Task { await ditto.disconnect() } }
        let fromBridge = MessageCollector(ditto.messages)
        try await ditto.subscribe([Subscription(filter: "ditto/in/#", qos: .atLeastOnce)])

        let bridge = try image.start(try file.entrypoint + command, environment: environment,
                                     logPath: image.directory.appendingPathComponent("bridge.log").path)
        defer { bridge.kill9() }

        // The image's HEALTHCHECK command answers 0 once the bridge serves /health.
        let healthcheck = try Dockerfile.healthcheckCommand(try #require(try file.stage("runtime").last("HEALTHCHECK")))
        var healthy = false
        for _ in 0..<100 where !healthy {
            healthy = try await image.run(healthcheck, asImageUser: true, environment: environment).status == 0
            if !healthy { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(healthy, "the HEALTHCHECK command never succeeded; bridge log:\n\(bridge.log)")
        let ready = try await image.run(
            try file.entrypoint + ["probe", "--config", configPath, "--path", "/ready"], asImageUser: true,
            environment: environment)
        #expect(ready.status == 0, "\(ready)\nbridge log:\n\(bridge.log)")

        // One device message bridged to Ditto's side.
        let device = try MosquittoClient(configuration: deviceBroker.clientConfiguration(clientID: "sensor-1"),
                                         logger: Logger(label: "image-test"))
        try await device.connect()
        defer { Task { await device.disconnect() } }
        try await device.publish(to: "devices/sensor-1/telemetry/temperature", payload: Array(#"{"value": 21.5}"#.utf8))
        let event = await fromBridge.first(timeout: .seconds(10)) { $0.topic == "ditto/in/org.example:sensor-1" }
        let text = event.map { String(decoding: $0.payload, as: UTF8.self) } ?? ""
        #expect(text.contains(#""topic":"org.example/sensor-1/things/live/events/modified""#),
                "no live event reached the Ditto side (got \(text)); bridge log:\n\(bridge.log)")
        #expect(text.contains(#""value":21.5"#), "\(text)")

        // The spool lives on the compose volume's mount point, written by the image's user.
        let spool = image.root.appendingPathComponent(compose.volumeTargets.first ?? "/nonexistent").path
        let spoolOwner = (try? FileManager.default.attributesOfItem(atPath: spool)[.ownerAccountID] as? Int) ?? nil
        #expect(compose.volumeTargets.count == 1 && spoolOwner.map { "\($0)" } == image.user.split(separator: ":").first.map(String.init),
                "the bridge-state volume's mount point belongs to the image's user \(image.user): \(String(describing: spoolOwner))")
        let spoolFiles = (try? FileManager.default.subpathsOfDirectory(atPath: spool)) ?? []
        #expect(spoolFiles.contains { $0.hasPrefix("spool") }, "no spool under \(spool): \(spoolFiles)")

        // docker stop: SIGTERM, exit 0; the HEALTHCHECK then fails.
        bridge.signal(SIGTERM)
        let status = await bridge.waitForExit(timeout: .seconds(15))
        #expect(status == 0, "exit status \(String(describing: status)) after SIGTERM; log:\n\(bridge.log)")
        let after = try await image.run(healthcheck, asImageUser: true, environment: environment)
        #expect(after.status != 0, "the HEALTHCHECK succeeded with the bridge stopped: \(after)")
    }
}

/// The bridge service of docker-compose.yml: its command, environment, secrets and volume mount points.
struct ComposeBridgeService {
    var command: [String]?
    var environment: [String: String]
    /// Compose mounts each at `/run/secrets/<name>`.
    var secrets: [String]
    /// Where its named volumes are mounted.
    var volumeTargets: [String]

    static func load() throws -> ComposeBridgeService {
        guard let compose = try Yams.load(yaml: Repository.text("docker-compose.yml")) as? [String: Any],
            let services = compose["services"] as? [String: Any], let bridge = services["bridge"] as? [String: Any]
        else { throw TestFailure("docker-compose.yml has no service 'bridge'") }
        var environment: [String: String] = [:]
        if let mapping = bridge["environment"] as? [String: Any] {
            environment = mapping.mapValues { "\($0)" }
        } else {
            for item in bridge["environment"] as? [String] ?? [] {
                guard let equals = item.firstIndex(of: "=") else { continue }
                environment[String(item[..<equals])] = String(item[item.index(after: equals)...])
            }
        }
        let secrets = (bridge["secrets"] as? [Any] ?? []).compactMap { item in
            item as? String ?? (item as? [String: Any])?["source"] as? String
        }
        let volumeTargets = (bridge["volumes"] as? [String] ?? []).compactMap { volume -> String? in
            let parts = volume.split(separator: ":").map(String.init)
            return parts.count >= 2 && !parts[0].hasPrefix(".") && !parts[0].hasPrefix("/") ? parts[1] : nil
        }
        return ComposeBridgeService(
            command: bridge["command"] as? [String], environment: environment, secrets: secrets,
            volumeTargets: volumeTargets)
    }
}

extension Dockerfile {
    var entrypoint: [String] {
        get throws { try Dockerfile.execForm(try #require(try stage("runtime").last("ENTRYPOINT")).arguments) }
    }

    var cmd: [String] {
        get throws { try Dockerfile.execForm(try #require(try stage("runtime").last("CMD")).arguments) }
    }
}
