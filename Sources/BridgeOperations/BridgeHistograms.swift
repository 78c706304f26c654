import Prometheus
import Synchronization

/// The bridge's duration histograms (``BridgeMetricNames/mappingDuration``, ``BridgeMetricNames/bridgeLatency``,
/// ``BridgeMetricNames/downlinkRoundTrip``), which `/metrics` writes after the registry's series.
///
/// Why not swift-metrics' `Timer` into swift-prometheus: the data plane records two durations per message, and a
/// Prometheus histogram takes a `pthread` lock and compares the value with every bucket bound as a 128-bit
/// `Duration` on each. Here a value costs a binary search over integer nanoseconds and two relaxed atomic additions;
/// the buckets are made cumulative when written out. The text is the registry's own format
/// (bound and sum written by `Duration.bucketRepresentation`), so a scraper sees no difference.
public final class BridgeHistograms: Sendable {
    /// The histograms of the process, as swift-metrics' `MetricsSystem` is the process's backend: what
    /// ``BridgeMetricsBackend/bootstrap(version:)`` sets up serves both, and `/metrics` writes both.
    public static let processWide = BridgeHistograms()

    private let all = Mutex<[BridgeHistogram]>([])

    public init() {}

    /// The series `name` with `labels` (one per name and labels: asking again returns the same series), with the
    /// buckets of ``BridgeMetricNames/durationBuckets``.
    public func histogram(_ name: String, labels: [(String, String)] = []) -> BridgeHistogram {
        let labelText = labels.map { "\($0.0)=\"\($0.1)\"" }.joined(separator: ",")
        return all.withLock { all in
            if let existing = all.first(where: { $0.name == name && $0.labelText == labelText }) { return existing }
            let bounds = BridgeMetricNames.durationBuckets[name] ?? []
            let made = BridgeHistogram(name: name, labelText: labelText, bounds: bounds)
            all.append(made)
            return made
        }
    }

    /// Every series in the Prometheus text format, a `# TYPE` line before each name's first.
    public func emit(into buffer: inout [UInt8]) {
        let series = all.withLock { $0 }
        var written: Set<String> = []
        for name in series.map(\.name) where written.insert(name).inserted {
            buffer.append(contentsOf: "# TYPE \(name) histogram\n".utf8)
            for histogram in series where histogram.name == name { histogram.emit(into: &buffer) }
        }
    }
}

/// One histogram series of ``BridgeHistograms``.
public final class BridgeHistogram: Sendable {
    let name: String
    /// `direction="uplink"`, or empty.
    let labelText: String
    /// Bucket bounds in nanoseconds, ascending, and as the exposition writes them.
    private let bounds: [Int64]
    private let boundTexts: [String]
    /// Per bucket, not cumulative; the one after the last bound is `+Inf`. Relaxed atomics: one thread records (the
    /// event loop), a scrape reads, and a scrape that races a recording may see its bucket and not yet its sum.
    private let counts: InlineArray<16, Atomic<Int>>
    private let sumNanoseconds = Atomic<Int64>(0)

    init(name: String, labelText: String, bounds: [Duration]) {
        precondition(bounds.count < 16, "\(name): at most 15 bucket bounds")
        self.name = name
        self.labelText = labelText
        let sorted = bounds.sorted()
        self.bounds = sorted.map { Int64($0 / .nanoseconds(1)) }
        boundTexts = sorted.map(\.bucketRepresentation)
        counts = InlineArray { _ in Atomic(0) }
    }

    /// Adds one observation (a bucket's bound is inclusive, as Prometheus' `le` says).
    public func recordNanoseconds(_ nanoseconds: Int64) {
        var low = 0
        var high = bounds.count
        while low < high {
            let middle = (low + high) / 2
            if bounds[middle] < nanoseconds { low = middle + 1 } else { high = middle }
        }
        counts[low].wrappingAdd(1, ordering: .relaxed)
        sumNanoseconds.wrappingAdd(nanoseconds, ordering: .relaxed)
    }

    /// The observations so far: how many, and their sum in nanoseconds.
    public var totals: (count: Int, sumNanoseconds: Int64) {
        ((0...bounds.count).reduce(0) { $0 + counts[$1].load(ordering: .relaxed) },
         sumNanoseconds.load(ordering: .relaxed))
    }

    func emit(into buffer: inout [UInt8]) {
        let labels = labelText.isEmpty ? "" : labelText + ","
        var cumulative = 0
        for (index, bound) in boundTexts.enumerated() {
            cumulative += counts[index].load(ordering: .relaxed)
            buffer.append(contentsOf: "\(name)_bucket{\(labels)le=\"\(bound)\"} \(cumulative)\n".utf8)
        }
        cumulative += counts[boundTexts.count].load(ordering: .relaxed)
        buffer.append(contentsOf: "\(name)_bucket{\(labels)le=\"+Inf\"} \(cumulative)\n".utf8)
        let braced = labelText.isEmpty ? "" : "{\(labelText)}"
        let sum = Duration.nanoseconds(sumNanoseconds.load(ordering: .relaxed)).bucketRepresentation
        buffer.append(contentsOf: "\(name)_sum\(braced) \(sum)\n".utf8)
        buffer.append(contentsOf: "\(name)_count\(braced) \(cumulative)\n".utf8)
    }
}
