@testable import BridgeRuntime
import Testing

@Suite("KeptDecisions: the bounded per-topic table")
struct KeptDecisionsTests {
    /// The values of `keys`, looked up in order (a lookup marks a key as in use, so it cannot sit in `#expect`).
    static func values(_ table: inout KeptDecisions<String, Int>, _ keys: [String]) -> [Int?] {
        keys.map { table.value(for: $0) }
    }

    @Test("Under the limit every key keeps its own value")
    func lookupsUnderManyKeys() {
        var table = KeptDecisions<String, Int>(limit: 50_000)
        var evicted = false
        for n in 0..<50_000 { evicted = table.keep(n, for: "dev/\(n)/telemetry") || evicted }
        #expect(!evicted)
        #expect(table.count == 50_000)
        let sample = Array(stride(from: 0, to: 50_000, by: 7))
        let found = Self.values(&table, sample.map { "dev/\($0)/telemetry" })
        #expect(found == sample.map { Optional($0) })
        let unknown = table.value(for: "dev/50000/telemetry")
        #expect(unknown == nil)
        // Keeping a key again replaces its value without evicting.
        let replacedEvicted = table.keep(-1, for: "dev/3/telemetry")
        let replaced = table.value(for: "dev/3/telemetry")
        #expect(!replacedEvicted && replaced == -1 && table.count == 50_000)
    }

    @Test("Past the limit a new key is kept, an unused one goes, keys in use stay")
    func evictsUnusedFirst() {
        var table = KeptDecisions<String, Int>(limit: 4)
        for n in 0..<4 { table.keep(n, for: "k\(n)") }
        // k1 and k3 are in use; k0 and k2 are not.
        _ = Self.values(&table, ["k1", "k3"])
        let evictedFor4 = table.keep(4, for: "k4")
        let k0 = table.value(for: "k0")
        let evictedFor5 = table.keep(5, for: "k5")
        let k2 = table.value(for: "k2")
        #expect(evictedFor4 && evictedFor5)
        #expect(k0 == nil && k2 == nil)
        #expect(table.count == 4)
        #expect(Self.values(&table, ["k1", "k3", "k4", "k5"]) == [1, 3, 4, 5])
    }

    /// Within one page of slots, and over pages (the last one partly filled).
    @Test("A stream of new keys through a full table: bounded, every new key kept, values never mixed up",
          arguments: [1_000, 2_500])
    func cyclesThroughMoreKeysThanTheLimit(limit: Int) {
        var table = KeptDecisions<String, Int>(limit: limit)
        var evictions = 0
        var hotKeyLost = false
        for n in 0..<20_000 {
            if table.keep(n, for: "dev/\(n)/telemetry") { evictions += 1 }
            // A hot key, looked up between the new ones, stays.
            hotKeyLost = table.value(for: "dev/0/telemetry") != 0 || hotKeyLost
        }
        #expect(!hotKeyLost)
        #expect(table.count == limit)
        #expect(evictions == 20_000 - limit)
        let last = table.value(for: "dev/19999/telemetry")
        #expect(last == 19_999)
        var kept = 0
        var mixedUp = 0
        for n in 0..<20_000 {
            guard let value = table.value(for: "dev/\(n)/telemetry") else { continue }
            kept += 1
            if value != n { mixedUp += 1 }
        }
        #expect(kept == limit)
        #expect(mixedUp == 0)
    }

    @Test("removeAll empties the table (a reload); it fills again from scratch")
    func reloadEmpties() {
        var table = KeptDecisions<String, Int>(limit: 3)
        for n in 0..<5 { table.keep(n, for: "k\(n)") }
        table.removeAll()
        #expect(table.count == 0)
        #expect(Self.values(&table, (0..<5).map { "k\($0)" }) == Array(repeating: nil, count: 5))
        var evicted = false
        for n in 0..<3 { evicted = table.keep(n * 10, for: "k\(n)") || evicted }
        #expect(!evicted)
        let evictedFor3 = table.keep(30, for: "k3")
        let k3 = table.value(for: "k3")
        #expect(evictedFor3 && k3 == 30 && table.count == 3)
    }
}
