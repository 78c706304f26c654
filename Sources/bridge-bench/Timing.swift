/// Latency samples in nanoseconds, reported as percentiles.
struct LatencySamples {
    private(set) var nanoseconds: [Int64] = []

    mutating func record(_ duration: Duration) {
        nanoseconds.append(duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }

    func percentile(_ p: Double) -> Double {
        guard !nanoseconds.isEmpty else { return 0 }
        let sorted = nanoseconds.sorted()
        let index = min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded()))
        return Double(sorted[index]) / 1_000
    }

    var summary: String {
        "p50 \(format(percentile(0.5))) µs, p99 \(format(percentile(0.99))) µs, max \(format(percentile(1))) µs"
    }
}

func format(_ value: Double) -> String {
    value >= 100 ? String(Int(value.rounded())) : String((value * 10).rounded() / 10)
}

func rate(_ count: Int, _ elapsed: Duration) -> String {
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    return String(Int((Double(count) / seconds).rounded())) + " msg/s"
}

extension Duration {
    var microseconds: Int64 { components.seconds * 1_000_000 + components.attoseconds / 1_000_000_000_000 }
}
