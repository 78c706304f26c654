import DittoWebSocketTestSupport
import Foundation
import MQTT
import Mosquitto
import MosquittoTestSupport
import Synchronization
import Testing
import WebSocketCodec

/// The bridge binary between a private device broker and ``DittoWebSocketServer`` playing Ditto's `/ws/2`:
/// `connections.ditto` with `transport: websocket`. ``shutdown(passed:)`` stops exactly what it started.
final class WebSocketWorld: Sendable {
    struct Settings: Sendable {
        /// The `connections.ditto` keys after `transport` and `url` (indented by four spaces).
        var dittoKeys: [String] = ["username: ditto", "password-file: {directory}/ditto-password"]
        var extraUplinkRules: [String] = []
        var extraTopLevel: [String] = []
        var serverOptions = DittoWebSocketServer.Options()
        /// The URL's authority and path; nil: the server's.
        var url: String?
    }

    let directory: URL
    let deviceBroker: TestBroker
    let ditto: DittoWebSocketServer
    let operationsPort: Int
    let configPath: String
    let bridge: BridgeProcess
    private let cleanups = Shared<[@Sendable () async -> Void]>([])

    /// `before` runs once the server listens, before the config is written: it may write files into the directory
    /// and return `{placeholder}` values for the config.
    init(_ settings: Settings = Settings(),
         before: (URL, DittoWebSocketServer) async throws -> [String: String] = { _, _ in [:] }) async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("e2e-ws-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try "ditto\n".write(to: directory.appendingPathComponent("ditto-password"), atomically: true, encoding: .utf8)
        deviceBroker = try await TestBroker.start(.init(logConnections: true))
        ditto = try DittoWebSocketServer(settings.serverOptions)
        operationsPort = try TestBroker.freePort()
        var values = try await before(directory, ditto)
        values["directory"] = directory.path
        configPath = directory.appendingPathComponent("bridge.yaml").path
        var yaml = Self.yaml(settings, devicePort: deviceBroker.port, url: settings.url ?? ditto.url,
                             operationsPort: operationsPort)
        for (name, value) in values { yaml = yaml.replacingOccurrences(of: "{\(name)}", with: value) }
        try yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
        bridge = try BridgeProcess(configPath: configPath, logPath: directory.appendingPathComponent("bridge.log").path)
    }

    static func yaml(_ settings: Settings, devicePort: Int, url: String, operationsPort: Int) -> String {
        var lines = ["connections:"] + BridgeConfigFile.deviceConnection(port: devicePort) + [
            "  ditto:",
            "    transport: websocket",
            "    url: \"\(url)\"",
            "    reconnect: { initial: 200ms, maximum: 1s }",
        ]
        lines += settings.dittoKeys.map { "    " + $0 }
        lines += [
            "ditto:",
            "  connection-id: e2e",
        ]
        lines += BridgeConfigFile.defaultsAndOperations(operationsPort: operationsPort)
        lines += ["uplink:"] + BridgeConfigFile.telemetryRule(path: "/features/{sensor}/properties/value")
        lines += [
            "  - name: requests",
            "    topic: \"devices/{deviceId}/ask/{subject}\"",
            "    thing-id: \"{namespace}:{deviceId}\"",
            "    message: { subject: \"{subject}\", response: true, timeout: 5s }",
        ]
        lines += settings.extraUplinkRules
        lines += [
            "downlink:",
            "  - name: inbox",
            "    match: { messages: { subject: \"*\" } }",
            "    thing-id: \"{namespace}:{deviceId}\"",
            "    topic: \"devices/{deviceId}/inbox/{subject}\"",
            "    reply: { mode: mqtt5, topic: \"devices/{deviceId}/reply\", timeout: 10s }",
            "  - name: properties",
            "    match: { commands: { actions: [modify], path: \"/features/{feature}/properties/{property}\" } }",
            "    thing-id: \"{namespace}:{deviceId}\"",
            "    topic: \"devices/{deviceId}/set/{feature}/{property}\"",
            "    reply: { mode: mqtt5, topic: \"devices/{deviceId}/reply\", timeout: 10s }",
        ]
        lines += settings.extraTopLevel
        return lines.joined(separator: "\n") + "\n"
    }

    func get(_ path: String) async throws -> HTTPResponse {
        try await E2E.get(path, port: operationsPort)
    }

    func scrape() async throws -> MetricsScrape {
        try await E2E.scrape(port: operationsPort)
    }

    func isReady() async -> Bool { (try? await get("/ready"))?.status == 200 }

    func waitUntilReady(timeout: Duration = .seconds(30)) async throws {
        try await E2E.waitUntilReady(bridge, port: operationsPort, timeout: timeout)
    }

    /// A connected MQTT 5 client on the device broker, disconnected by ``shutdown(passed:)``.
    func device(_ id: String, subscribe filters: [String] = []) async throws -> (client: MosquittoClient, received: MessageCollector) {
        try await E2E.client(on: deviceBroker, id: id, subscribe: filters, cleanups: cleanups)
    }

    /// A device that answers every request on its inbox and its `set` topics at once.
    func answeringDevice(_ device: String) async throws -> MessageCollector {
        try await E2E.answeringDevice(device, on: deviceBroker, filters: ["devices/\(device)/inbox/#", "devices/\(device)/set/#"],
                                      cleanups: cleanups)
    }

    /// The Ditto Protocol messages the bridge sent on every session so far, decoded.
    func fromBridge() throws -> [JSON] {
        try ditto.sessions.flatMap(\.protocolMessages).map { try JSONDecoder().decode(JSON.self, from: Data($0.utf8)) }
    }

    /// Waits until the bridge sent a message that `matches`.
    func awaitFromBridge(timeout: Duration = .seconds(10), _ matches: (JSON) -> Bool) async throws -> JSON {
        var found: JSON?
        _ = await eventually(timeout: timeout, every: .milliseconds(20)) {
            found = (try? self.fromBridge())?.first(where: matches)
            return found != nil
        }
        guard let found else { throw TestFailure("no such message from the bridge within \(timeout):\n\(bridge.logTail())") }
        return found
    }

    /// A live message to `device`'s inbox as Ditto sends it on the session.
    static func liveMessage(to device: String, subject: String, correlationID: String, value: String = #""go""#) -> String {
        """
        {"topic":"\(E2E.namespace)/\(device)/things/live/messages/\(subject)",\
        "headers":{"correlation-id":"\(correlationID)","content-type":"application/json","response-required":true},\
        "path":"/inbox/messages/\(subject)","value":\(value)}
        """
    }

    /// The session that is open now (the newest).
    func openSession(timeout: Duration = .seconds(10)) async throws -> DittoWebSocketSession {
        var open: DittoWebSocketSession?
        _ = await eventually(timeout: timeout, every: .milliseconds(20)) {
            open = self.ditto.sessions.last(where: \.isOpen)
            return open != nil
        }
        guard let open else { throw TestFailure("no open session within \(timeout):\n\(bridge.logTail())") }
        return open
    }

    func shutdown(passed: Bool) async {
        await bridge.stop()
        await E2E.runCleanups(cleanups)
        await ditto.stop()
        await deviceBroker.stopped()
        if passed {
            try? FileManager.default.removeItem(at: directory)
        } else {
            print("e2e: kept \(directory.path) (config, bridge log)\n---- end of the bridge's log ----\n\(bridge.logTail())")
        }
    }
}

/// Runs `body` in a fresh world (unless `waitUntilReady` is false, the bridge ready) and shuts it down afterwards.
func withWebSocketWorld(_ settings: WebSocketWorld.Settings = WebSocketWorld.Settings(), waitUntilReady: Bool = true,
                        before: (URL, DittoWebSocketServer) async throws -> [String: String] = { _, _ in [:] },
                        _ body: (WebSocketWorld) async throws -> Void) async throws {
    let world = try await WebSocketWorld(settings, before: before)
    do {
        if waitUntilReady { try await world.waitUntilReady() }
        try await body(world)
        await world.shutdown(passed: ProcessInfo.processInfo.environment["E2E_KEEP"] != "1")
    } catch {
        await world.shutdown(passed: false)
        throw error
    }
}
