import BridgeOperations
import CoreMetrics
import Synchronization

/// What the bridge did and dropped: named counters (logged at shutdown, read by tests) that also feed the
/// swift-metrics series of ``BridgeMetricNames`` (`/metrics` when the executable bootstrapped a backend).
///
/// Names are stable and documented in the README (`uplink.published`, `uplink.dropped.invalid-payload`, ...).
/// Each name maps to one series, created once and cached, so a bump costs a lock and a dictionary lookup.
public final class BridgeMetrics: Sendable {
    private struct State {
        var counts: [String: Int] = [:]
        var series: [String: Counter?] = [:]
    }

    private let state = Mutex(State())
    let factory: (any MetricsFactory)?

    /// - Parameter factory: where the series go; nil: the process-wide `MetricsSystem` (a no-op until the
    ///   executable bootstraps it).
    public init(factory: (any MetricsFactory)? = nil) {
        self.factory = factory
    }

    public func increment(_ name: String, by amount: Int = 1) {
        let counter = state.withLock { state -> Counter? in
            state.counts[name, default: 0] += amount
            if let cached = state.series[name] { return cached }
            let made = Self.series(for: name).map { label, dimensions in
                factory.map { Counter(label: label, dimensions: dimensions, factory: $0) }
                    ?? Counter(label: label, dimensions: dimensions)
            }
            state.series[name] = made
            return made
        }
        counter?.increment(by: Int64(amount))
    }

    public subscript(name: String) -> Int {
        state.withLock { $0.counts[name] ?? 0 }
    }

    public var snapshot: [String: Int] {
        state.withLock { $0.counts }
    }

    /// The Prometheus series a counter name feeds (nil: log and tests only).
    static func series(for name: String) -> (String, [(String, String)])? {
        typealias Names = BridgeMetricNames
        switch name {
        case "uplink.published": return (Names.messages, [("direction", "uplink")])
        case "downlink.published": return (Names.messages, [("direction", "downlink")])
        case "reply.published", "uplink.request.answered": return (Names.messages, [("direction", "reply")])
        case "downlink.timeout": return (Names.dropped, [("direction", "downlink"), ("reason", "timeout")])
        case "uplink.request.timeout": return (Names.dropped, [("direction", "reply"), ("reason", "timeout")])
        case "reply.unmatched": return (Names.dropped, [("direction", "reply"), ("reason", "unmatched")])
        case "ditto.invalid": return (Names.dropped, [("direction", "downlink"), ("reason", "invalid-protocol")])
        case "uplink.publish-failed": return (Names.dropped, [("direction", "uplink"), ("reason", "publish-failed")])
        case "device.connected": return (Names.connects, [("side", "device")])
        case "ditto.connected": return (Names.connects, [("side", "ditto")])
        case "ack.issued": return (Names.acknowledgements, [])
        default:
            for (prefix, direction) in [("uplink.dropped.", "uplink"), ("downlink.dropped.", "downlink"),
                                        ("reply.dropped.", "reply")] where name.hasPrefix(prefix) {
                return (Names.dropped, [("direction", direction), ("reason", String(name.dropFirst(prefix.count)))])
            }
            return nil
        }
    }
}

/// Gauges sampled once a second on the event loop.
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
    let roundTrip: Timer

    init(factory: (any MetricsFactory)?) {
        typealias Names = BridgeMetricNames
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
        roundTrip = factory.map { Timer(label: Names.downlinkRoundTrip, dimensions: [], factory: $0) }
            ?? Timer(label: Names.downlinkRoundTrip)
    }
}
