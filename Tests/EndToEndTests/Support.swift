import Foundation
import Logging
import MQTT
import Mosquitto
import MosquittoTestSupport
import Synchronization
import Testing

/// Things every end-to-end test shares.
enum E2E {
    static let namespace = "org.example"
    static let deviceClientID = "e2e-bridge-devices"
    static let dittoClientID = "e2e-bridge-ditto"

    static func thingID(_ device: String) -> String { "\(namespace):\(device)" }

    /// Where the Ditto stand-in asks the bridge to answer its requests (the MQTT 5 response topic). Not the
    /// bridge's `publish-topic`, so an answer sent there proves the bridge followed the request's response topic.
    static func replyTopic(_ device: String) -> String { "ditto/in/e2e-replies/\(thingID(device))" }

    /// A device on `broker` that answers every request on `filters` at once (status 200, `{"answer": <its value>}`)
    /// to the response topic the bridge set, echoing the correlation data; `cleanups` stops it.
    static func answeringDevice(_ device: String, on broker: TestBroker, filters: [String],
                                cleanups: Shared<[@Sendable () async -> Void]>) async throws -> MessageCollector {
        let client = try MosquittoClient(configuration: broker.clientConfiguration(clientID: "device-\(device)"), logger: logger)
        cleanups.update { $0.append { await client.disconnect() } }
        try await client.connect()
        let received = MessageCollector()
        let answering = Task {
            for await request in client.messages {
                received.append(request)
                guard let responseTopic = request.properties.responseTopic else { continue }
                let payload = Array(#"{"answer":"#.utf8) + request.payload + Array("}".utf8)
                _ = try? await client.publish(
                    to: responseTopic, payload: payload,
                    properties: PublishProperties(contentType: "application/json",
                                                  correlationData: request.properties.correlationData))
            }
        }
        cleanups.update { $0.append { answering.cancel() } }
        try await client.subscribe(filters.map { Subscription(filter: $0, qos: .atLeastOnce) })
        return received
    }

    /// A connected MQTT 5 client on `broker` whose messages a collector takes; `cleanups` disconnects it.
    static func client(on broker: TestBroker, id: String, subscribe filters: [String],
                       cleanups: Shared<[@Sendable () async -> Void]>) async throws
        -> (client: MosquittoClient, received: MessageCollector)
    {
        let client = try MosquittoClient(configuration: broker.clientConfiguration(clientID: id), logger: logger)
        cleanups.update { $0.append { await client.disconnect() } }
        try await client.connect()
        let received = MessageCollector(client.messages)
        if !filters.isEmpty { try await client.subscribe(filters.map { Subscription(filter: $0, qos: .atLeastOnce) }) }
        return (client, received)
    }

    /// GET on the bridge's operations endpoint.
    static func get(_ path: String, port: Int) async throws -> HTTPResponse {
        try await HTTPClient.get(path, port: port)
    }

    /// `/metrics`, parsed.
    static func scrape(port: Int) async throws -> MetricsScrape {
        let response = try await get("/metrics", port: port)
        guard response.status == 200 else { throw TestFailure("GET /metrics answered \(response.status): \(response.body)") }
        return try MetricsScrape(parsing: response.body)
    }

    /// Waits until `/ready` answers 200; fails at once when the bridge exits.
    static func waitUntilReady(_ bridge: BridgeProcess, port: Int, timeout: Duration) async throws {
        let ready = await eventually(timeout: timeout, every: .milliseconds(50)) {
            if !bridge.isRunning { return true }
            return (try? await get("/ready", port: port))?.status == 200
        }
        guard bridge.isRunning else { throw TestFailure("the bridge exited:\n\(bridge.logTail())") }
        guard ready else { throw TestFailure("/ready did not answer 200 within \(timeout):\n\(bridge.logTail())") }
    }

    /// Runs and empties `cleanups`.
    static func runCleanups(_ cleanups: Shared<[@Sendable () async -> Void]>) async {
        for cleanup in cleanups.update({ list in
            defer { list.removeAll() }
            return list
        }) {
            await cleanup()
        }
    }

    static let logger: Logger = {
        var logger = Logger(label: "e2e-test")
        logger.logLevel = .error
        return logger
    }()
}

// MARK: - The bridge's config

/// The YAML the bridge runs with: two brokers, a short reconnect backoff, the operations endpoint, a
/// `telemetry` uplink rule (JSON `{"value": ...}` -> a live event), an `inbox` downlink rule for devices that
/// answer (MQTT 5 response topic) and a `no-answer` rule (subjects `wait-*`) with a 1 s timeout.
struct BridgeConfigFile {
    var devicePort: Int
    var dittoPort: Int
    var operationsPort: Int
    /// `event.path` of the telemetry rule.
    var telemetryPath = "/features/{sensor}/properties/value"
    /// Extra uplink rules, YAML list items indented by two spaces.
    var extraUplinkRules: [String] = []
    /// Extra downlink rules (tried after the two above), YAML list items indented by two spaces.
    var extraDownlinkRules: [String] = []
    /// Extra top-level blocks (`spool:`, `devices:`), written after the rules.
    var extraTopLevel: [String] = []

    /// `connections.device` (under `connections:`): the private device broker, short keepalive and back-off.
    static func deviceConnection(port: Int) -> [String] {
        [
            "  device:",
            "    host: 127.0.0.1",
            "    port: \(port)",
            "    client-id: \(E2E.deviceClientID)",
            "    keepalive: 5s",
            "    reconnect: { initial: 500ms, maximum: 1s }",
        ]
    }

    /// `defaults:` (the test namespace, 10 s requests) and `operations:` on 127.0.0.1.
    static func defaultsAndOperations(operationsPort: Int) -> [String] {
        [
            "defaults:",
            "  namespace: \(E2E.namespace)",
            "  request-timeout: 10s",
            "operations:",
            "  listen: \"127.0.0.1:\(operationsPort)\"",
        ]
    }

    /// The `telemetry` uplink rule (a list item under `uplink:`): `{"value": ...}` becomes a live event at `path`.
    static func telemetryRule(path: String) -> [String] {
        [
            "  - name: telemetry",
            "    topic: \"devices/{deviceId}/telemetry/{sensor}\"",
            "    thing-id: \"{namespace}:{deviceId}\"",
            "    event: { action: modified, path: \"\(path)\" }",
            "    payload: { format: json, pointer: /value }",
        ]
    }

    var yaml: String {
        var lines = ["connections:"] + Self.deviceConnection(port: devicePort) + [
            "  ditto:",
            "    host: 127.0.0.1",
            "    port: \(dittoPort)",
            "    client-id: \(E2E.dittoClientID)",
            "    keepalive: 5s",
            "    reconnect: { initial: 500ms, maximum: 1s }",
            "ditto:",
            "  publish-topic: \"ditto/in/{thingId}\"",
            "  subscribe-filter: \"ditto/out/#\"",
            "  reply-topic: \"ditto/out/{thingId}/reply\"",
        ]
        lines += Self.defaultsAndOperations(operationsPort: operationsPort)
        lines += ["uplink:"] + Self.telemetryRule(path: telemetryPath)
        lines += extraUplinkRules
        lines += [
            "downlink:",
            "  - name: no-answer",
            "    priority: 10",
            "    match: { messages: { subject: \"wait-*\" } }",
            "    thing-id: \"{namespace}:{deviceId}\"",
            "    topic: \"devices/{deviceId}/inbox/{subject}\"",
            "    reply: { mode: mqtt5, topic: \"devices/{deviceId}/reply\", timeout: 1s }",
            "  - name: inbox",
            "    match: { messages: { subject: \"*\" } }",
            "    thing-id: \"{namespace}:{deviceId}\"",
            "    topic: \"devices/{deviceId}/inbox/{subject}\"",
            "    reply: { mode: mqtt5, topic: \"devices/{deviceId}/reply\", timeout: 10s }",
        ]
        lines += extraDownlinkRules
        lines += extraTopLevel
        return lines.joined(separator: "\n") + "\n"
    }
}

// MARK: - The bridge as a child process

/// The real `ditto-mqtt-bridge` executable (`.build/debug`, built by `swift build --build-tests`).
enum BridgeExecutable {
    static func path() throws -> String { try BuiltExecutable.path("ditto-mqtt-bridge") }

    /// Runs a short command of the binary (e.g. `check`) to its end, on a thread of its own: exit status and
    /// standard output.
    /// `includingStandardError`: standard error too, in the same text (`map` says why it dropped there).
    static func run(_ arguments: [String], includingStandardError: Bool = false) async throws -> (status: Int32, output: String) {
        let run = try await ChildProcess.run(try path(), arguments, mergingStandardError: includingStandardError)
        return (run.status, run.standardOutput)
    }
}

/// `ditto-mqtt-bridge run --config <file>` as a child process, standard error (its log) in a file.
final class BridgeProcess: Sendable {
    let configPath: String
    let logPath: String
    private let process: ChildProcess

    init(configPath: String, logPath: String) throws {
        self.configPath = configPath
        self.logPath = logPath
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process = try ChildProcess(try BridgeExecutable.path(), ["run", "--config", configPath, "--log-level", "info"],
                                   standardOutput: .file(logPath), standardError: .standardOutput)
    }

    var isRunning: Bool { process.isRunning }

    func signal(_ signal: Int32) {
        process.signal(signal)
    }

    /// SIGTERM, then SIGKILL when it did not exit within `timeout`. Waits for the exit either way.
    func stop(timeout: Duration = .seconds(10)) async {
        await process.terminate(gracePeriod: timeout)
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func logTail(lines: Int = 40) -> String {
        log.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }
}

// MARK: - One test's world

/// Two private brokers (device side and Ditto side, connections logged), an MQTT 5 client in Ditto's place
/// that receives everything on `ditto/in/#`, and the bridge binary between them; ``shutdown(passed:)``
/// stops exactly these, whatever happened.
final class E2EWorld: Sendable {
    let directory: URL
    let deviceBroker: TestBroker
    let dittoBroker: TestBroker
    let operationsPort: Int
    /// The config the bridge started with (tests change a copy for reloads).
    let configFile: BridgeConfigFile
    let configPath: String
    /// The Ditto stand-in: publishes requests to `ditto/out/<thingId>`, receives `ditto/in/#`.
    let ditto: MosquittoClient
    let fromBridge: MessageCollector
    let bridge: BridgeProcess
    private let cleanups = Shared<[@Sendable () async -> Void]>([])

    /// - Parameter extraUplinkRules: added to ``BridgeConfigFile/extraUplinkRules``, `extraDownlinkRules` likewise.
    init(extraUplinkRules: [String] = [], extraDownlinkRules: [String] = [], extraTopLevel: [String] = []) async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("e2e-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        deviceBroker = try await TestBroker.start(.init(logConnections: true))
        dittoBroker = try await TestBroker.start(.init(logConnections: true))
        operationsPort = try TestBroker.freePort()
        var file = BridgeConfigFile(devicePort: deviceBroker.port, dittoPort: dittoBroker.port, operationsPort: operationsPort)
        file.extraUplinkRules += extraUplinkRules
        file.extraDownlinkRules += extraDownlinkRules
        file.extraTopLevel += extraTopLevel
        configFile = file
        configPath = directory.appendingPathComponent("bridge.yaml").path
        try file.yaml.write(toFile: configPath, atomically: true, encoding: .utf8)

        ditto = try MosquittoClient(configuration: dittoBroker.clientConfiguration(clientID: "ditto-standin"),
                                    logger: E2E.logger)
        try await ditto.connect()
        fromBridge = MessageCollector(ditto.messages)
        try await ditto.subscribe([Subscription(filter: "ditto/in/#", qos: .atLeastOnce)])
        bridge = try BridgeProcess(configPath: configPath, logPath: directory.appendingPathComponent("bridge.log").path)
    }

    /// Writes a new config file (for a reload).
    func writeConfig(_ text: String) throws {
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    func get(_ path: String) async throws -> HTTPResponse {
        try await E2E.get(path, port: operationsPort)
    }

    func scrape() async throws -> MetricsScrape {
        try await E2E.scrape(port: operationsPort)
    }

    /// Waits until `/ready` answers 200 (the bridge connected and subscribed on both sides).
    func waitUntilReady(timeout: Duration = .seconds(30)) async throws {
        try await E2E.waitUntilReady(bridge, port: operationsPort, timeout: timeout)
    }

    /// A connected MQTT 5 client on `broker`, disconnected by ``shutdown(passed:)``.
    func client(on broker: TestBroker, id: String, subscribe filters: [String] = []) async throws
        -> (client: MosquittoClient, received: MessageCollector)
    {
        try await E2E.client(on: broker, id: id, subscribe: filters, cleanups: cleanups)
    }

    /// A device that answers every request on its inbox at once (status 200, `{"answer": <its value>}`),
    /// echoing the correlation data to the response topic the bridge set.
    func answeringDevice(_ device: String) async throws -> MessageCollector {
        try await E2E.answeringDevice(device, on: deviceBroker, filters: ["devices/\(device)/inbox/#"], cleanups: cleanups)
    }

    /// Publishes a Ditto live message (inbox, `response-required`) as Ditto's MQTT 5 connection would: to
    /// `ditto/out/<thingId>`, response topic ``E2E/replyTopic(_:)``, correlation data = correlation-id.
    func sendLiveMessage(to device: String, subject: String, correlationID: String, value: String = #""go""#) async throws {
        let thing = E2E.thingID(device)
        let json = """
            {"topic":"\(E2E.namespace)/\(device)/things/live/messages/\(subject)",\
            "headers":{"correlation-id":"\(correlationID)","content-type":"application/json","response-required":true},\
            "path":"/inbox/messages/\(subject)","value":\(value)}
            """
        try await ditto.publish(
            to: "ditto/out/\(thing)", payload: Array(json.utf8), qos: .atLeastOnce,
            properties: PublishProperties(contentType: "application/vnd.eclipse.ditto+json",
                                          responseTopic: E2E.replyTopic(device), correlationData: Array(correlationID.utf8)))
    }

    /// What the bridge published on the Ditto side, decoded (every message must be JSON).
    func dittoMessages() throws -> [DittoMessage] {
        try fromBridge.messages.map { try DittoMessage($0) }
    }

    /// Live events of `device`'s thing that reached Ditto.
    func events(of device: String) throws -> [DittoMessage] {
        try dittoMessages().filter { $0.mqttTopic == "ditto/in/\(E2E.thingID(device))" && $0.isEvent }
    }

    /// Answers (responses and errors) that reached the reply topic of `device`'s requests.
    func answers(for device: String) throws -> [DittoMessage] {
        try dittoMessages().filter { $0.mqttTopic == E2E.replyTopic(device) }
    }

    /// The lines of a broker's log that name `clientID` (`New client connected from ... as <id> (...)`,
    /// `Client <id> disconnected.`, ...).
    static func brokerLog(of clientID: String, in broker: TestBroker) -> [String] {
        let log = (try? String(contentsOfFile: broker.logFile, encoding: .utf8)) ?? ""
        return log.split(separator: "\n").map(String.init).filter { $0.contains(" \(clientID) ") || $0.contains(" \(clientID).") }
    }

    /// How often `clientID` connected to `broker`, from its log.
    static func connections(of clientID: String, in broker: TestBroker) -> Int {
        brokerLog(of: clientID, in: broker).filter { $0.contains("New client connected") }.count
    }

    /// Stops the bridge, the clients and the brokers. Unless `passed`, keeps the directory (config, bridge log)
    /// and prints where it is with the end of the bridge's log.
    func shutdown(passed: Bool) async {
        await bridge.stop()
        await E2E.runCleanups(cleanups)
        await ditto.disconnect()
        await deviceBroker.stopped()
        await dittoBroker.stopped()
        if passed {
            try? FileManager.default.removeItem(at: directory)
        } else {
            print("e2e: kept \(directory.path) (config, bridge log)\n---- end of the bridge's log ----\n\(bridge.logTail())")
        }
    }
}

/// Runs `body` in a fresh world (the bridge ready) and shuts it down afterwards, also when `body` throws.
/// The directory (config, bridge log) is kept when `body` throws, or always with `E2E_KEEP=1`.
func withWorld(_ body: (E2EWorld) async throws -> Void) async throws {
    let world = try await E2EWorld()
    do {
        try await world.waitUntilReady()
        try await body(world)
        await world.shutdown(passed: ProcessInfo.processInfo.environment["E2E_KEEP"] != "1")
    } catch {
        await world.shutdown(passed: false)
        throw error
    }
}

// MARK: - Ditto-side messages

/// One message the bridge published to Ditto's broker, its JSON read independently of the bridge's code.
struct DittoMessage: Sendable {
    let mqttTopic: String
    let json: JSON

    init(_ message: MQTTMessage) throws {
        mqttTopic = message.topic
        json = try JSONDecoder().decode(JSON.self, from: Data(message.payload))
    }

    var topic: String? { json["topic"]?.string }
    var path: String? { json["path"]?.string }
    var value: JSON? { json["value"] }
    var status: Int? { json["status"]?.number.map { Int($0) } }
    var correlationID: String? { json["headers"]?["correlation-id"]?.string }
    var isEvent: Bool { topic?.hasSuffix("/things/live/events/modified") == true && status == nil }
}

/// A JSON value, decoded with Foundation only.
enum JSON: Decodable, Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSON])
    case object([String: JSON])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSON].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSON].self))
        }
    }

    subscript(key: String) -> JSON? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    var number: Double? {
        if case .number(let value) = self { return value }
        return nil
    }
}
