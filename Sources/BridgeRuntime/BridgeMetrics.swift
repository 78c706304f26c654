public import BridgeOperations
public import CoreMetrics
import Synchronization

/// What the bridge did and dropped: named counters (logged at shutdown, read by tests) that also feed the
/// swift-metrics series of ``BridgeMetricNames`` (`/metrics` when the executable bootstrapped a backend).
///
/// Names are stable and documented in docs/OPERATIONS.md (`uplink.published`, `uplink.dropped.invalid-payload`, ...).
/// Each name maps to one series, created once and cached, so a bump costs a lock and a dictionary lookup.
public final class BridgeMetrics: Sendable {
    private struct State {
        var counts: [String: Int] = [:]
        var series: [String: Counter?] = [:]
        /// `messages_total` by direction, then rule name.
        var published: [BridgeMetricNames.Direction: [String: Counter]] = [:]
        /// `<direction>.published` by ``slot(_:)``, kept apart from `counts`, and the series each direction bumped
        /// last: a run of messages of one rule, the usual case per message, costs no hashing.
        var publishedCounts = [0, 0, 0]
        var recent: [(rule: String, counter: Counter)?] = [nil, nil, nil]
    }

    private let state = Mutex(State())
    let factory: (any MetricsFactory)?
    /// Where the duration histograms go (`/metrics` writes them after the registry).
    public let histograms: BridgeHistograms

    /// - Parameters:
    ///   - factory: where the series go; nil: the process-wide `MetricsSystem` (a no-op until the executable
    ///     bootstraps it).
    ///   - histograms: where the duration histograms go; nil: ``BridgeHistograms/processWide`` without a factory, a
    ///     set of their own with one.
    public init(factory: (any MetricsFactory)? = nil, histograms: BridgeHistograms? = nil) {
        self.factory = factory
        self.histograms = histograms ?? (factory == nil ? .processWide : BridgeHistograms())
    }

    public func increment(_ name: String, by amount: Int = 1) {
        let counter = state.withLock { state -> Counter? in
            state.counts[name, default: 0] += amount
            if let cached = state.series[name] { return cached }
            let made = Self.series(for: name).map { label, dimensions in
                makeCounter(label, dimensions)
            }
            state.series[name] = made
            return made
        }
        counter?.increment(by: Int64(amount))
    }

    /// A message the bridge published and its broker acknowledged: `messages_total{direction, rule}`, and the
    /// count `name` (default `<direction>.published`) for the shutdown log and tests. `rule` is empty where no
    /// rule is known (Ditto's answers to device requests, messages replayed from the spool after a restart).
    public func published(_ direction: BridgeMetricNames.Direction, rule: String, as name: String? = nil) {
        let slot = Self.slot(direction)
        let counter = state.withLock { state -> Counter in
            if let name {
                state.counts[name, default: 0] += 1
            } else {
                state.publishedCounts[slot] += 1
            }
            if let recent = state.recent[slot], recent.rule == rule { return recent.counter }
            let counter: Counter
            if let cached = state.published[direction]?[rule] {
                counter = cached
            } else {
                let dimensions = [("direction", direction.rawValue), ("rule", rule)]
                counter = makeCounter(BridgeMetricNames.messages, dimensions)
                state.published[direction, default: [:]][rule] = counter
            }
            state.recent[slot] = (rule, counter)
            return counter
        }
        counter.increment()
    }

    private static func slot(_ direction: BridgeMetricNames.Direction) -> Int {
        switch direction {
        case .uplink: 0
        case .downlink: 1
        case .reply: 2
        }
    }

    private static let publishedNames = ["uplink.published", "downlink.published", "reply.published"]

    /// A SIGHUP reload: `config_reloads_total{result}` and the count `reload.<result>`.
    public func reload(_ result: BridgeMetricNames.ReloadResult) {
        count("reload.\(result.rawValue)", series: "reload.\(result.rawValue)", BridgeMetricNames.reloads,
              [("result", result.rawValue)])
    }

    /// An acknowledgement issued: `acknowledgements_total{label}` and the count `ack.issued`.
    func acknowledged(label: String) {
        count("ack.issued", series: "ack.issued.\(label)", BridgeMetricNames.acknowledgements, [("label", label)])
    }

    /// Bumps the count `name` and the series cached under `key` (made with `label` and `dimensions` once).
    private func count(_ name: String, series key: String, _ label: String, _ dimensions: [(String, String)]) {
        let counter = state.withLock { state -> Counter? in
            state.counts[name, default: 0] += 1
            if let cached = state.series[key] { return cached }
            let made = makeCounter(label, dimensions)
            state.series[key] = made
            return made
        }
        counter?.increment()
    }

    /// A series in `factory`, or in the process-wide `MetricsSystem` without one.
    private func makeCounter(_ label: String, _ dimensions: [(String, String)]) -> Counter {
        factory.map { Counter(label: label, dimensions: dimensions, factory: $0) } ?? Counter(label: label, dimensions: dimensions)
    }

    public subscript(name: String) -> Int {
        state.withLock { state in
            if let slot = Self.publishedNames.firstIndex(of: name) { return state.publishedCounts[slot] }
            return state.counts[name] ?? 0
        }
    }

    public var snapshot: [String: Int] {
        state.withLock { state in
            var counts = state.counts
            for (slot, name) in Self.publishedNames.enumerated() where state.publishedCounts[slot] > 0 {
                counts[name] = state.publishedCounts[slot]
            }
            return counts
        }
    }

    /// The Prometheus series a counter name feeds (nil: log and tests only). Published messages go through
    /// ``published(_:rule:as:)`` instead: `messages_total` always carries the `rule` label.
    /// Counter names `websocket.<event>` feed ``BridgeMetricNames/webSocketEvents``.
    static let webSocketEventPrefix = "websocket."

    static func series(for name: String) -> (String, [(String, String)])? {
        typealias Names = BridgeMetricNames
        switch name {
        case "downlink.timeout": return (Names.dropped, [("direction", "downlink"), ("reason", "timeout")])
        case "uplink.request.timeout": return (Names.dropped, [("direction", "reply"), ("reason", "timeout")])
        case "reply.unmatched": return (Names.dropped, [("direction", "reply"), ("reason", "unmatched")])
        case "ditto.invalid": return (Names.dropped, [("direction", "downlink"), ("reason", "invalid-protocol")])
        case "uplink.publish-failed": return (Names.dropped, [("direction", "uplink"), ("reason", "publish-failed")])
        case "device.connected": return (Names.connects, [("side", "device")])
        case "ditto.connected": return (Names.connects, [("side", "ditto")])
        default:
            if name.hasPrefix(webSocketEventPrefix) {
                return (Names.webSocketEvents, [("event", String(name.dropFirst(webSocketEventPrefix.count)))])
            }
            for (prefix, direction) in [("uplink.dropped.", "uplink"), ("downlink.dropped.", "downlink"),
                                        ("reply.dropped.", "reply")] where name.hasPrefix(prefix) {
                return (Names.dropped, [("direction", direction), ("reason", String(name.dropFirst(prefix.count)))])
            }
            return nil
        }
    }
}

/// Gauges sampled once a second on the event loop, and the histograms the data plane records into.
struct BridgeGauges {
    let requestsPendingDownlink: Gauge
    let requestsPendingUplink: Gauge
    let inFlightDevice: Gauge
    let inFlightDitto: Gauge
    let upDevice: Gauge
    let upDitto: Gauge
    let spoolBytes: Gauge
    let spoolMessages: Gauge
    let spoolOldestAge: Gauge
    let roundTrip: BridgeHistogram
    let mappingUplink: BridgeHistogram
    let mappingDownlink: BridgeHistogram
    let mappingReply: BridgeHistogram
    let latencyUplink: BridgeHistogram
    let latencyDownlink: BridgeHistogram

    init(metrics: BridgeMetrics) {
        typealias Names = BridgeMetricNames
        let factory = metrics.factory
        func gauge(_ label: String, _ dimensions: [(String, String)] = []) -> Gauge {
            factory.map { Gauge(label: label, dimensions: dimensions, factory: $0) } ?? Gauge(label: label, dimensions: dimensions)
        }
        requestsPendingDownlink = gauge(Names.requestsPending, [("direction", "downlink")])
        requestsPendingUplink = gauge(Names.requestsPending, [("direction", "uplink")])
        inFlightDevice = gauge(Names.publishesInFlight, [("side", "device")])
        inFlightDitto = gauge(Names.publishesInFlight, [("side", "ditto")])
        upDevice = gauge(Names.connectionUp, [("side", "device")])
        upDitto = gauge(Names.connectionUp, [("side", "ditto")])
        spoolBytes = gauge(Names.spoolBytes)
        spoolMessages = gauge(Names.spoolMessages)
        spoolOldestAge = gauge(Names.spoolOldestAge)
        func histogram(_ label: String, _ dimensions: [(String, String)] = []) -> BridgeHistogram {
            metrics.histograms.histogram(label, labels: dimensions)
        }
        roundTrip = histogram(Names.downlinkRoundTrip)
        mappingUplink = histogram(Names.mappingDuration, [("direction", "uplink")])
        mappingDownlink = histogram(Names.mappingDuration, [("direction", "downlink")])
        mappingReply = histogram(Names.mappingDuration, [("direction", "reply")])
        latencyUplink = histogram(Names.bridgeLatency, [("direction", "uplink")])
        latencyDownlink = histogram(Names.bridgeLatency, [("direction", "downlink")])
    }
}
