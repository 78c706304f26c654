import BridgeConfig
import BridgeMapping
@testable import BridgeRuntime
import DittoProtocol
import Testing

@Suite("KeptDecisions: the bounded per-topic table")
struct KeptDecisionsTests {
    /// The values of `topics`, looked up in order (a lookup marks a key as in use, so it cannot sit in `#expect`).
    static func values(_ table: inout KeptTopics<Int>, _ topics: [String]) -> [Int?] {
        topics.map { table.value(forTopic: $0) }
    }

    @Test("Under the limit every key keeps its own value")
    func lookupsUnderManyKeys() {
        var table = KeptTopics<Int>(limit: 50_000)
        var evicted = false
        for n in 0..<50_000 { evicted = table.keep(n, forTopic: "dev/\(n)/telemetry") || evicted }
        #expect(!evicted)
        #expect(table.count == 50_000)
        let sample = Array(stride(from: 0, to: 50_000, by: 7))
        let found = Self.values(&table, sample.map { "dev/\($0)/telemetry" })
        #expect(found == sample.map { Optional($0) })
        let unknown = table.value(forTopic: "dev/50000/telemetry")
        #expect(unknown == nil)
        // Keeping a key again replaces its value without evicting.
        let replacedEvicted = table.keep(-1, forTopic: "dev/3/telemetry")
        let replaced = table.value(forTopic: "dev/3/telemetry")
        #expect(!replacedEvicted && replaced == -1 && table.count == 50_000)
    }

    @Test("Past the limit a new key is kept, an unused one goes, keys in use stay")
    func evictsUnusedFirst() {
        var table = KeptTopics<Int>(limit: 4)
        for n in 0..<4 { table.keep(n, forTopic: "k\(n)") }
        // k1 and k3 are in use; k0 and k2 are not.
        _ = Self.values(&table, ["k1", "k3"])
        let evictedFor4 = table.keep(4, forTopic: "k4")
        let k0 = table.value(forTopic: "k0")
        let evictedFor5 = table.keep(5, forTopic: "k5")
        let k2 = table.value(forTopic: "k2")
        #expect(evictedFor4 && evictedFor5)
        #expect(k0 == nil && k2 == nil)
        #expect(table.count == 4)
        #expect(Self.values(&table, ["k1", "k3", "k4", "k5"]) == [1, 3, 4, 5])
    }

    /// The downlink's table of signals keeps its keys as they are, with the same eviction.
    @Test("Keys kept as themselves: the same eviction")
    func hashedKeysEvictUnusedFirst() {
        var table = KeptDecisions<HashedKeys<Int>, String>(limit: 3)
        for n in 0..<3 { table.keep("v\(n)", for: n) }
        _ = table.value(for: 0)
        let evicted = table.keep("v3", for: 3)
        let (zero, one, three) = (table.value(for: 0), table.value(for: 1), table.value(for: 3))
        #expect(evicted && zero == "v0" && one == nil && three == "v3" && table.count == 3)
    }

    /// Within one page of slots, and over pages (the last one partly filled); topics of different lengths, so an
    /// evicted topic's bytes are written over where the new one fits and left behind where it does not.
    @Test("A stream of new keys through a full table: bounded, every new key kept, values never mixed up",
          arguments: [1_000, 2_500])
    func cyclesThroughMoreKeysThanTheLimit(limit: Int) {
        var table = KeptTopics<Int>(limit: limit)
        var evictions = 0
        var hotKeyLost = false
        var largest = 0
        func topic(_ n: Int) -> String { "dev/\(n)/" + String(repeating: "x", count: n % 37) + "/telemetry" }
        for n in 0..<20_000 {
            if table.keep(n, forTopic: topic(n)) { evictions += 1 }
            // A hot key, looked up between the new ones, stays.
            hotKeyLost = table.value(forTopic: topic(0)) != 0 || hotKeyLost
            if n >= limit { largest = max(largest, table.storageBytes) }
        }
        #expect(!hotKeyLost)
        #expect(table.count == limit)
        #expect(evictions == 20_000 - limit)
        let last = table.value(forTopic: topic(19_999))
        #expect(last == 19_999)
        var kept = 0
        var mixedUp = 0
        for n in 0..<20_000 {
            guard let value = table.value(forTopic: topic(n)) else { continue }
            kept += 1
            if value != n { mixedUp += 1 }
        }
        #expect(kept == limit)
        #expect(mixedUp == 0)
        // The bytes left behind by evicted topics are taken back: the arena does not grow with the stream.
        #expect(largest <= limit * 150 + 2 * 65_536, "\(largest) bytes for \(limit) topics")
    }

    @Test("removeAll empties the table (a reload); it fills again from scratch")
    func reloadEmpties() {
        var table = KeptTopics<Int>(limit: 3)
        for n in 0..<5 { table.keep(n, forTopic: "k\(n)") }
        table.removeAll()
        #expect(table.count == 0)
        #expect(Self.values(&table, (0..<5).map { "k\($0)" }) == Array(repeating: nil, count: 5))
        var evicted = false
        for n in 0..<3 { evicted = table.keep(n * 10, forTopic: "k\(n)") || evicted }
        #expect(!evicted)
        let evictedFor3 = table.keep(30, forTopic: "k3")
        let k3 = table.value(forTopic: "k3")
        #expect(evictedFor3 && k3 == 30 && table.count == 3)
    }

    /// More topics than one page of slots and one page of the arena; a topic is found by its bytes only, whatever
    /// the `String` (native, bridged from a substring, with non-ASCII bytes).
    @Test("Growth across pages of slots and of the arena; topics told apart by their bytes")
    func growsAcrossPages() {
        var table = KeptTopics<Int>(limit: 100_000)
        func topic(_ n: Int) -> String { "site-\(n % 7)/gateway/point-\(n)/名/value" }
        for n in 0..<30_000 { table.keep(n, forTopic: topic(n)) }
        #expect(table.count == 30_000)
        var mixedUp = 0
        for n in 0..<30_000 where table.value(forTopic: topic(n)) != n { mixedUp += 1 }
        #expect(mixedUp == 0)
        let padded = "xx" + topic(12_345) + "yy"
        let found = table.value(forTopic: String(padded.dropFirst(2).dropLast(2)))
        let prefix = table.value(forTopic: "site-5/gateway/point-12")
        let empty = table.value(forTopic: "")
        #expect(found == 12_345 && prefix == nil && empty == nil)
        // A topic of the longest length an MQTT topic can have is kept too.
        let longest = String(repeating: "a", count: 65_535)
        table.keep(-1, forTopic: longest)
        let kept = table.value(forTopic: longest)
        #expect(kept == -1)
    }

    /// Many keys in one probe run: the same hash for all (a collision chain), and hashes that wrap around the end
    /// of the slots. Removals move the entries behind them back, so every entry left is still found.
    @Test("The index: collisions, wrap-around and removals against a model")
    func indexAgainstAModel() {
        var index = SlotIndex()
        var model: [Int: Int] = [:] // position -> hash
        var generator = SystemRandomNumberGenerator()
        func check() -> Int {
            var lost = 0
            for (position, hash) in model where index.first(hash: hash, where: { $0 == position }) != position {
                lost += 1
            }
            return lost
        }
        // Hashes from a small set: long chains of equal and of neighbouring hashes, some at the last slots.
        let hashes = [0, 1, 15, 31, 63, -1, 7]
        var next = 0
        var lost = 0
        var foundRemoved = 0
        for round in 0..<4_000 {
            if model.count < 200, round % 3 != 2 || model.isEmpty {
                let hash = hashes[Int.random(in: 0..<hashes.count, using: &generator)]
                index.insert(hash: hash, position: next, limit: 1_000)
                model[next] = hash
                next += 1
            } else {
                let position = model.keys.randomElement(using: &generator)!
                index.remove(hash: model[position]!, position: position)
                let hash = model.removeValue(forKey: position)!
                if index.first(hash: hash, where: { $0 == position }) != nil { foundRemoved += 1 }
            }
            if round % 50 == 0 { lost += check() }
        }
        lost += check()
        #expect(lost == 0 && foundRemoved == 0)
        #expect(index.first(hash: 12_345) { _ in true } == nil)
    }

    /// What a kept device topic costs in the runtime's tables (arena, index, slots, and its thing with its
    /// revision), for the topics scenarios' rule: a topic per point, a thing per point. Fails past issue 23's
    /// bound, and when the entry kept per topic grows by a word.
    @Test("At most 200 bytes per kept topic at 100,000 topics")
    func bytesPerKeptTopic() throws {
        // The topics scenarios' rule (bridge-bench's `cycledTopicsRule`).
        let yaml = """
            defaults: { namespace: org.bench }
            uplink:
              - { name: points, topic: "dev/{deviceId}/telemetry", thing-id: "{namespace}:point-{deviceId}",
                  event: { action: modified, path: "/features/telemetry/properties/value" }, payload: { format: json } }
            """
        let configuration = try BridgeConfiguration.parse(yaml: yaml, fileName: "test.yaml", environment: [:])
        let mapper = UplinkMapper(configuration: configuration)
        let topicCount = 100_000
        var topics = KeptTopics<KeptTopic>(limit: 262_144)
        let stamps = EventStamps(revisionBase: 0)
        for n in 0..<topicCount {
            let topic = "dev/\(n)/telemetry"
            let route = try #require(try DittoPublication.route(topic: topic, mapper: mapper, ditto: configuration.ditto))
            let thing = stamps.thingPosition(of: route.uplink.thingID)
            topics.keep(KeptTopic(replyMatches: [], uplink: route.parts, thing: UInt32(thing)), forTopic: topic)
        }
        #expect(topics.count == topicCount && stamps.things.count == topicCount)
        #expect(MemoryLayout<KeptTopic>.stride <= 48, "\(MemoryLayout<KeptTopic>.stride) bytes")
        let perTopic = Double(topics.storageBytes + stamps.things.storageBytes) / Double(topicCount)
        #expect(perTopic <= 200, "\(perTopic) bytes per kept topic")
        // What is kept is the route: put together again, it is the one the mapping makes.
        let found = topics.value(forTopic: "dev/4242/telemetry")
        let kept = try #require(found)
        let route = DittoPublication.Route(try #require(kept.uplink), thingID: stamps.thing(at: Int(kept.thing)))
        #expect(route.uplink.thingID.description == "org.bench:point-4242")
    }

    /// A thing's revisions go on where they were when its topic is evicted and seen again.
    @Test("Revisions per thing survive the eviction of its topics")
    func revisionsOutliveTopics() throws {
        let stamps = EventStamps(revisionBase: 1_000)
        let a = try ThingID("org.bench:a")
        let b = try ThingID("org.bench:b")
        let positionA = stamps.thingPosition(of: a)
        #expect(stamps.nextRevision(for: a) == 1_001)
        #expect(stamps.nextRevision(for: b) == 1_001)
        #expect(stamps.nextRevision(for: a) == 1_002)
        // The same thing again (a second topic of it, or its topic kept again): the same position and counter.
        let again = try ThingID("org.bench:a")
        #expect(stamps.thingPosition(of: again) == positionA)
        _ = stamps.thing(at: positionA)
        #expect(stamps.nextRevision(for: b) == 1_002)
        #expect(stamps.nextRevision(for: a) == 1_003)
        #expect(stamps.things.count == 2)
    }
}
