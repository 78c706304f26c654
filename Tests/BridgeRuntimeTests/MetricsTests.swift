import BridgeOperations
import BridgeRuntime
import DittoProtocol
import Foundation
import Mosquitto
import MosquittoTestSupport
import Prometheus
import Testing

/// The series the running bridge feeds, read from a Prometheus registry as `/metrics` would serve them.
@Suite("Metrics of the running bridge")
struct MetricsTests {
    /// `name{labels} value` lines of the registry's text format.
    static func samples(_ registry: PrometheusCollectorRegistry,
                        _ histograms: BridgeHistograms? = nil) -> [String: Double] {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        histograms?.emit(into: &buffer)
        var samples: [String: Double] = [:]
        for line in String(decoding: buffer, as: UTF8.self).split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            samples[String(line[..<space])] = value
        }
        return samples
    }

    /// `published` keeps the series each direction bumped last: interleaved rules and directions, and counts under
    /// another name, must still land on their own series and counts.
    @Test func publishedCountsEachRuleAndDirection() {
        let registry = PrometheusCollectorRegistry()
        let metrics = BridgeMetrics(factory: BridgeMetricsBackend.makeFactory(registry: registry))
        let sequence: [(BridgeMetricNames.Direction, String, String?)] = [
            (.uplink, "a", nil), (.uplink, "a", nil), (.uplink, "b", nil), (.downlink, "a", nil), (.uplink, "a", nil),
            (.reply, "r", nil), (.reply, "r", "uplink.request.answered"), (.uplink, "", nil), (.uplink, "b", nil),
        ]
        for (direction, rule, name) in sequence { metrics.published(direction, rule: rule, as: name) }
        let seen = Self.samples(registry)
        func series(_ direction: String, _ rule: String) -> Double? {
            seen[#"ditto_mqtt_bridge_messages_total{direction="\#(direction)",rule="\#(rule)"}"#]
        }
        #expect(series("uplink", "a") == 3)
        #expect(series("uplink", "b") == 2)
        #expect(series("uplink", "") == 1)
        #expect(series("downlink", "a") == 1)
        #expect(series("reply", "r") == 2)
        #expect(metrics["uplink.published"] == 6)
        #expect(metrics["downlink.published"] == 1)
        #expect(metrics["reply.published"] == 1)
        #expect(metrics["uplink.request.answered"] == 1)
        #expect(metrics.snapshot == [
            "uplink.published": 6, "downlink.published": 1, "reply.published": 1, "uplink.request.answered": 1,
        ])
    }

    @Test("messages_total carries the rule, acknowledgements their label; mapping and latency histograms fill")
    func labelledSeries() async throws {
        let registry = PrometheusCollectorRegistry()
        let metrics = BridgeMetrics(factory: BridgeMetricsBackend.makeFactory(registry: registry))
        let telemetry = """
            uplink:
              - name: telemetry
                topic: "devices/{deviceId}/telemetry/{sensor}"
                thing-id: "{namespace}:{deviceId}"
                event: { action: modified, path: "/features/{sensor}/properties/value" }
                payload: { format: json }

            """
        let yaml = downlinkConfig.replacingOccurrences(of: "\nuplink:\n", with: "\n" + telemetry)
        #expect(yaml != downlinkConfig)
        let harness = try await BridgeHarness(yaml: yaml, metrics: metrics)
        let (device, _) = try await startMQTT5Device(harness, id: "dev1") { _ in (200, Array(#"{"ok": true}"#.utf8)) }
        for n in 0..<3 {
            try await device.publish(to: "devices/dev1/telemetry/temp", payload: Array(#"{"n": \#(n)}"#.utf8))
        }
        var headers = [("requested-acks", #"["edge-bridge:delivered","edge-bridge:answered"]"#)]
        headers.append(("response-required", "true"))
        let request = try liveMessage("org.example:dev1", subject: "reboot", correlationID: "m-1", headers: headers)
        try await harness.sendFromDitto(request, thingID: "org.example:dev1", correlationID: "m-1")
        #expect(await harness.envelope(correlationID: "m-1") { $0.status == 200 && $0.topic.criterion == .messages } != nil)

        // Counters of acknowledged publishes move when the broker's PUBACK arrives: wait for them.
        let deadline = ContinuousClock.now + .seconds(10)
        var seen = Self.samples(registry, metrics.histograms)
        while seen[#"ditto_mqtt_bridge_messages_total{direction="uplink",rule="telemetry"}"#] != 3
            || seen[#"ditto_mqtt_bridge_acknowledgements_total{label="edge-bridge:answered"}"#] != 1,
            ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            seen = Self.samples(registry, metrics.histograms)
        }
        let text = seen.keys.sorted().joined(separator: "\n")
        #expect(seen[#"ditto_mqtt_bridge_messages_total{direction="uplink",rule="telemetry"}"#] == 3, "\(text)")
        #expect(seen[#"ditto_mqtt_bridge_messages_total{direction="downlink",rule="inbox"}"#] == 1, "\(text)")
        #expect(seen[#"ditto_mqtt_bridge_messages_total{direction="reply",rule="inbox"}"#] == 1, "\(text)")
        #expect(seen[#"ditto_mqtt_bridge_acknowledgements_total{label="edge-bridge:delivered"}"#] == 1, "\(text)")
        #expect(seen[#"ditto_mqtt_bridge_acknowledgements_total{label="edge-bridge:answered"}"#] == 1, "\(text)")
        #expect(seen[#"ditto_mqtt_bridge_mapping_duration_seconds_count{direction="uplink"}"#] == 3, "\(text)")
        #expect(seen[#"ditto_mqtt_bridge_mapping_duration_seconds_count{direction="downlink"}"#] == 1, "\(text)")
        #expect(seen[#"ditto_mqtt_bridge_mapping_duration_seconds_count{direction="reply"}"#] == 1, "\(text)")
        #expect(seen[#"ditto_mqtt_bridge_bridge_latency_seconds_count{direction="uplink"}"#] == 3, "\(text)")
        #expect(seen[#"ditto_mqtt_bridge_bridge_latency_seconds_count{direction="downlink"}"#] == 1, "\(text)")
        #expect(seen[#"ditto_mqtt_bridge_downlink_round_trip_seconds_count"#] == 1, "\(text)")
        // The counts the shutdown log prints agree.
        #expect(metrics["uplink.published"] == 3)
        #expect(metrics["ack.issued"] == 2)
        await device.disconnect()
        await harness.stop()
    }
}
