import BridgeConfig
import BridgeMapping
import BridgeRuntime
import DittoProtocol
import Foundation
import MQTT
import Mosquitto
import MosquittoTestSupport
import Testing

/// What Ditto's own parser showed (issue #22, items 1 and 4; the verdicts are in
/// `Tests/DittoProtocolTests/Resources/oracle`), held through a real broker.
@Suite("Ditto's limits through a real broker", .serialized)
struct DittoLimitsRuntimeTests {
    static let config = baseConnections + """

        headers: { allow: ["*"] }
        uplink:
          - name: telemetry
            topic: "devices/{deviceId}/telemetry/{sensor}"
            thing-id: "{namespace}:{deviceId}"
            event: { action: modified, path: "/features/{sensor}/properties/value" }
            payload: { format: json, pointer: /value }
          - name: whole
            topic: "devices/{deviceId}/state"
            thing-id: "{namespace}:{deviceId}"
            event: { action: modified, path: "/features/state/properties" }
            payload: json
          - name: counter
            topic: "devices/{deviceId}/count"
            thing-id: "{namespace}:{deviceId}"
            event: { action: modified, path: "/attributes/count" }
            payload: number
          - name: asks
            topic: "devices/{deviceId}/ask/{subject}"
            thing-id: "{namespace}:{deviceId}"
            message: { subject: "{subject}" }
            payload: json
          - name: legacy
            topic: "legacy/{deviceId}/telemetry"
            thing-id: "{namespace}:{deviceId}"
            event: { action: modified, path: "/features/t/properties/value" }
            payload: json
            headers: { mqtt311: wrapper }
          - name: native
            topic: "native/{deviceId}"
            thing-id: "{namespace}:{deviceId}"
            passthrough: {}
        downlink:
          - name: inbox
            match: { messages: { subject: "*" } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/inbox/{subject}"
            reply: { mode: none }
        """

    /// Each number Ditto reads as `json.invalid` (beyond 64 bits) or writes back as `Infinity` (beyond the double
    /// range) is refused on every path a payload takes to Ditto: the value a pointer picks, the whole payload (the
    /// compact scan), a `number` payload, a live message, a pass-through envelope. The limits themselves pass, and
    /// so does such a number in a member the pointer does not pick.
    @Test("Numbers Ditto cannot read never reach it; its limits do")
    func numbersBeyondDittosRange() async throws {
        let harness = try await BridgeHarness(yaml: Self.config)
        let (device, _) = try await harness.device("n1")
        let refused: [(topic: String, payload: String)] = [
            ("devices/n1/telemetry/t", #"{"value": 12345678901234567890}"#),
            ("devices/n1/telemetry/t", #"{"value": 1e309}"#),
            ("devices/n1/state", #"{"a":18446744073709551615}"#),
            ("devices/n1/state", #"{"a":-1.7976931348623159e308}"#),
            ("devices/n1/count", "9223372036854775808"),
            ("devices/n1/count", "-9223372036854775809"),
            ("devices/n1/ask/x", #"{"big":12345678901234567890}"#),
        ]
        let envelope = #"{"topic":"org.example/n1/things/live/events/modified","headers":{},"path":"/attributes/x","value":1e400,"revision":1}"#
        for (topic, payload) in refused {
            try await device.publish(to: topic, payload: Array(payload.utf8))
        }
        try await device.publish(to: "native/n1", payload: Array(envelope.utf8))
        let accepted: [(topic: String, payload: String, value: String)] = [
            ("devices/n1/count", "9223372036854775807", "9223372036854775807"),
            ("devices/n1/count", "-9223372036854775808", "-9223372036854775808"),
            ("devices/n1/state", #"{"a":1.7976931348623157e308,"b":-0,"c":1e-400,"d":1E+2}"#,
             #"{"a":1.7976931348623157e308,"b":-0,"c":1e-400,"d":1E+2}"#),
            ("devices/n1/telemetry/t", #"{"value": 1.7976931348623158e308}"#, "1.7976931348623158e308"),
            // Only what the pointer picks reaches Ditto.
            ("devices/n1/telemetry/t", #"{"serial": 123456789012345678901234567890, "value": 1}"#, "1"),
        ]
        for (topic, payload, _) in accepted {
            try await device.publish(to: topic, payload: Array(payload.utf8))
        }
        let envelopes = try await harness.envelopes(count: accepted.count)
        #expect(envelopes.count == accepted.count)
        #expect(envelopes.compactMap { $0.value.map(JSON.serializeToString) } == accepted.map(\.value))
        try await Task.sleep(for: .milliseconds(200))
        #expect(harness.fromBridge.count == accepted.count)
        let metrics = harness.bridge.metrics
        #expect(metrics["uplink.dropped.invalid-payload"] == refused.count)
        #expect(metrics["uplink.dropped.invalid-protocol"] == 1)
        #expect(metrics["uplink.published"] == accepted.count)
        await device.disconnect()
        await harness.stop()
    }

    /// `check` accepts the rules (it has no payload to judge); `map` refuses the payload as `run` does and names the
    /// number, and prints an event without the device's owned headers.
    @Test("check and map agree: map shows the refusal")
    func checkAndMap() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("limits-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("bridge.yaml").path
        try Self.config.replacingOccurrences(of: "PORT", with: "1883").write(toFile: file, atomically: true, encoding: .utf8)
        let check = try await runBridgeExecutable(["check", "--config", file])
        #expect(check.status == 0, "\(check.standardOutput)")
        for (topic, payload) in [("devices/m/count", "18446744073709551615"), ("devices/m/state", #"{"a":1e309}"#),
                                 ("devices/m/telemetry/t", #"{"value":-9223372036854775809}"#)] {
            let map = try await runBridgeExecutable(["map", "--config", file, "--topic", topic, "--payload", payload])
            #expect(map.status == 1)
            #expect(map.standardOutput.isEmpty)
            #expect(map.standardError.contains("dropped (invalid-payload)"), "\(map.standardError)")
            #expect(map.standardError.contains("is out of the range Ditto reads"), "\(map.standardError)")
        }
        let owned = try await runBridgeExecutable([
            "map", "--config", file, "--topic", "devices/m/telemetry/t", "--payload", #"{"value":9223372036854775807}"#,
            "--user-property", "requested-acks=[]", "--user-property", "response-required=true",
            "--user-property", "timeout=30s", "--user-property", "version=2", "--user-property", "x-kept=k"])
        #expect(owned.status == 0)
        let event = try Envelope.decode(Array(owned.standardOutput.utf8.dropLast()))
        #expect(event.value == .number(JSONNumber(Int64.max)))
        #expect(event.headers.names.map { $0.lowercased() }.sorted() == ["correlation-id", "x-kept"])
    }

    /// The headers the bridge owns (``ReservedHeaders/managedNames``) do not cross from a device's user properties
    /// or 3.1.1 wrapper: Ditto's request headers on a telemetry event would ask Ditto for acknowledgements, an
    /// answer, a timeout or a schema version the device has no say in.
    @Test("Device headers the bridge owns do not reach Ditto")
    func ownedHeadersFromDevices() async throws {
        let harness = try await BridgeHarness(yaml: Self.config)
        let (device, _) = try await harness.device("h1")
        let (legacy, _) = try await harness.device("h2", version: .v311)
        let owned = ["requested-acks": #"["twin-persisted"]"#, "response-required": "true", "timeout": "30s",
                     "version": "2", "reply-to": "x/y", "status": "200", "timestamp": "2020-01-01T00:00:00Z"]
        var properties = PublishProperties()
        properties.userProperties = owned.sorted { $0.key < $1.key }.map { UserProperty(name: $0.key, value: $0.value) }
            + [UserProperty(name: "Requested-Acks", value: "[]"), UserProperty(name: "x-kept", value: "k")]
        try await device.publish(to: "devices/h1/telemetry/t", payload: Array(#"{"value": 1}"#.utf8), properties: properties)
        var wrapped = JSONObject()
        for (name, value) in owned { wrapped[name] = .string(value) }
        wrapped["x-kept"] = "k"
        let wrapper = JSON.serialize(.object(["headers": .object(wrapped), "value": 2]))
        try await legacy.publish(to: "legacy/h2/telemetry", payload: wrapper)
        let events = try await harness.envelopes(count: 2)
        #expect(events.count == 2)
        for event in events {
            for name in ReservedHeaders.managedNames where !["correlation-id", "content-type"].contains(name) {
                #expect(event.headers[name] == nil, "\(name) crossed on \(event.topic)")
            }
            #expect(event.headers["x-kept"] == "k")
            #expect(event.headers.correlationID?.isEmpty == false)
        }
        await device.disconnect()
        await legacy.disconnect()
        await harness.stop()
    }

    /// And the other way: Ditto's request headers are acted on, not handed to the device as user properties.
    @Test("Ditto headers the bridge owns do not reach devices")
    func ownedHeadersToDevices() async throws {
        let harness = try await BridgeHarness(yaml: Self.config)
        let (device, inbox) = try await harness.device("h3", subscribe: ["devices/h3/inbox/#"])
        let headers = [("response-required", "false"), ("requested-acks", "[]"), ("timeout", "5s"), ("version", "2"),
                       ("reply-to", "somewhere"), ("x-kept", "k")]
        try await harness.sendFromDitto(
            try liveMessage("org.example:h3", subject: "hello", correlationID: "o-1", headers: headers),
            thingID: "org.example:h3", correlationID: "o-1")
        let received = try #require(await inbox.wait(for: 1).first)
        let names = Set(received.properties.userProperties.map { $0.name.lowercased() })
        #expect(names.isDisjoint(with: ReservedHeaders.managedNames), "\(names)")
        #expect(names.contains("x-kept"))
        await device.disconnect()
        await harness.stop()
    }
}
