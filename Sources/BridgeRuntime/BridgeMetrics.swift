import Synchronization

/// Counters of what the bridge did and dropped, by name. Cheap to bump from any task; read as a snapshot.
///
/// Names are stable and documented in the README (`uplink.mapped`, `uplink.dropped.invalid-payload`, ...),
/// so that logs, tests and a later metrics exporter speak of the same things.
public final class BridgeMetrics: Sendable {
    private let counters = Mutex<[String: Int]>([:])

    public init() {}

    public func increment(_ name: String, by amount: Int = 1) {
        counters.withLock { $0[name, default: 0] += amount }
    }

    public subscript(name: String) -> Int {
        counters.withLock { $0[name] ?? 0 }
    }

    public var snapshot: [String: Int] {
        counters.withLock { $0 }
    }
}
