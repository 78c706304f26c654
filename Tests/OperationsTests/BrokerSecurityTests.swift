import BridgeConfig
import Foundation
import MQTT
import Mosquitto
import MosquittoTestSupport
import Testing

/// The shipped broker setup (Config/mosquitto.conf, Config/mosquitto/*.acl, users from scripts/add-device.sh, placed
/// as docker-compose.yml mounts them) on a real mosquitto: what a device on the LAN must not do, and what the
/// devices, the bridge and Ditto's connection need. See ``ShippedBroker`` for the few rewritten lines.
///
/// mosquitto drops a publish the ACL denies (MQTT 5: PUBACK 0x87) and grants any subscription, filtering what it
/// delivers. So each "must not" is checked where it would show: a client with the rights subscribes, the forbidden
/// publish goes out, then an allowed control message; once the control arrived, the forbidden one would have too.
@Suite("Broker security: the shipped mosquitto config")
struct BrokerSecurityTests {
    static let device = ShippedBroker.devicePort
    static let dittoSide = ShippedBroker.dittoPort

    // MARK: - Who may connect where

    @Test func anonymousClientsAreRefusedOnTheDeviceListener() async throws {
        let broker = try await ShippedBroker.start()
        let code = try await broker.refusal(try broker.configuration(listener: Self.device, username: nil, password: nil))
        #expect(code == .notAuthorized)
    }

    @Test func anonymousClientsAreRefusedOnTheDittoListener() async throws {
        let broker = try await ShippedBroker.start()
        let code = try await broker.refusal(try broker.configuration(listener: Self.dittoSide, username: nil, password: nil))
        #expect(code == .notAuthorized)
    }

    @Test func aDeviceCannotLogInOnTheDittoListener() async throws {
        let broker = try await ShippedBroker.start()
        let password = try broker.password(of: "sensor-1")
        let code = try await broker.refusal(
            try broker.configuration(listener: Self.dittoSide, username: "sensor-1", password: password))
        #expect(code == .notAuthorized || code == .badUsernameOrPassword)
        // Its password is right on its own listener.
        let device = try await broker.client("sensor-1", on: Self.device)
        await device.close()
    }

    @Test func dittosUserCannotLogInOnTheDeviceListener() async throws {
        let broker = try await ShippedBroker.start()
        let code = try await broker.refusal(
            try broker.configuration(listener: Self.device, username: "ditto", password: broker.dittoPassword))
        #expect(code == .notAuthorized || code == .badUsernameOrPassword)
    }

    @Test(arguments: [device, dittoSide])
    func aWrongPasswordIsRefused(listener: Int) async throws {
        let broker = try await ShippedBroker.start()
        let user = listener == Self.device ? "sensor-1" : "bridge"
        let right = user == "bridge" ? broker.bridgePassword : try broker.password(of: user)
        let code = try await broker.refusal(
            try broker.configuration(listener: listener, username: user, password: right + "x"))
        #expect(code == .notAuthorized || code == .badUsernameOrPassword)
        let empty = try await broker.refusal(try broker.configuration(listener: listener, username: user, password: nil))
        #expect(empty == .notAuthorized || empty == .badUsernameOrPassword)
    }

    // MARK: - A device and Ditto's topics

    @Test func aDeviceCannotPublishOnDittoIn() async throws {
        let broker = try await ShippedBroker.start()
        let ditto = try await broker.client("ditto", on: Self.dittoSide, subscribe: ["ditto/in/#"])
        let device = try await broker.client("sensor-1", on: Self.device)
        // As Ditto's connection would execute it: a twin modification of another thing.
        await device.publishDenied("ditto/in/org.example:other", "{\"topic\":\"org.example/other/things/twin/commands/delete\"}")
        let bridge = try await broker.client("bridge", on: Self.dittoSide)
        try await bridge.publish("ditto/in/org.example:sensor-1", "control")
        let received = await ditto.waitFor("ditto/in/org.example:sensor-1", "control")
        #expect(received.map(\.topic) == ["ditto/in/org.example:sensor-1"])
        for client in [ditto, device, bridge] { await client.close() }
    }

    @Test func aDeviceCannotPublishOnDittoOut() async throws {
        let broker = try await ShippedBroker.start()
        // The bridge forwards what arrives here to devices as Ditto's live commands.
        let bridge = try await broker.client("bridge", on: Self.dittoSide, subscribe: ["ditto/out/#"])
        let device = try await broker.client("sensor-1", on: Self.device)
        await device.publishDenied("ditto/out/org.example:sensor-2", "{\"topic\":\"fake command\"}")
        let ditto = try await broker.client("ditto", on: Self.dittoSide)
        try await ditto.publish("ditto/out/org.example:sensor-1", "control")
        let received = await bridge.waitFor("ditto/out/org.example:sensor-1", "control")
        #expect(received.map(\.topic) == ["ditto/out/org.example:sensor-1"])
        for client in [ditto, device, bridge] { await client.close() }
    }

    @Test func aDeviceCannotReadDittosTopics() async throws {
        let broker = try await ShippedBroker.start()
        let device = try await broker.client("sensor-1", on: Self.device, subscribe: ["ditto/#", "#"])
        let ditto = try await broker.client("ditto", on: Self.dittoSide)
        let bridgeDitto = try await broker.client("bridge", on: Self.dittoSide)
        try await ditto.publish("ditto/out/org.example:sensor-1", "a live command")
        try await bridgeDitto.publish("ditto/in/org.example:sensor-1", "a device's event")
        let bridge = try await broker.client("bridge", on: Self.device)
        try await bridge.publish("devices/sensor-1/inbox/control", "control")
        let received = await device.waitFor("devices/sensor-1/inbox/control", "control")
        #expect(received.allSatisfy { $0.topic == "devices/sensor-1/inbox/control" }, "\(received.map(\.topic))")
        for client in [device, ditto, bridgeDitto, bridge] { await client.close() }
    }

    // MARK: - A device and other devices

    /// What sensor-2 publishes (Config/bridge.yaml's topic layout): sensor-1 must not speak for it.
    static let sensor2Uplink = [
        "devices/sensor-2/telemetry/temperature", "devices/sensor-2/events/alarm", "devices/sensor-2/reply",
        "devices/sensor-2/status",
    ]

    @Test(arguments: sensor2Uplink)
    func aDeviceCannotPublishOnAnotherDevicesTopic(topic: String) async throws {
        let broker = try await ShippedBroker.start()
        let bridge = try await broker.client("bridge", on: Self.device, subscribe: ["devices/#"])
        let device = try await broker.client("sensor-1", on: Self.device)
        // Retained on the status topic, "offline" would mark sensor-2 offline for every later subscriber.
        await device.publishDenied(topic, "offline", retain: topic.hasSuffix("/status"))
        let other = try await broker.client("sensor-2", on: Self.device)
        try await other.publish("devices/sensor-2/telemetry/control", "{\"value\": 1}")
        let received = await bridge.waitFor("devices/sensor-2/telemetry/control", "{\"value\": 1}")
        #expect(received.map(\.topic) == ["devices/sensor-2/telemetry/control"])
        for client in [bridge, device, other] { await client.close() }
    }

    /// What the bridge sends sensor-2 and what sensor-2 sends: sensor-1 must read none of it.
    static let sensor2Traffic: [(publisher: String, topic: String)] = [
        ("bridge", "devices/sensor-2/inbox/reboot"), ("bridge", "devices/sensor-2/set/temperature/target"),
        ("sensor-2", "devices/sensor-2/telemetry/temperature"), ("sensor-2", "devices/sensor-2/events/alarm"),
        ("sensor-2", "devices/sensor-2/status"), ("sensor-2", "devices/sensor-2/reply"),
    ]

    @Test(arguments: sensor2Traffic)
    func aDeviceCannotReadAnotherDevicesTopic(publisher: String, topic: String) async throws {
        let broker = try await ShippedBroker.start()
        let device = try await broker.client("sensor-1", on: Self.device, subscribe: ["devices/#", "devices/sensor-2/#"])
        let sender = try await broker.client(publisher, on: Self.device)
        try await sender.publish(topic, "for sensor-2 only")
        let bridge = try await broker.client("bridge", on: Self.device)
        try await bridge.publish("devices/sensor-1/inbox/control", "control")
        let received = await device.waitFor("devices/sensor-1/inbox/control", "control")
        #expect(received.allSatisfy { $0.topic == "devices/sensor-1/inbox/control" }, "\(received.map(\.topic))")
        for client in [device, sender, bridge] { await client.close() }
    }

    /// Client ids are the broker's, across listeners: connecting with another client's id would end that client's
    /// connection (session take-over). The device listener replaces a client's id with its username.
    @Test(arguments: [
        ("bridge", device, "bridge"), ("bridge", dittoSide, "ditto-bridge-ditto"), ("ditto", dittoSide, "ditto-edge-bridge"),
        ("sensor-2", device, "sensor-2"),
    ])
    func aDeviceCannotTakeOverAnotherClientsSession(victim: String, listener: Int, clientID: String) async throws {
        let broker = try await ShippedBroker.start()
        let target = try await broker.client(victim, on: listener, clientID: clientID, subscribe: ["devices/#", "ditto/#"])
        let device = try await broker.client("sensor-1", on: Self.device, clientID: clientID)
        // Both stay connected: sensor-1's own control message reaches the victim where it may read it...
        let (controlUser, controlListener, controlTopic) = switch victim {
        case "bridge" where listener == Self.device: ("sensor-1", Self.device, "devices/sensor-1/status")
        case "sensor-2": ("bridge", Self.device, "devices/sensor-2/inbox/control")
        case "bridge": ("ditto", Self.dittoSide, "ditto/out/org.example:sensor-1")
        default: ("bridge", Self.dittoSide, "ditto/in/org.example:sensor-1")
        }
        let controller = controlUser == "sensor-1" ? device : try await broker.client(controlUser, on: controlListener)
        try await controller.publish(controlTopic, "control")
        _ = await target.waitFor(controlTopic, "control")
        try await Task.sleep(for: .milliseconds(200))
        #expect(target.disconnects.isEmpty, "\(victim) (\(clientID)): \(target.events.value)")
        #expect(device.disconnects.isEmpty, "sensor-1: \(device.events.value)")
        #expect(target.client.isConnected && device.client.isConnected)
        for client in [target, device, controller] { await client.close() }
    }

    // MARK: - What each one needs

    @Test func aDeviceUsesItsOwnTopicsAndTheBridgeReadsAndWritesThem() async throws {
        let broker = try await ShippedBroker.start()
        let bridge = try await broker.client("bridge", on: Self.device, subscribe: ["devices/#"])
        let device = try await broker.client("sensor-1", on: Self.device, subscribe: ["devices/sensor-1/#"])
        let uplink = ["devices/sensor-1/telemetry/temperature", "devices/sensor-1/events/alarm",
                      "devices/sensor-1/status", "devices/sensor-1/reply"]
        for topic in uplink {
            let ack = try await device.publish(topic, "up")
            #expect(!ack.reasonCode.isFailure)
        }
        let downlink = ["devices/sensor-1/inbox/reboot", "devices/sensor-1/set/temperature/target",
                        "devices/sensor-1/set/config/limits/high"]
        for topic in downlink { try await bridge.publish(topic, "down") }
        // The bridge's devices/# also brings back its own commands.
        let up = await bridge.received.wait(for: uplink.count + downlink.count)
        #expect(up.map(\.topic).filter { !downlink.contains($0) } == uplink)
        let down = await device.received.wait(for: downlink.count)
        // The device's subscription (devices/sensor-1/#) would also match what it publishes: the ACL lets it read
        // only its commands.
        #expect(down.map(\.topic) == downlink)
        for client in [bridge, device] { await client.close() }
    }

    /// The ACL follows the compose config's topic layout: every topic its rules read from a device is one the
    /// device may write, every topic they send a device one it may read (rendered for sensor-1; other
    /// placeholders are "x").
    @Test func everyTopicOfTheContainerConfigsRulesIsOpenToItsDevice() async throws {
        let environment = try DeploymentFilesTests.containerEnvironment()
        defer { DeploymentFilesTests.removeContainerEnvironment(environment) }
        let configuration = try BridgeConfiguration.load(
            path: Repository.file("Config/bridge.docker.yaml").path, environment: environment)
        func render(_ template: TopicTemplate) throws -> String {
            try template.render(Dictionary(uniqueKeysWithValues: template.placeholders.map { ($0, $0 == "deviceId" ? "sensor-1" : "x") }))
        }
        var written = try configuration.uplink.map { try render($0.topic) }
        written.append(try render(try #require(configuration.deviceStatus?.topic)))
        written += try configuration.downlink.compactMap(\.reply.topic).map(render)
        let read = try configuration.downlink.map { try render($0.topic) }
        #expect(written.count >= 4 && read.count >= 2, "\(written) \(read)")

        let broker = try await ShippedBroker.start()
        let bridge = try await broker.client("bridge", on: Self.device, subscribe: ["devices/+/telemetry/#", "devices/+/events/#",
                                                                                    "devices/+/status", "devices/+/reply"])
        let device = try await broker.client("sensor-1", on: Self.device, subscribe: ["devices/sensor-1/#"])
        for topic in written {
            let ack = try await device.publish(topic, "up")
            #expect(!ack.reasonCode.isFailure, "\(topic)")
        }
        for topic in read { try await bridge.publish(topic, "down") }
        #expect(Set(await bridge.received.wait(for: written.count).map(\.topic)) == Set(written))
        #expect(Set(await device.received.wait(for: read.count).map(\.topic)) == Set(read))
        for client in [bridge, device] { await client.close() }
    }

    @Test func theBridgeAndDittoExchangeOnTheDittoListener() async throws {
        let broker = try await ShippedBroker.start()
        let ditto = try await broker.client("ditto", on: Self.dittoSide, subscribe: ["ditto/in/#"])
        let bridge = try await broker.client("bridge", on: Self.dittoSide, subscribe: ["ditto/out/#"])
        try await bridge.publish("ditto/in/org.example:sensor-1", "event")
        try await ditto.publish("ditto/out/org.example:sensor-1", "command")
        try await ditto.publish("ditto/out/org.example:sensor-1/reply", "answer")
        #expect(await ditto.received.wait(for: 1).map(\.topic) == ["ditto/in/org.example:sensor-1"])
        #expect(await bridge.received.wait(for: 2).map(\.topic)
            == ["ditto/out/org.example:sensor-1", "ditto/out/org.example:sensor-1/reply"])
        for client in [ditto, bridge] { await client.close() }
    }

    @Test func theBridgeCannotSpeakForDittoNorDittoForTheBridge() async throws {
        let broker = try await ShippedBroker.start()
        let ditto = try await broker.client("ditto", on: Self.dittoSide, subscribe: ["ditto/in/#"])
        let bridge = try await broker.client("bridge", on: Self.dittoSide, subscribe: ["ditto/out/#"])
        await bridge.publishDenied("ditto/out/org.example:sensor-1")
        await ditto.publishDenied("ditto/in/org.example:sensor-1")
        // And the bridge has no business on ditto/# from the device listener.
        let bridgeDevices = try await broker.client("bridge", on: Self.device)
        await bridgeDevices.publishDenied("ditto/in/org.example:sensor-1")
        try await bridge.publish("ditto/in/org.example:sensor-1", "control")
        try await ditto.publish("ditto/out/org.example:sensor-1", "control")
        #expect(await ditto.waitFor("ditto/in/org.example:sensor-1", "control").count == 1)
        #expect(await bridge.waitFor("ditto/out/org.example:sensor-1", "control").count == 1)
        for client in [ditto, bridge, bridgeDevices] { await client.close() }
    }

    /// The shipped bridge config logs in on both listeners with the secret add-device.sh made, and Ditto's
    /// connection (Config/ditto-connection.json with init.sh's substitution) logs in on the Ditto listener.
    @Test func theShippedBridgeConfigAndDittoConnectionLogIn() async throws {
        let broker = try await ShippedBroker.start()
        let configuration = try BridgeConfiguration.load(
            path: Repository.file("Config/bridge.docker.yaml").path,
            environment: ["BRIDGE_PASSWORD_FILE": broker.secrets.appendingPathComponent("bridge.password").path])
        func bridgeClient(_ connection: BrokerConnection, subscribe: [String]) async throws -> Connected {
            var mqtt = try broker.configuration(
                listener: connection.port, username: connection.username, password: connection.password?.value,
                clientID: connection.clientID)
            mqtt.cleanStart = connection.cleanStart
            mqtt.sessionExpiry = connection.sessionExpiry
            return try await Connected.start(mqtt, subscribe: subscribe)
        }
        let uplinkFilters = configuration.uplink.map(\.topic.filter) + [try #require(configuration.deviceStatus?.topic.filter)]
        let deviceSide = try await bridgeClient(configuration.connections.device, subscribe: uplinkFilters)
        let dittoSide = try await bridgeClient(try #require(configuration.connections.ditto.broker), subscribe: [configuration.ditto.subscribeFilter.filter])

        let uri = try #require(DeploymentFilesTests.connection()["uri"] as? String)
        let rendered = try #require(URLComponents(string: DeploymentFilesTests.renderConnectionURI(uri, password: broker.dittoPassword)))
        let dittoConfiguration = try broker.configuration(
            listener: try #require(rendered.port), username: rendered.user, password: rendered.password, clientID: "ditto-edge-bridge")
        let ditto = try await Connected.start(dittoConfiguration, subscribe: ["ditto/in/#"])

        let thing = "org.example:sensor-1"
        let values = ["thingId": thing, "namespace": "org.example", "thingName": "sensor-1"]
        try await dittoSide.publish(try configuration.ditto.publishTopic.render(values), "to Ditto")
        _ = await ditto.waitFor("ditto/in/\(thing)", "to Ditto")
        try await ditto.publish("ditto/out/\(thing)", "to the bridge")
        _ = await dittoSide.waitFor("ditto/out/\(thing)", "to the bridge")
        try await deviceSide.publish("devices/sensor-1/inbox/reboot", "{}")

        // The simulated device of the ditto profile, with the password add-device.sh wrote for it.
        let simulation = try await onOwnThread {
            try ProgramRun.runBlocking("/bin/sh", [Repository.file("Config/ditto/simulated-device.sh").path], environment: [
                "BROKER_HOST": "127.0.0.1", "BROKER_PORT": String(try broker.port(Self.device)), "DEVICE_ID": "sensor-1",
                "DEVICE_PASSWORD_FILE": ShippedBroker.passwordFile(broker.directory.deletingLastPathComponent(), "sensor-1").path,
                "COUNT": "1", "INTERVAL": "0",
            ])
        }
        #expect(simulation.status == 0, "\(simulation.stderr)")
        _ = await deviceSide.waitFor("devices/sensor-1/telemetry/temperature", "{\"value\": 20.7}")
        #expect(deviceSide.received.messages.map(\.topic) == ["devices/sensor-1/status", "devices/sensor-1/telemetry/temperature"])
        for client in [deviceSide, dittoSide, ditto] { await client.close() }
    }

    // MARK: - scripts/add-device.sh

    @Test(arguments: [
        "a/b", "+", "#", "sensor+1", "sensor#", "devices/#", "", " ", "with space", "x:y", "-rm", ".hidden", "%u",
        "ünïcode", String(repeating: "a", count: 65),
    ])
    func addDeviceRefusesAnIDThatIsNotATopicLevel(id: String) async throws {
        let secrets = FileManager.default.temporaryDirectory.appendingPathComponent("add-device-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: secrets) }
        let run = try await ShippedBroker.addDevice(["--", id], secrets: secrets)
        #expect(run.status != 0)
        if id.isEmpty {
            #expect(run.stderr.contains("usage:"), "\(run.stderr)")
        } else {
            #expect(run.stderr.contains("'\(id)' is not a device id"), "\(run.stderr)")
            #expect(run.stderr.contains("no '/', '+', '#'"))
        }
        #expect(run.stdout.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: secrets.path), "nothing is created for a bad id")
    }

    /// The users on the trusted side, and every client id it connects with (on the device listener a device's
    /// username is its client id, and client ids are the broker's): none may become a device.
    static func trustedNames() throws -> [String] {
        var names: Set<String> = []
        for acl in ["Config/mosquitto/devices.acl", "Config/mosquitto/ditto.acl"] {
            for line in try Repository.text(acl).split(separator: "\n") where line.hasPrefix("user ") {
                names.insert(String(line.dropFirst(5)))
            }
        }
        let environment = try DeploymentFilesTests.containerEnvironment()
        defer { DeploymentFilesTests.removeContainerEnvironment(environment) }
        for file in ["Config/bridge.docker.yaml", "Config/bridge.yaml"] {
            let configuration = try BridgeConfiguration.load(path: Repository.file(file).path, environment: environment)
            names.insert(configuration.connections.device.clientID)
            names.insert(try #require(configuration.connections.ditto.broker).clientID)
        }
        let specific = try #require(DeploymentFilesTests.connection()["specificConfig"] as? [String: Any])
        names.insert(try #require(specific["clientId"] as? String))
        return names.sorted()
    }

    @Test func addDeviceRefusesTheTrustedSidesNames() async throws {
        let names = try Self.trustedNames()
        #expect(Set(["bridge", "ditto", "ditto-bridge-ditto", "ditto-edge-bridge"]).isSubset(of: names), "\(names)")
        let secrets = FileManager.default.temporaryDirectory.appendingPathComponent("add-device-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: secrets) }
        for name in names {
            let run = try await ShippedBroker.addDevice([name], secrets: secrets)
            #expect(run.status != 0, "\(name)")
            #expect(run.stderr.contains("'\(name)' is reserved"), "\(run.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: secrets.path), "nothing is created for a reserved name")
    }

    @Test func addDeviceCreatesTheSecretsWithTheirModes() async throws {
        let secrets = FileManager.default.temporaryDirectory.appendingPathComponent("add-device-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: secrets) }
        let run = try await ShippedBroker.addDevice(["lamp-2"], secrets: secrets)
        #expect(run.status == 0, "\(run.stderr)")
        // Printed once: the password is all of stdout.
        let password = run.stdout.trimmingCharacters(in: .newlines)
        #expect(password.count == 32 && password.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) }, "\(run.stdout)")
        #expect(run.stderr.contains("docker compose kill -s HUP mosquitto"))
        func mode(_ path: String) throws -> Int {
            try #require(FileManager.default.attributesOfItem(atPath: secrets.appendingPathComponent(path).path)[.posixPermissions] as? Int)
        }
        #expect(try mode(".") == 0o700)
        #expect(try mode("mosquitto") == 0o755)
        for file in ["mosquitto/devices.passwd", "mosquitto/ditto.passwd", "bridge.password", "ditto.password"] {
            #expect(try mode(file) == 0o644, "\(file)")
        }
        func users(_ file: String) throws -> [String] {
            try String(contentsOf: secrets.appendingPathComponent(file), encoding: .utf8)
                .split(separator: "\n").map { String($0.prefix { $0 != ":" }) }.sorted()
        }
        #expect(try users("mosquitto/devices.passwd") == ["bridge", "lamp-2"])
        #expect(try users("mosquitto/ditto.passwd") == ["bridge", "ditto"])
        #expect(try String(contentsOf: secrets.appendingPathComponent("mosquitto/devices.passwd"), encoding: .utf8)
            .contains(password) == false, "only the hash is stored")

        // A second device keeps the bridge's and Ditto's passwords; --password-out writes 0600.
        let bridgePassword = try ShippedBroker.firstLine(secrets.appendingPathComponent("bridge.password"))
        let out = secrets.appendingPathComponent("lamp-3.password")
        let second = try await ShippedBroker.addDevice(["--password-out", out.path, "lamp-3"], secrets: secrets)
        #expect(second.status == 0 && second.stdout.isEmpty, "\(second)")
        #expect(try mode("lamp-3.password") == 0o600)
        #expect(try ShippedBroker.firstLine(secrets.appendingPathComponent("bridge.password")) == bridgePassword)
        #expect(try users("mosquitto/devices.passwd") == ["bridge", "lamp-2", "lamp-3"])

        let missing = try await ShippedBroker.addDevice(["--remove", "lamp-9"], secrets: secrets)
        #expect(missing.status != 0 && missing.stderr.contains("no device 'lamp-9'"), "\(missing.stderr)")
        let nowhere = try await ShippedBroker.addDevice(
            ["--password-out", secrets.appendingPathComponent("missing/lamp-6.password").path, "lamp-6"], secrets: secrets)
        #expect(nowhere.status != 0 && nowhere.stderr.contains("cannot write"), "\(nowhere.stderr)")
        #expect(try users("mosquitto/devices.passwd") == ["bridge", "lamp-2", "lamp-3"], "no login whose password went nowhere")
        let unknown = try await ShippedBroker.addDevice(["--frobnicate", "lamp-4"], secrets: secrets)
        #expect(unknown.status != 0 && unknown.stderr.contains("unknown option --frobnicate"), "\(unknown.stderr)")
    }

    @Test func addDeviceTakesAPasswordFromStdin() async throws {
        let broker = try await ShippedBroker.start(devices: ["sensor-1"])
        let run = try await ShippedBroker.addDevice(["--password-file", "-", "lamp-5"], secrets: broker.secrets, stdin: "chosen pass\n")
        #expect(run.status == 0 && run.stdout.isEmpty, "\(run)")
        broker.reload()
        let ok = await eventually(timeout: .seconds(10)) {
            guard let configuration = try? broker.configuration(listener: Self.device, username: "lamp-5", password: "chosen pass"),
                  let client = try? MosquittoClient(configuration: configuration, logger: .test) else { return false }
            defer { Task { await client.disconnect() } }
            return (try? await client.connect()) != nil
        }
        #expect(ok, "lamp-5 logs in with the password it was given")
    }

    @Test func removingADeviceAndReloadingLocksItOut() async throws {
        let broker = try await ShippedBroker.start()
        let device = try await broker.client("sensor-1", on: Self.device, subscribe: ["devices/sensor-1/inbox/#"])
        let password = try broker.password(of: "sensor-1")
        let run = try await broker.removeDevice("sensor-1")
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.contains("docker compose kill -s HUP mosquitto"))
        broker.reload()
        // mosquitto closes the connection of a user that is gone, and refuses it from then on.
        #expect(await eventually(timeout: .seconds(10)) { !device.disconnects.isEmpty }, "\(device.events.value)")
        await device.close()
        let code = try await broker.refusal(
            try broker.configuration(listener: Self.device, username: "sensor-1", password: password))
        #expect(code == .notAuthorized || code == .badUsernameOrPassword)
        // Another device is not affected.
        let other = try await broker.client("sensor-2", on: Self.device)
        await other.close()
    }

    @Test func addingADeviceAgainChangesItsPassword() async throws {
        let broker = try await ShippedBroker.start()
        let old = try broker.password(of: "sensor-1")
        let run = try await broker.addDevice("sensor-1")
        #expect(run.status == 0 && run.stderr.contains("new password for sensor-1"), "\(run.stderr)")
        let new = try broker.password(of: "sensor-1")
        #expect(new != old)
        broker.reload()
        let refused = await eventually(timeout: .seconds(10)) {
            guard let configuration = try? broker.configuration(listener: Self.device, username: "sensor-1", password: old),
                  let client = try? MosquittoClient(configuration: configuration, logger: .test) else { return false }
            defer { Task { await client.disconnect() } }
            return (try? await client.connect()) == nil
        }
        #expect(refused, "the old password stops working after the reload")
        let device = try await broker.client("sensor-1", on: Self.device)
        await device.close()
    }

    // MARK: - The optional TLS listener

    @Test func theTLSListenerLetsOnlyTheDittoSideIn() async throws {
        let broker = try await ShippedBroker.start(tls: true)
        let tls = ShippedBroker.tlsPort
        let ditto = try await broker.client("ditto", on: tls, subscribe: ["ditto/in/#"])
        let bridge = try await broker.client("bridge", on: Self.dittoSide)
        try await bridge.publish("ditto/in/org.example:sensor-1", "over TLS")
        _ = await ditto.waitFor("ditto/in/org.example:sensor-1", "over TLS")
        // The same ACL as the Ditto listener.
        await ditto.publishDenied("ditto/in/org.example:sensor-1")

        #expect(try await broker.refusal(try broker.configuration(listener: tls, username: nil, password: nil)) == .notAuthorized)
        let device = try await broker.refusal(
            try broker.configuration(listener: tls, username: "sensor-1", password: try broker.password(of: "sensor-1")))
        #expect(device == .notAuthorized || device == .badUsernameOrPassword)
        // Without TLS the listener does not speak MQTT.
        var plain = try broker.configuration(listener: tls, username: "ditto", password: broker.dittoPassword)
        plain.tls = nil
        let client = try MosquittoClient(configuration: plain, logger: .test)
        await #expect(throws: MQTTError.self) { try await client.connect() }
        await client.disconnect()
        for client in [ditto, bridge] { await client.close() }
    }
}

/// The bridge binary with the container's config (Config/bridge.docker.yaml) on the shipped broker: it logs in on
/// both listeners with the secret add-device.sh made, its subscriptions and publishes pass the ACLs, and a device's
/// telemetry, Ditto's live message and the device's answer all get through.
@Suite("Broker security: the bridge binary on the shipped broker")
struct ShippedBrokerBridgeTests {
    /// Config/bridge.docker.yaml rewritten only where this machine differs from the container: the spool directory
    /// becomes a temporary one. Hosts, ports, the password file and the operations endpoint come through the
    /// environment variables the file reads.
    static func containerConfig(_ broker: ShippedBroker, spool: String) throws -> String {
        var lines: [String] = []
        for line in try Repository.text("Config/bridge.docker.yaml").split(separator: "\n", omittingEmptySubsequences: false) {
            if let match = line.wholeMatch(of: /(\s+directory: )\/var\/lib\/ditto-mqtt-bridge\/spool/) {
                lines.append("\(match.1)\(spool)")
            } else {
                lines.append(String(line))
            }
        }
        return lines.joined(separator: "\n")
    }

    @Test func theBridgeCarriesTrafficBothWaysThroughTheACLs() async throws {
        let broker = try await ShippedBroker.start()
        let base = broker.directory.deletingLastPathComponent()
        let configPath = base.appendingPathComponent("bridge.docker.yaml").path
        try Self.containerConfig(broker, spool: base.appendingPathComponent("spool").path)
            .write(toFile: configPath, atomically: true, encoding: .utf8)
        let operationsPort = try TestBroker.freePort()

        let ditto = try await broker.client("ditto", on: ShippedBroker.dittoPort, subscribe: ["ditto/in/#"])
        let device = try await broker.client("sensor-1", on: ShippedBroker.devicePort, subscribe: ["devices/sensor-1/inbox/#"])

        let logPath = base.appendingPathComponent("bridge.log").path
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let bridge = try ChildProcess(
            try BuiltExecutable.path("ditto-mqtt-bridge"), ["run", "--config", configPath, "--log-format", "json"],
            environment: ProcessInfo.processInfo.environment.merging([
            "BRIDGE_DEVICE_HOST": "127.0.0.1", "BRIDGE_DITTO_HOST": "127.0.0.1",
            "BRIDGE_DEVICE_PORT": "\(try broker.port(ShippedBroker.devicePort))",
            "BRIDGE_DITTO_PORT": "\(try broker.port(ShippedBroker.dittoPort))",
            "BRIDGE_PASSWORD_FILE": broker.secrets.appendingPathComponent("bridge.password").path,
            "BRIDGE_OPERATIONS_LISTEN": "127.0.0.1:\(operationsPort)",
        ]) { $1 },
            standardOutput: .file(logPath), standardError: .standardOutput)
        defer { bridge.terminate(gracePeriod: .seconds(10)) }
        func logText() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

        let ready = await eventually(timeout: .seconds(20), every: .milliseconds(100)) {
            (try? await HTTPProbe.get("/ready", port: operationsPort))?.status == 200
        }
        try #require(ready, "/ready: \(logText())")

        // Device -> Ditto: the telemetry rule's live event.
        try await device.publish("devices/sensor-1/telemetry/temperature", "{\"value\": 21.5}")
        let event = await ditto.received.first(timeout: .seconds(10)) { $0.topic == "ditto/in/org.example:sensor-1" }
        let eventText = event.map { String(decoding: $0.payload, as: UTF8.self) } ?? ""
        #expect(eventText.contains("things/live/events/modified") && eventText.contains("21.5"), "\(eventText)\n\(logText())")

        // Ditto -> device: a live message; the device answers on the MQTT 5 response topic the bridge set.
        let message = """
            {"topic":"org.example/sensor-1/things/live/messages/reboot",\
            "headers":{"correlation-id":"reboot-1","content-type":"application/json"},\
            "path":"/inbox/messages/reboot","value":{"delay":1}}
            """
        try await ditto.publish("ditto/out/org.example:sensor-1", message)
        let command1 = await device.received.first(timeout: .seconds(10)) { $0.topic == "devices/sensor-1/inbox/reboot" }
        let request = try #require(command1, "the device got no command: \(logText())")
        let responseTopic = try #require(request.properties.responseTopic)
        #expect(responseTopic == "devices/sensor-1/reply")
        try await device.client.publish(
            to: responseTopic, payload: Array("{\"ok\": true}".utf8), qos: .atLeastOnce,
            properties: PublishProperties(contentType: "application/json", correlationData: request.properties.correlationData))
        let answer = await ditto.received.first(timeout: .seconds(10)) {
            String(decoding: $0.payload, as: UTF8.self).contains("reboot-1") && $0.topic.hasPrefix("ditto/in/")
        }
        #expect(answer != nil, "no answer reached Ditto: \(ditto.received.messages.map(\.topic))\n\(logText())")
        #expect(!logText().contains("\"error\""), "\(logText())")

        await bridge.terminate(gracePeriod: .seconds(10))
        for client in [ditto, device] { await client.close() }
    }
}
