import BridgeConfig
import BridgeOperations
import Foundation
import Logging
import Metrics
import MosquittoTestSupport
import Prometheus
import ServiceLifecycle
import Testing

/// The endpoint on a real 127.0.0.1 socket, scraped by a plain HTTP client.
struct OperationsServerTests {
    /// Runs `server` in a ServiceGroup, hands the bound port to `body`, then shuts down gracefully and waits.
    static func withRunningServer(
        _ server: OperationsServer, _ body: (Int) async throws -> Void
    ) async throws {
        let group = ServiceGroup(
            configuration: .init(services: [server], gracefulShutdownSignals: [], logger: .test))
        // Bound before the group's tasks run: a cooperative pool busy with other tests cannot delay it.
        let started = try server.start()
        let running = Task { try await group.run() }
        do {
            let bound = try await server.waitUntilListening()
            #expect(bound == started)
            try await body(bound.port)
        } catch {
            await group.triggerGracefulShutdown()
            _ = await running.result
            throw error
        }
        await group.triggerGracefulShutdown()
        try await running.value
    }

    static let loopbackAnyPort = ListenAddress(host: "127.0.0.1", port: 0, family: .ipv4)

    @Test func metricsHealthAndReadyOverHTTP() async throws {
        let registry = PrometheusCollectorRegistry()
        let factory = BridgeMetricsBackend.makeFactory(registry: registry)
        let ready = Flag(Readiness.notReady("device broker: not connected", "ditto broker: not subscribed"))
        let server = try OperationsServer(
            address: Self.loopbackAnyPort, registry: registry, logger: .test, readiness: { ready.value })

        try await Self.withRunningServer(server) { port in
            let uplink = Counter(
                label: BridgeMetricNames.messages, dimensions: [("direction", "uplink"), ("rule", "telemetry")],
                factory: factory)
            uplink.increment(by: 3)
            Counter(
                label: BridgeMetricNames.dropped, dimensions: [("direction", "downlink"), ("reason", "device-offline")],
                factory: factory
            ).increment()
            Meter(label: BridgeMetricNames.connectionUp, dimensions: [("side", "device")], factory: factory).set(1)
            Metrics.Timer(label: BridgeMetricNames.bridgeLatency, dimensions: [("direction", "uplink")], factory: factory)
                .recordNanoseconds(2_000_000)

            let metrics = try await HTTPProbe.get("/metrics", port: port)
            #expect(metrics.status == 200)
            #expect(metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
            let lines = Set(metrics.body.split(separator: "\n").map(String.init))
            #expect(lines.contains(#"ditto_mqtt_bridge_messages_total{direction="uplink",rule="telemetry"} 3"#), "\(metrics.body)")
            #expect(lines.contains(#"ditto_mqtt_bridge_dropped_total{direction="downlink",reason="device-offline"} 1"#))
            #expect(lines.contains(#"ditto_mqtt_bridge_connection_up{side="device"} 1.0"#), "\(metrics.body)")
            // Timers become histograms in seconds with the bridge's own buckets (2 ms falls in le=0.002).
            #expect(lines.contains(#"ditto_mqtt_bridge_bridge_latency_seconds_count{direction="uplink"} 1"#), "\(metrics.body)")
            #expect(lines.contains(#"ditto_mqtt_bridge_bridge_latency_seconds_sum{direction="uplink"} 0.002"#), "\(metrics.body)")
            #expect(lines.contains(#"ditto_mqtt_bridge_bridge_latency_seconds_bucket{direction="uplink",le="0.002"} 1"#), "\(metrics.body)")
            #expect(lines.contains(#"ditto_mqtt_bridge_bridge_latency_seconds_bucket{direction="uplink",le="0.001"} 0"#), "\(metrics.body)")

            uplink.increment()
            let again = try await HTTPProbe.get("/metrics", port: port)
            #expect(again.body.contains(#"ditto_mqtt_bridge_messages_total{direction="uplink",rule="telemetry"} 4"#))

            let health = try await HTTPProbe.get("/health", port: port)
            #expect(health.status == 200)
            #expect(health.body == "ok\n")

            let notReady = try await HTTPProbe.get("/ready", port: port)
            #expect(notReady.status == 503)
            #expect(notReady.body == "not ready: device broker: not connected; ditto broker: not subscribed\n")

            ready.value = .ready
            let nowReady = try await HTTPProbe.get("/ready", port: port)
            #expect(nowReady.status == 200)
            #expect(nowReady.body == "ready\n")

            ready.value = .notReady("ditto broker: not connected")
            let droppedAgain = try await HTTPProbe.get("/ready", port: port)
            #expect(droppedAgain.status == 503)
            #expect(droppedAgain.body.contains("ditto broker: not connected"))
        }
    }

    @Test func unknownPathsAndMethods() async throws {
        let server = try OperationsServer(
            address: Self.loopbackAnyPort, registry: PrometheusCollectorRegistry(), logger: .test, isReady: { false })
        try await Self.withRunningServer(server) { port in
            let missing = try await HTTPProbe.get("/metricz", port: port)
            #expect(missing.status == 404)
            #expect(missing.body.contains("/metrics, /health and /ready"))
            let post = try await HTTPProbe.get("/metrics", port: port, method: "POST")
            #expect(post.status == 405)
            #expect(post.headers["allow"] == "GET, HEAD")
            let head = try await HTTPProbe.get("/health", port: port, method: "HEAD")
            #expect(head.status == 200)
            let ready = try await HTTPProbe.get("/ready", port: port)
            #expect(ready.status == 503)
            #expect(ready.body.hasPrefix("not ready: "))
        }
    }

    @Test func healthFollowsTheLivenessClosure() async throws {
        let alive = Flag(true)
        let server = try OperationsServer(
            address: Self.loopbackAnyPort, registry: PrometheusCollectorRegistry(), logger: .test,
            readiness: { .ready }, isAlive: { alive.value })
        try await Self.withRunningServer(server) { port in
            #expect(try await HTTPProbe.get("/health", port: port).status == 200)
            alive.value = false
            let stalled = try await HTTPProbe.get("/health", port: port)
            #expect(stalled.status == 503)
            #expect(stalled.body == "not alive\n")
        }
    }

    @Test func gracefulShutdownClosesTheListener() async throws {
        let server = try OperationsServer(
            address: Self.loopbackAnyPort, registry: PrometheusCollectorRegistry(), logger: .test, readiness: { .ready })
        var port = 0
        try await Self.withRunningServer(server) { bound in
            port = bound
            #expect(await HTTPProbe.canConnect(port: bound))
        }
        #expect(port > 0)
        #expect(await HTTPProbe.canConnect(port: port) == false)
    }

    @Test func shutdownBeforeListeningEndsTheService() async throws {
        let server = try OperationsServer(
            address: Self.loopbackAnyPort, registry: PrometheusCollectorRegistry(), logger: .test, readiness: { .ready })
        let group = ServiceGroup(configuration: .init(services: [server], gracefulShutdownSignals: [], logger: .test))
        let running = Task { try await group.run() }
        await group.triggerGracefulShutdown()
        try await running.value
    }

    @Test func aPortInUseIsAClearError() async throws {
        let first = try OperationsServer(
            address: Self.loopbackAnyPort, registry: PrometheusCollectorRegistry(), logger: .test, readiness: { .ready })
        try await Self.withRunningServer(first) { port in
            let taken = ListenAddress(host: "127.0.0.1", port: port, family: .ipv4)
            let second = try OperationsServer(
                address: taken, registry: PrometheusCollectorRegistry(), logger: .test, readiness: { .ready })
            let error = #expect(throws: OperationsServerError.self) { try second.start() }
            #expect(error?.description.contains("cannot listen on 127.0.0.1:\(port)") == true, "\(String(describing: error))")
            let failedRun = await #expect(throws: OperationsServerError.self) { try await second.run() }
            #expect(failedRun?.description == error?.description)
            #expect(error?.description.contains("cannot listen on 127.0.0.1:\(port)") == true, "\(String(describing: error))")
            #expect(error?.description.contains("in use") == true, "\(String(describing: error))")
        }
    }

    @Test func buildInfoCarriesTheVersion() {
        let registry = PrometheusCollectorRegistry()
        let descriptor = MetricNameDescriptor(
            namespace: "ditto_mqtt_bridge", metricName: "build", unitName: "info", helpText: "x")
        #expect(descriptor.name == BridgeMetricNames.buildInfo)
        registry.makeGauge(descriptor: descriptor, labels: [("version", BridgeVersion.current)]).set(to: 1)
        #expect(registry.emitToString().contains(#"ditto_mqtt_bridge_build_info{version="\#(BridgeVersion.current)"} 1"#))
    }

    @Test func metricNamesFollowPrometheusConventions() {
        #expect(Set(BridgeMetricNames.all).count == BridgeMetricNames.all.count)
        for name in BridgeMetricNames.all {
            #expect(name.hasPrefix(BridgeMetricNames.prefix), "\(name)")
            #expect(name.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "_") }, "\(name)")
            #expect(!name.hasSuffix("_milliseconds") && !name.contains("_ms"), "\(name): base units")
        }
        for counter in [
            BridgeMetricNames.messages, BridgeMetricNames.dropped, BridgeMetricNames.connects,
            BridgeMetricNames.acknowledgements, BridgeMetricNames.reloads,
        ] {
            #expect(counter.hasSuffix("_total"), "\(counter)")
        }
        for histogram in BridgeMetricNames.durationBuckets.keys {
            #expect(histogram.hasSuffix("_seconds"), "\(histogram)")
        }
    }

    @Test func theOperationsGuideListsEveryMetric() throws {
        let guide = try Repository.text("docs/OPERATIONS.md")
        for name in BridgeMetricNames.all {
            #expect(guide.contains("`\(name)`"), "docs/OPERATIONS.md does not list \(name)")
        }
    }
}

/// `ditto-mqtt-bridge probe` (the container HEALTHCHECK) against a running endpoint.
struct OperationsProbeTests {
    @Test func probesHealthAndReady() async throws {
        let ready = Flag(false)
        let server = try OperationsServer(
            address: OperationsServerTests.loopbackAnyPort, registry: PrometheusCollectorRegistry(), logger: .test,
            isReady: { ready.value })
        try await OperationsServerTests.withRunningServer(server) { port in
            // The wildcard address the container config uses is probed on loopback. The probe blocks, so it
            // runs on a thread of its own, and waits long (see HTTPProbe).
            let target = OperationsProbe.target(for: ListenAddress(host: "0.0.0.0", port: port, family: .ipv4))
            #expect(target.description == "127.0.0.1:\(port)")
            let health = try await onOwnThread { try OperationsProbe.get("/health", at: target, timeoutSeconds: 30) }
            #expect(health.status == 200)
            #expect(health.body == "ok\n")
            let notReady = try await onOwnThread { try OperationsProbe.get("/ready", at: target, timeoutSeconds: 30) }
            #expect(notReady.status == 503)
            ready.value = true
            #expect(try await onOwnThread { try OperationsProbe.get("/ready", at: target, timeoutSeconds: 30) }.status == 200)
        }
        #expect(OperationsProbe.target(for: ListenAddress(host: "::", port: 1, family: .ipv6)).description == "[::1]:1")
    }

    @Test func nothingListeningIsAFailure() async throws {
        // Bind and close a server to learn a port nobody listens on any more.
        let server = try OperationsServer(
            address: OperationsServerTests.loopbackAnyPort, registry: PrometheusCollectorRegistry(), logger: .test,
            readiness: { .ready })
        var port = 0
        try await OperationsServerTests.withRunningServer(server) { port = $0 }
        let target = ListenAddress(host: "127.0.0.1", port: port, family: .ipv4)
        await #expect(throws: OperationsProbe.Failure.self) {
            try await onOwnThread { try OperationsProbe.get("/health", at: target) }
        }
    }
}
