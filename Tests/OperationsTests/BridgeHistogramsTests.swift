import BridgeOperations
import Metrics
import Prometheus
import Testing

/// The bridge's own histograms must read, to a scraper, exactly as swift-prometheus writes a histogram.
struct BridgeHistogramsTests {
    /// Values on, between, below and above the bounds of each of the bridge's bucket sets.
    static func observations(_ name: String) -> [Int64] {
        let bounds = (BridgeMetricNames.durationBuckets[name] ?? []).map { Int64($0 / .nanoseconds(1)) }
        var values: [Int64] = [0, 1, 999]
        for bound in bounds { values += [bound - 1, bound, bound + 1] }
        values += [(bounds.last ?? 0) * 3, 123_456_789]
        return values
    }

    static func lines(_ buffer: [UInt8]) -> [String] {
        String(decoding: buffer, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    @Test("each series is written as swift-prometheus writes the same observations", arguments: [
        (BridgeMetricNames.mappingDuration, [("direction", "uplink")]),
        (BridgeMetricNames.bridgeLatency, [("direction", "downlink")]),
        (BridgeMetricNames.downlinkRoundTrip, []),
    ])
    func sameTextAsPrometheus(name: String, labels: [(String, String)]) {
        let registry = PrometheusCollectorRegistry()
        let timer = Metrics.Timer(label: name, dimensions: labels,
                                  factory: BridgeMetricsBackend.makeFactory(registry: registry))
        let histograms = BridgeHistograms()
        let histogram = histograms.histogram(name, labels: labels)
        for value in Self.observations(name) {
            timer.recordNanoseconds(value)
            histogram.recordNanoseconds(value)
        }
        var theirs: [UInt8] = []
        registry.emit(into: &theirs)
        var ours: [UInt8] = []
        histograms.emit(into: &ours)
        #expect(Self.lines(ours) == Self.lines(theirs))
        #expect(histogram.totals.count == Self.observations(name).count)
    }

    @Test("one series per name and labels; one TYPE line per name")
    func seriesAreShared() {
        let histograms = BridgeHistograms()
        let uplink = histograms.histogram(BridgeMetricNames.bridgeLatency, labels: [("direction", "uplink")])
        #expect(histograms.histogram(BridgeMetricNames.bridgeLatency, labels: [("direction", "uplink")]) === uplink)
        let downlink = histograms.histogram(BridgeMetricNames.bridgeLatency, labels: [("direction", "downlink")])
        #expect(downlink !== uplink)
        uplink.recordNanoseconds(2_000_000)
        var buffer: [UInt8] = []
        histograms.emit(into: &buffer)
        let lines = Self.lines(buffer)
        #expect(lines.filter { $0.hasPrefix("# TYPE") } == ["# TYPE \(BridgeMetricNames.bridgeLatency) histogram"])
        #expect(lines.contains(#"ditto_mqtt_bridge_bridge_latency_seconds_bucket{direction="uplink",le="0.002"} 1"#))
        #expect(lines.contains(#"ditto_mqtt_bridge_bridge_latency_seconds_bucket{direction="uplink",le="0.001"} 0"#))
        #expect(lines.contains(#"ditto_mqtt_bridge_bridge_latency_seconds_count{direction="downlink"} 0"#))
    }

    @Test("/metrics serves the histograms after the registry's series")
    func servedByTheEndpoint() async throws {
        let registry = PrometheusCollectorRegistry()
        BridgeMetricsBackend.makeFactory(registry: registry).makeCounter(label: BridgeMetricNames.messages,
                                                                          dimensions: [("direction", "uplink")])
            .increment(by: 1)
        let histograms = BridgeHistograms()
        histograms.histogram(BridgeMetricNames.mappingDuration, labels: [("direction", "reply")])
            .recordNanoseconds(30_000)
        let server = try OperationsServer(address: OperationsServerTests.loopbackAnyPort, registry: registry,
                                          histograms: histograms, logger: .test, readiness: { .ready })
        try await OperationsServerTests.withRunningServer(server) { port in
            let metrics = try await HTTPProbe.get("/metrics", port: port)
            let lines = Set(metrics.body.split(separator: "\n").map(String.init))
            #expect(lines.contains(#"ditto_mqtt_bridge_messages_total{direction="uplink"} 1"#), "\(metrics.body)")
            #expect(lines.contains("# TYPE ditto_mqtt_bridge_mapping_duration_seconds histogram"), "\(metrics.body)")
            #expect(lines.contains(#"ditto_mqtt_bridge_mapping_duration_seconds_bucket{direction="reply",le="0.000025"} 0"#),
                    "\(metrics.body)")
            #expect(lines.contains(#"ditto_mqtt_bridge_mapping_duration_seconds_bucket{direction="reply",le="0.00005"} 1"#),
                    "\(metrics.body)")
            #expect(lines.contains(#"ditto_mqtt_bridge_mapping_duration_seconds_count{direction="reply"} 1"#), "\(metrics.body)")
            #expect(lines.contains(#"ditto_mqtt_bridge_mapping_duration_seconds_sum{direction="reply"} 0.00003"#), "\(metrics.body)")
        }
    }
}
