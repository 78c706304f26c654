import DittoProtocol

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `bridge-bench protocol`: Ditto Protocol decode/encode and JSON throughput on one core.
enum ProtocolBenchmarks {
    /// A typical live event as the bridge emits it (about 300 bytes: UUID correlation-id, feature property, revision).
    static let liveEvent = #"""
        {"topic":"org.acme.factory/press-17/things/live/events/modified","headers":{"correlation-id":"3f1c9a52-7d2e-4a8b-9c11-2b6e0f4d8a90","content-type":"application/json"},"path":"/features/hydraulics/properties/pressure","value":{"value":212.75,"unit":"bar","ok":true},"revision":1042,"timestamp":"2026-11-23T12:00:00.123Z"}
        """#

    /// A larger JSON document: a thing with many features, mixed types, escapes and non-ASCII text.
    static func largeDocument() -> [UInt8] {
        var features = JSONObject()
        for i in 0..<400 {
            features["sensor-\(i)"] = [
                "definition": [.string("org.acme:sensor:1.0.\(i % 7)")],
                "properties": [
                    "value": .number(JSONNumber(Double(i) * 1.25 + 0.5)), "raw": .number(JSONNumber(i * 1_000_003)),
                    "unit": "°C", "label": .string("Température \"zone\" \(i)\t/ok"), "valid": .bool(i % 3 != 0), "last": nil,
                    "history": [1.5, 2.25, 3, -4e-3, 12345678901234567],
                ],
            ]
        }
        let thing: JSONValue = ["thingId": "org.acme:plant", "attributes": ["site": "Zürich", "floor": 3], "features": .object(features)]
        return JSON.serialize(thing)
    }

    /// Runs one benchmark for at least `minimumSeconds` and prints operations per second (and MB/s when
    /// `unitBytes` is given). `filter` (second command-line argument) skips labels not containing it.
    static func measure(
        _ label: String, filter: String?, minimumSeconds: Double = 1.5, unitBytes: Int? = nil, _ body: () -> Int
    ) {
        if let filter, !label.contains(filter) { return }
        let clock = ContinuousClock()
        var iterations = 0
        var sink = 0
        // Warm up caches and lazy statics.
        for _ in 0..<100 { sink &+= body() }
        let start = clock.now
        let cpuStart = threadCPUSeconds()
        var elapsed = Duration.zero
        repeat {
            for _ in 0..<200 { sink &+= body() }
            iterations += 200
            elapsed = clock.now - start
        } while elapsed < .seconds(minimumSeconds)
        let cpu = threadCPUSeconds() - cpuStart
        let wall = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        // CPU time of this thread: the rate one core achieves even when the machine is shared.
        let perSecond = Double(iterations) / cpu
        var line = "\(label): \(format(perSecond)) ops/s per core, \(format(cpu / Double(iterations) * 1e9)) ns/op"
        if let unitBytes {
            line += ", \(format(perSecond * Double(unitBytes) / 1_000_000)) MB/s"
        }
        line += " (wall clock: \(format(Double(iterations) / wall)) ops/s)"
        print(line + (sink == 42 ? " " : ""))
    }

    /// CPU time consumed by the calling thread.
    static func threadCPUSeconds() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) * 1e-9
    }

    static func format(_ value: Double) -> String {
        if value >= 100 { return String(Int(value.rounded())) }
        let scaled = (value * 100).rounded() / 100
        return String(scaled)
    }

    static func run() {
        let arguments = CommandLine.arguments
        let filter = arguments.count > 2 ? arguments[2] : nil
        func measure(_ label: String, minimumSeconds: Double = 1.5, unitBytes: Int? = nil, _ body: () -> Int) {
            ProtocolBenchmarks.measure(label, filter: filter, minimumSeconds: minimumSeconds, unitBytes: unitBytes, body)
        }
        let eventBytes = Array(liveEvent.utf8)
        print("bridge-bench protocol (one core; swift run -c release bridge-bench protocol)")
        print("live event: \(eventBytes.count) bytes")
        guard let decodedEvent = try? Envelope.decode(eventBytes) else {
            print("error: the benchmark event does not decode")
            return
        }

        measure("live event decode+encode", unitBytes: eventBytes.count) {
            guard let envelope = try? Envelope.decode(eventBytes) else { return 0 }
            return envelope.encoded().count
        }
        measure("live event decode", unitBytes: eventBytes.count) {
            (try? Envelope.decode(eventBytes))?.path.utf8.count ?? 0
        }
        measure("live event encode", unitBytes: eventBytes.count) {
            decodedEvent.encoded().count
        }
        if let thing = try? ThingID("org.acme.factory:press-17") {
            var headers = DittoHeaders()
            headers.correlationID = "3f1c9a52-7d2e-4a8b-9c11-2b6e0f4d8a90"
            measure("live message build+encode") {
                let message = try? Envelope.liveMessage(
                    thingID: thing, featureID: "hydraulics", direction: .outbox, subject: "alarm",
                    payload: .json(["pressure": 212.75, "limit": 200]), headers: headers)
                return message?.encoded().count ?? 0
            }
        }
        measure("topic parse", minimumSeconds: 1) {
            (try? TopicPath(parsing: "org.acme.factory/press-17/things/live/messages/alarm/high"))?.namespace.utf8.count ?? 0
        }

        let large = largeDocument()
        print("JSON document: \(large.count) bytes")
        guard let largeValue = try? JSON.parse(large) else {
            print("error: the benchmark document does not parse")
            return
        }
        measure("JSON parse", unitBytes: large.count) {
            (try? JSON.parse(large))?.objectValue?.count ?? 0
        }
        measure("JSON serialize", unitBytes: large.count) {
            JSON.serialize(largeValue).count
        }
        measure("JSON parse (live event)", minimumSeconds: 1, unitBytes: eventBytes.count) {
            (try? JSON.parse(eventBytes))?.objectValue?.count ?? 0
        }
    }
}
