import Foundation
import Testing

/// Issue 22, item 9: errors docs/CONFIG.md promises from `check`, through the real binary; each config is
/// also checked once corrected, so the error is the one named (scripts/mutants.sh M11, M12, M30). Issue 24: the
/// WebSocket connection's refusal of MQTT topic settings.
@Suite("check's documented refusals")
struct CheckPromiseTests {
    static func config(ditto connection: String, ditto settings: String) -> String {
        """
        connections:
          device: { host: 127.0.0.1, port: 1883 }
          ditto: { host: 127.0.0.1, port: 1884\(connection) }
        defaults: { namespace: org.example }
        ditto: { \(settings) }
        uplink:
          - name: t
            topic: "devices/{deviceId}/t"
            thing-id: "{namespace}:{deviceId}"
            event: { path: /features/t/properties/value }
        """
    }

    static func check(_ text: String) async throws -> (status: Int32, output: String) {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("check-\(UUID().uuidString.prefix(8)).yaml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try await BridgeExecutable.run(["check", "--config", path])
    }

    @Test("a subscribe-filter that also matches publish-topic is an error (exit 1); a disjoint one passes")
    func subscribeFilterMatchingPublishTopic() async throws {
        let bad = try await Self.check(Self.config(
            ditto: "", ditto: #"publish-topic: "ditto/in/{thingId}", subscribe-filter: "ditto/#""#))
        #expect(bad.status == 1, "\(bad.output)")
        #expect(bad.output.contains("ditto.subscribe-filter: subscribe-filter 'ditto/#' also matches publish-topic 'ditto/in/{thingId}'"),
                "\(bad.output)")
        #expect(bad.output.contains("1 error"), "\(bad.output)")

        let good = try await Self.check(Self.config(
            ditto: "", ditto: #"publish-topic: "ditto/in/{thingId}", subscribe-filter: "ditto/out/#""#))
        #expect(good.status == 0, "\(good.output)")
    }

    @Test("a password given twice (password and password-env) is an error naming both (exit 1); either alone passes")
    func passwordGivenTwice() async throws {
        let settings = #"publish-topic: "ditto/in/{thingId}", subscribe-filter: "ditto/out/#""#
        let twice = try await Self.check(Self.config(
            ditto: #", username: bridge, password: "inline-secret", password-env: HOME"#, ditto: settings))
        #expect(twice.status == 1, "\(twice.output)")
        #expect(twice.output.contains("connections.ditto.password: 'password-env' and 'password' both give the password"),
                "\(twice.output)")
        #expect(twice.output.contains("1 error"), "\(twice.output)")

        let inline = try await Self.check(Self.config(ditto: #", username: bridge, password: "inline-secret""#, ditto: settings))
        #expect(inline.status == 0, "\(inline.output)")
        let environment = try await Self.check(Self.config(ditto: ", username: bridge, password-env: HOME", ditto: settings))
        #expect(environment.status == 0, "\(environment.output)")
    }

    @Test("over WebSocket an MQTT topic setting in ditto: is an error naming it (exit 1); without it the file passes")
    func mqttTopicOverWebSocket() async throws {
        func config(_ settings: String) -> String {
            """
            connections:
              device: { host: 127.0.0.1, port: 1883 }
              ditto: { transport: websocket, url: "ws://127.0.0.1:8080/ws/2" }
            defaults: { namespace: org.example }
            ditto: { connection-id: gateway-7\(settings) }
            acks: { delivered: "{connectionId}-delivered" }
            uplink:
              - name: t
                topic: "devices/{deviceId}/t"
                thing-id: "{namespace}:{deviceId}"
                event: { path: /features/t/properties/value }
            """
        }
        let bad = try await Self.check(config(#", publish-topic: "ditto/in/{thingId}""#))
        #expect(bad.status == 1, "\(bad.output)")
        #expect(bad.output.contains(
            ":5:51: ditto.publish-topic: 'publish-topic' is a setting of the MQTT connection to Ditto; with connections.ditto.transport: websocket it means nothing"),
            "\(bad.output)")
        #expect(bad.output.contains("1 error"), "\(bad.output)")

        // The ack label without the connection prefix is fine over WebSocket.
        let good = try await Self.check(config(""))
        #expect(good.status == 0, "\(good.output)")
        #expect(good.output.contains("OK (1 uplink rules, 0 downlink rules)"), "\(good.output)")
    }
}
