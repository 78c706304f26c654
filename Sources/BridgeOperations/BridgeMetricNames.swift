import CoreMetrics
import Metrics
public import Prometheus

/// The names of everything the bridge exports on `/metrics`, so the runtime, the tests and docs/OPERATIONS.md
/// use the same strings.
///
/// Prometheus conventions: the `ditto_mqtt_bridge_` prefix, `_total` on counters, base units (seconds,
/// bytes) in the name. A name always carries the same label names (the Prometheus registry refuses a second
/// label set), listed with each constant. Create them through swift-metrics, e.g.
/// `Counter(label: BridgeMetricNames.messages, dimensions: [("direction", "uplink"), ("rule", rule.name)])`.
public enum BridgeMetricNames {
    /// Every name starts with this.
    public static let prefix = "ditto_mqtt_bridge_"

    /// Counter. Messages the bridge published: `direction` (``Direction``), `rule` (the rule's `name`; empty
    /// for replies without a rule).
    public static let messages = "ditto_mqtt_bridge_messages_total"
    /// Counter. Messages the bridge could not take: `direction`, `reason` (the drop kind the logs name:
    /// `no-rule`, `invalid-payload`, `device-offline`, `timeout`, ...).
    public static let dropped = "ditto_mqtt_bridge_dropped_total"
    /// Gauge. Requests waiting for an answer: `direction` (`downlink`: Ditto waits for a device;
    /// `uplink`: a device waits for Ditto).
    public static let requestsPending = "ditto_mqtt_bridge_requests_pending"
    /// Gauge. Publishes sent to a broker and not yet acknowledged: `side` (``Side``).
    public static let publishesInFlight = "ditto_mqtt_bridge_publishes_in_flight"
    /// Gauge, 1 or 0. Connected (CONNACK received, subscriptions restored): `side`.
    public static let connectionUp = "ditto_mqtt_bridge_connection_up"
    /// Counter. Successful connects (the first and every reconnect): `side`.
    public static let connects = "ditto_mqtt_bridge_connects_total"
    /// Gauge. Bytes in the spool (messages kept while the Ditto side is unreachable). No labels.
    public static let spoolBytes = "ditto_mqtt_bridge_spool_bytes"
    /// Gauge. Messages in the spool. No labels.
    public static let spoolMessages = "ditto_mqtt_bridge_spool_messages"
    /// Gauge. Age of the oldest spooled message in seconds; 0 when the spool is empty. No labels.
    public static let spoolOldestAge = "ditto_mqtt_bridge_spool_oldest_age_seconds"
    /// Histogram (swift-metrics `Timer`). Time to map one message (rule match, payload, envelope):
    /// `direction`.
    public static let mappingDuration = "ditto_mqtt_bridge_mapping_duration_seconds"
    /// Histogram. From a message's arrival at the bridge to the broker's acknowledgement of what the bridge
    /// published for it: `direction`.
    public static let bridgeLatency = "ditto_mqtt_bridge_bridge_latency_seconds"
    /// Histogram. From a Ditto request reaching the bridge to its answer leaving towards Ditto (device answer,
    /// timeout or error). No labels.
    public static let downlinkRoundTrip = "ditto_mqtt_bridge_downlink_round_trip_seconds"
    /// Counter. Acknowledgements issued: `label` (the ack label).
    public static let acknowledgements = "ditto_mqtt_bridge_acknowledgements_total"
    /// Counter. What happened to the sessions of Ditto's WebSocket binding besides connects: `event`
    /// (`session-ended`, `unresponsive`, `label-conflict`, `subscribe-retried`, `token-refreshed`).
    public static let webSocketEvents = "ditto_mqtt_bridge_websocket_events_total"
    /// Counter. Config reloads: `result` (`applied`, `unchanged`, `rejected`).
    public static let reloads = "ditto_mqtt_bridge_config_reloads_total"
    /// Gauge, always 1: `version`. Joins the version onto other series in queries.
    public static let buildInfo = "ditto_mqtt_bridge_build_info"

    /// Every name, for tests and documentation checks.
    public static let all = [
        messages, dropped, requestsPending, publishesInFlight, connectionUp, connects, spoolBytes, spoolMessages,
        spoolOldestAge, mappingDuration, bridgeLatency, downlinkRoundTrip, acknowledgements, webSocketEvents, reloads,
        buildInfo,
    ]

    /// Values of the `direction` label.
    public enum Direction: String, Sendable, CaseIterable {
        /// Device -> Ditto (events, messages, device-initiated requests).
        case uplink
        /// Ditto -> device (live messages and commands).
        case downlink
        /// A device's answer to Ditto, or Ditto's answer to a device.
        case reply
    }

    /// Values of the `result` label of ``reloads``.
    public enum ReloadResult: String, Sendable, CaseIterable {
        /// A valid file was applied.
        case applied
        /// The file was valid and equal to the running config.
        case unchanged
        /// The file was refused (the running config stays).
        case rejected
    }

    /// Values of the `side` label.
    public enum Side: String, Sendable, CaseIterable {
        /// The broker the devices use.
        case device
        /// The broker Ditto's MQTT-5 connection uses.
        case ditto
    }

    /// Histogram buckets per name: mapping takes microseconds, a bridge hop milliseconds, a device round trip
    /// up to Ditto's 60 s request timeout.
    public static let durationBuckets: [String: [Duration]] = [
        mappingDuration: [
            .microseconds(10), .microseconds(25), .microseconds(50), .microseconds(100), .microseconds(250),
            .microseconds(500), .milliseconds(1), .milliseconds(5), .milliseconds(25),
        ],
        bridgeLatency: [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(500),
            .seconds(1), .seconds(5), .seconds(30),
        ],
        downlinkRoundTrip: [
            .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
            .seconds(5), .seconds(10), .seconds(30), .seconds(60),
        ],
    ]
}

/// The Prometheus side of swift-metrics for the bridge.
public enum BridgeMetricsBackend {
    /// A factory writing into `registry`, with the bridge's histogram buckets. Tests pass it to
    /// `Counter(label:dimensions:factory:)` instead of bootstrapping the process-wide `MetricsSystem`.
    public static func makeFactory(registry: PrometheusCollectorRegistry) -> PrometheusMetricsFactory {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = BridgeMetricNames.durationBuckets
        return factory
    }

    /// Creates the registry `/metrics` serves, makes it the process-wide swift-metrics backend and sets
    /// ``BridgeMetricNames/buildInfo``. Call once, from the executable only (swift-metrics traps on a second
    /// bootstrap; libraries and tests never call it).
    public static func bootstrap(version: String = BridgeVersion.current) -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(makeFactory(registry: registry))
        let descriptor = MetricNameDescriptor(
            namespace: "ditto_mqtt_bridge", metricName: "build", unitName: "info",
            helpText: "Always 1; the version label names the running ditto-mqtt-bridge.")
        registry.makeGauge(descriptor: descriptor, labels: [("version", version)]).set(to: 1)
        return registry
    }
}
