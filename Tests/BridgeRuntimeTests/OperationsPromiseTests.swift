import BridgeConfig
import BridgeOperations
import BridgeRuntime
import DittoProtocol
import Foundation
import MQTT
import Mosquitto
import MosquittoTestSupport
import Prometheus
import Testing

/// Issue 22, item 8: what docs/OPERATIONS.md's "What is logged and counted", "Logs" and metrics table say, on real
/// brokers: the stop line's `uplink.unsent-at-stop`, the `rule` and `thing-id` of a dropped message's warning,
/// the `thing-id` log key, the presence line, an unchanged reload's log line, the `rule` label of replies.
@Suite("The operations docs' promises on real brokers", .serialized)
struct OperationsPromiseTests {
    static let telemetry = """

        uplink:
          - name: telemetry
            topic: "devices/{deviceId}/telemetry/{sensor}"
            thing-id: "{namespace}:{deviceId}"
            event: { action: modified, path: "/features/{sensor}/properties/value" }
            payload: { format: json, pointer: /value }
        """

    static func entries(_ logs: CollectingLogHandler.Store, _ message: String) -> [CollectingLogHandler.Entry] {
        logs.all.filter { $0.message == message }
    }

    @Test("messages left in the spool at a stop are counted as uplink.unsent-at-stop, also in the stop line")
    func unsentAtStopCountsTheSpool() async throws {
        let spool = FileManager.default.temporaryDirectory.appendingPathComponent("unsent-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: spool) }
        let yaml = baseConnections.replacingOccurrences(of: "device: { host: 127.0.0.1, port: PORT", with: "device: { host: 127.0.0.1, port: DEVICE_PORT")
            + "\nspool: { directory: \"\(spool)\" }" + Self.telemetry
        let (logger, logs) = CollectingLogHandler.logger()
        let harness = try await BridgeHarness(yaml: yaml, separateDeviceBroker: true, logger: logger)
        let (device, _) = try await harness.device("sensor-1")
        // Ditto's broker goes away; what the device sends now waits in the spool.
        harness.broker.stop()
        for n in 0..<5 {
            try await device.publish(to: "devices/sensor-1/telemetry/temp", payload: Array(#"{"value": \#(n)}"#.utf8))
        }
        let spooled = await eventually(timeout: .seconds(10)) {
            !harness.bridge.isReady
        }
        #expect(spooled)
        try await Task.sleep(for: .milliseconds(500))
        await device.disconnect()
        await harness.stop()

        #expect(harness.bridge.metrics["uplink.unsent-at-stop"] == 5, "\(harness.bridge.metrics.snapshot)")
        let stopped = try #require(Self.entries(logs, "bridge stopped").last)
        #expect(stopped.metadata["metrics"]?.contains("uplink.unsent-at-stop=5") == true, "\(stopped.metadata)")
    }

    @Test("a dropped message's warning names its rule and thing-id, also when the topic makes no valid thing ID")
    func droppedWarningNamesItsRule() async throws {
        let (logger, logs) = CollectingLogHandler.logger()
        let harness = try await BridgeHarness(yaml: baseConnections + Self.telemetry, logger: logger)
        let (device, _) = try await harness.device("sensor-1")
        try await device.publish(to: "devices/sensor-1/telemetry/temp", payload: Array("not json".utf8))
        try await device.publish(to: "devices/s\u{E9}nsor/telemetry/temp", payload: Array(#"{"value": 1}"#.utf8))
        try await device.publish(to: "elsewhere/x", payload: Array(#"{"value": 1}"#.utf8))
        let logged = await eventually(timeout: .seconds(10)) { Self.entries(logs, "device message dropped").count == 2 }
        #expect(logged, "\(logs.all.map(\.message))")
        let drops = Self.entries(logs, "device message dropped")
        let payload = try #require(drops.first { $0.metadata["drop.kind"] == "invalid-payload" })
        #expect(payload.metadata["rule"] == "telemetry")
        #expect(payload.metadata["thing-id"] == "org.example:sensor-1")
        #expect(payload.metadata["mqtt.topic"] == "devices/sensor-1/telemetry/temp")
        let identifier = try #require(drops.first { $0.metadata["drop.kind"] == "invalid-identifier" })
        #expect(identifier.metadata["rule"] == "telemetry", "\(identifier.metadata)")
        #expect(harness.bridge.metrics["uplink.dropped.invalid-payload"] == 1)
        #expect(harness.bridge.metrics["uplink.dropped.invalid-identifier"] == 1)
        await device.disconnect()
        await harness.stop()
    }

    @Test("a downlink request that times out is logged with thing-id, the documented key")
    func timeoutLogUsesThingID() async throws {
        let yaml = baseConnections + """

            downlink:
              - name: inbox
                match: { messages: { subject: "*" } }
                thing-id: "{namespace}:{deviceId}"
                topic: "devices/{deviceId}/inbox/{subject}"
                reply: { mode: mqtt5, topic: "devices/{deviceId}/reply", timeout: 1s }
            """
        let (logger, logs) = CollectingLogHandler.logger()
        let harness = try await BridgeHarness(yaml: yaml, logger: logger)
        let (lamp, _) = try await harness.device("lamp", subscribe: ["devices/lamp/inbox/#"])
        let request = try liveMessage("org.example:lamp", subject: "ping", correlationID: "t-1",
                                      headers: [("response-required", "true")])
        try await harness.sendFromDitto(request, thingID: "org.example:lamp", correlationID: "t-1")
        let timedOut = await eventually(timeout: .seconds(10)) { !Self.entries(logs, "device did not answer in time").isEmpty }
        #expect(timedOut)
        let entry = try #require(Self.entries(logs, "device did not answer in time").first)
        #expect(entry.metadata["thing-id"] == "org.example:lamp", "\(entry.metadata)")
        #expect(entry.metadata["thing.id"] == nil)
        #expect(LogMetadataKey.thingID == "thing-id")
        await lamp.disconnect()
        await harness.stop()
    }

    @Test("the presence line names the device as name=value, not as a Swift dictionary")
    func presenceLineHasNoDictionary() async throws {
        let yaml = baseConnections + """

            devices:
              status-topic: "devices/{deviceId}/status"
              offline-payloads: [offline]
            """ + Self.telemetry
        let (logger, logs) = CollectingLogHandler.logger()
        let harness = try await BridgeHarness(yaml: yaml, logger: logger)
        let (device, _) = try await harness.device("pump-1")
        try await device.publish(to: "devices/pump-1/status", payload: Array("offline".utf8))
        let logged = await eventually(timeout: .seconds(10)) { !Self.entries(logs, "device presence").isEmpty }
        #expect(logged)
        let entry = try #require(Self.entries(logs, "device presence").first)
        #expect(entry.metadata["device"] == "deviceId=pump-1", "\(entry.metadata)")
        #expect(entry.metadata["online"] == "false")
        await device.disconnect()
        await harness.stop()
    }

    @Test("an unchanged reload is logged and counted as unchanged; a changed one as applied")
    func unchangedReloadIsLoggedAsUnchanged() async throws {
        let (logger, logs) = CollectingLogHandler.logger()
        let harness = try await BridgeHarness(yaml: baseConnections + Self.telemetry, logger: logger)
        #expect(await harness.bridge.reload(harness.configuration) == ["unchanged"])
        #expect(harness.bridge.metrics["reload.unchanged"] == 1)
        #expect(harness.bridge.metrics["reload.applied"] == 0)
        #expect(Self.entries(logs, "config reloaded: unchanged, nothing applied").count == 1, "\(logs.all.map(\.message))")
        #expect(Self.entries(logs, "config reloaded: applied").isEmpty)

        var changed = harness.configuration
        changed.uplink[0].name = "renamed"
        _ = await harness.bridge.reload(changed)
        #expect(harness.bridge.metrics["reload.applied"] == 1)
        #expect(Self.entries(logs, "config reloaded: applied").count == 1)
        await harness.stop()
    }

    @Test("messages_total{direction=reply} carries the rule the request came with: the uplink rule for Ditto's answer to a device")
    func replyRuleLabel() async throws {
        let registry = PrometheusCollectorRegistry()
        let metrics = BridgeMetrics(factory: BridgeMetricsBackend.makeFactory(registry: registry))
        let harness = try await BridgeHarness(yaml: downlinkConfig, metrics: metrics)
        DeviceRequestTests().answerEveryRequest(harness, value: ["interval": 30])
        let (device, inbox) = try await harness.device("asker", subscribe: ["devices/asker/answers"])
        try await device.publish(to: "devices/asker/ask/config", payload: Array("{}".utf8),
                                 properties: PublishProperties(responseTopic: "devices/asker/answers",
                                                               correlationData: Array("r-1".utf8)))
        #expect(await inbox.wait(for: 1).count == 1)
        let seen = MetricsTests.samples(registry)
        #expect(seen[#"ditto_mqtt_bridge_messages_total{direction="reply",rule="requests"}"#] == 1,
                "\(seen.keys.filter { $0.contains("messages_total") })")
        await device.disconnect()
        await harness.stop()
    }
}
