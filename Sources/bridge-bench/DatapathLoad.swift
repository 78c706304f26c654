import CMosquitto
import DittoProtocol
import DittoWebSocketTestSupport
import Foundation
import Logging
import MQTT
import Mosquitto
import MosquittoTestSupport
import Synchronization

/// The device telemetry the uplink scenarios send: a JSON object with the device number, the phase (probe,
/// warm-up, measured), a per-device sequence number and the send time, padded to `size` bytes. The bridge
/// maps the whole object into the live event's `value`; the relay passes it on unchanged; either way the
/// Ditto-side receiver finds the fields again.
enum Telemetry {
    static let size = 128
    static let probePhase = 0

    static func payload(device: Int, phase: Int, sequence: Int, timestamp: Int64) -> [UInt8] {
        var bytes = Array(#"{"dev":\#(device),"ph":\#(phase),"seq":\#(sequence),"ts":\#(timestamp),"pad":""#.utf8)
        bytes.append(contentsOf: repeatElement(UInt8(ascii: "x"), count: max(0, size - bytes.count - 2)))
        bytes.append(contentsOf: Array(#""}"#.utf8))
        return bytes
    }

    struct Fields {
        var device = -1
        var phase = -1
        var sequence = -1
        var timestamp: Int64 = -1
    }

    /// Finds `"dev":`, `"ph":`, `"seq":` and `"ts":` anywhere in the bytes (the bridge's envelope wraps the
    /// object, the relay's does not). A byte scan: decoding every envelope would cost the receiver more CPU
    /// than the subject spends on it.
    static func parse(_ bytes: UnsafeRawBufferPointer) -> Fields? {
        var fields = Fields()
        var index = 0
        let count = bytes.count
        let quote = UInt8(ascii: "\"")
        while index < count {
            guard bytes[index] == quote else {
                index += 1
                continue
            }
            var end = index + 1
            while end < count, bytes[end] != quote {
                end += bytes[end] == UInt8(ascii: "\\") ? 2 : 1
            }
            guard end + 1 < count, bytes[end + 1] == UInt8(ascii: ":") else {
                index = end + 1
                continue
            }
            let keyLength = end - index - 1
            var value: Int64 = 0
            var digit = end + 2
            var digits = 0
            while digit < count, bytes[digit] >= 0x30, bytes[digit] <= 0x39 {
                value = value * 10 + Int64(bytes[digit] - 0x30)
                digit += 1
                digits += 1
            }
            if digits > 0, keyLength >= 2, keyLength <= 3 {
                let first = bytes[index + 1]
                let second = bytes[index + 2]
                switch (keyLength, first, second) {
                case (3, UInt8(ascii: "d"), UInt8(ascii: "e")): fields.device = Int(value)
                case (2, UInt8(ascii: "p"), UInt8(ascii: "h")): fields.phase = Int(value)
                case (3, UInt8(ascii: "s"), UInt8(ascii: "e")): fields.sequence = Int(value)
                case (2, UInt8(ascii: "t"), UInt8(ascii: "s")): fields.timestamp = value
                default: break
                }
            }
            index = digits > 0 ? digit : end + 1
        }
        guard fields.device >= 0, fields.phase >= 0, fields.sequence >= 0, fields.timestamp >= 0 else { return nil }
        return fields
    }
}

/// The client in Ditto's place for the uplink: counts what arrives per phase, checks the order per device,
/// and takes the latency from the timestamp inside each message, on the receiving network thread.
final class TelemetryReceiver: Sendable {
    struct Stats {
        var received = 0
        var duplicates = 0
        var reordered = 0
        var otherPhase = 0
        var unparsable = 0
        var latencies: [Int64] = []
        var firstArrival: Int64 = 0
        var lastArrival: Int64 = 0
        /// Per device: the highest sequence number seen, and which were seen (to tell duplicates from reorders).
        var highest: [Int] = []
        var seen: [[Bool]] = []
    }

    final class Counts: Sendable {
        let phase = Atomic<Int>(-1)
        /// Unique messages of the current phase; read by the senders' window without taking the lock.
        let uniqueReceived = Atomic<Int>(0)
        let probes = Atomic<Int>(0)
        let stats = Mutex(Stats())

        func record(_ payload: UnsafeRawBufferPointer) {
            let arrival = monotonicNanoseconds()
            guard let fields = Telemetry.parse(payload) else {
                stats.withLock { $0.unparsable += 1 }
                return
            }
            if fields.phase == Telemetry.probePhase {
                probes.add(1, ordering: .relaxed)
                return
            }
            let current = phase.load(ordering: .acquiring)
            let unique = stats.withLock { stats -> Bool in
                guard fields.phase == current, fields.device < stats.highest.count else {
                    stats.otherPhase += 1
                    return false
                }
                stats.received += 1
                if stats.firstArrival == 0 { stats.firstArrival = arrival }
                stats.lastArrival = arrival
                stats.latencies.append(arrival - fields.timestamp)
                let device = fields.device
                let sequence = fields.sequence
                if sequence >= stats.seen[device].count {
                    stats.seen[device].append(contentsOf: repeatElement(false, count: sequence + 1 - stats.seen[device].count))
                }
                if stats.seen[device][sequence] {
                    stats.duplicates += 1
                    return false
                }
                stats.seen[device][sequence] = true
                if sequence < stats.highest[device] { stats.reordered += 1 }
                stats.highest[device] = max(stats.highest[device], sequence)
                return true
            }
            if unique { uniqueReceived.add(1, ordering: .relaxed) }
        }
    }

    let counts = Counts()
    private let connection: RawConnection?
    /// Over Ditto's WebSocket binding: the stand-in for `/ws/2` the bridge connects to.
    let sink: DittoWebSocketSink?

    /// Over MQTT: a subscriber to `filter` on the Ditto-side broker.
    init(port: Int, filter: String, qos: Int32) throws {
        let counts = counts
        connection = try RawConnection(port: port, clientID: "bench-ditto") { message in
            counts.record(UnsafeRawBufferPointer(start: message.pointee.payload, count: Int(message.pointee.payloadlen)))
        }
        sink = nil
        try connection?.startNetworkThread()
        try connection?.subscribe(filter, qos: qos)
    }

    /// Over Ditto's WebSocket binding: a sink the bridge connects to; each text frame is recorded on the
    /// session's thread as it arrives.
    init() throws {
        let counts = counts
        connection = nil
        sink = try DittoWebSocketSink { counts.record($0) }
    }

    var uniqueReceived: Int { counts.uniqueReceived.load(ordering: .relaxed) }
    var probes: Int { counts.probes.load(ordering: .relaxed) }

    /// Starts counting a new phase from zero.
    func begin(phase newPhase: Int, devices: Int, expected: Int) {
        counts.stats.withLock { stats in
            stats = Stats()
            stats.latencies.reserveCapacity(expected)
            stats.highest = Array(repeating: -1, count: devices)
            stats.seen = Array(repeating: [], count: devices)
        }
        counts.uniqueReceived.store(0, ordering: .relaxed)
        counts.phase.store(newPhase, ordering: .releasing)
    }

    func snapshot() -> Stats { counts.stats.withLock { $0 } }

    func close() async {
        connection?.close()
        await sink?.stop()
    }
}

/// The devices: `devices` device ids spread over `connections` MQTT connections to the device broker, all
/// driven by one sender thread at a time. With `cycledTopics`, the messages go to that many topics in turn
/// (``Datapath/Scenario/cycledTopic(_:of:)``), their payloads still numbered per device for the order check.
final class DeviceFleet: Sendable {
    let connections: [RawConnection]
    let topics: [String]
    let cycledTopics: Int?

    init(port: Int, devices: Int, connections count: Int, cycledTopics: Int? = nil) async throws {
        self.cycledTopics = cycledTopics
        connections = try await onOwnThread {
            try (0..<max(1, min(count, devices))).map { index in
                let connection = try RawConnection(port: port, clientID: "bench-device-\(index)")
                try connection.serviceUntilConnected()
                return connection
            }
        }
        topics = (0..<devices).map { "devices/" + String(format: "dev-%02d", $0) + "/telemetry/temp" }
    }

    func close() {
        for connection in connections { connection.close() }
    }

    private func serviceAll() throws {
        for connection in connections { try connection.service() }
    }

    /// Publishes one probe (phase 0) from device 0.
    func probe(sequence: Int) async throws {
        try await onOwnThread { [self] in
            let topic = cycledTopics.map { Datapath.Scenario.cycledTopic(0, of: $0) } ?? topics[0]
            try connections[0].publish(topic: topic, payload: Telemetry.payload(device: 0, phase: Telemetry.probePhase,
                                                                                     sequence: sequence, timestamp: monotonicNanoseconds()),
                                       qos: 1)
            try serviceAll()
        }
    }

    /// Sends `count` messages round-robin over the devices, in order, from one thread: each device's order is
    /// its publish order, and QoS 1 publishes do not wait for each other. With `rate`, message `i` is due at
    /// `start + i / rate`; with `window`, the sender waits while that many messages are sent but not yet
    /// received (closed loop: as fast as the subject keeps up, without queues growing without bound; a lost
    /// message stops it for 200 ms at most). Stops at `deadline` at the latest. Returns the number sent. Cycled
    /// topics start at `firstTopic`.
    func send(phase: Int, qos: Int32, count: Int, firstTopic: Int = 0, rate: Int?, window: Int?, deadline: Int64,
              receiver: TelemetryReceiver) async throws -> Int {
        try await onOwnThread { [self] in
            let devices = topics.count
            let start = monotonicNanoseconds()
            var lastService = start
            var sent = 0
            while sent < count {
                var now = monotonicNanoseconds()
                if now >= deadline { break }
                if let rate {
                    let due = start + Int64(sent) * 1_000_000_000 / Int64(rate)
                    while due > now {
                        if now - lastService > 2_000_000 {
                            try serviceAll()
                            lastService = now
                        }
                        sleepNanoseconds(min(due - now, 1_000_000))
                        now = monotonicNanoseconds()
                    }
                }
                if let window, sent - receiver.uniqueReceived >= window {
                    let stalledSince = now
                    while sent - receiver.uniqueReceived >= window, now - stalledSince < 200_000_000 {
                        if now - lastService > 1_000_000 {
                            try serviceAll()
                            lastService = now
                        }
                        sleepNanoseconds(20_000)
                        now = monotonicNanoseconds()
                    }
                }
                let device = sent % devices
                let payload = Telemetry.payload(device: device, phase: phase, sequence: sent / devices, timestamp: now)
                let topic = cycledTopics.map { Datapath.Scenario.cycledTopic(firstTopic + sent, of: $0) } ?? topics[device]
                try connections[device % connections.count].publish(topic: topic, payload: payload, qos: qos)
                sent += 1
                if sent % 64 == 0 {
                    try serviceAll()
                    lastService = now
                }
            }
            // Let the acknowledgements in and anything still buffered out.
            let until = monotonicNanoseconds() + 200_000_000
            repeat {
                try serviceAll()
                sleepNanoseconds(200_000)
            } while monotonicNanoseconds() < until && connections.reduce(0, { $0 + $1.acknowledged.load(ordering: .relaxed) }) < sent
            return sent
        }
    }
}

final class Counter: Sendable {
    let value = Atomic<Int>(0)
}

/// The client in Ditto's place for the downlink: sends live messages, matches the responses by
/// correlation-id and records the round trip.
final class RoundTripTracker: Sendable {
    struct State {
        var phase = "none"
        var sent: [Int: Int64] = [:]
        var latencies: [Int64] = []
        var completed = 0
        var errors = 0
        var unmatched = 0
        var probeAnswered = false
        var waiting: (index: Int, continuation: CheckedContinuation<Void, Never>)?
    }

    let state = Mutex(State())

    /// Over MQTT: the responses on the Ditto-side broker.
    init(_ messages: AsyncStream<MQTTMessage>) {
        Task { [self] in
            for await message in messages {
                record(message.payload, correlationData: message.properties.correlationData)
            }
        }
    }

    /// Over Ditto's WebSocket binding: ``record(_:correlationData:)`` is called with each text frame.
    init() {}

    /// A response: the bridge answers with a Ditto envelope; the zero-work relay hands back the device's bytes
    /// with the request's correlation data.
    func record(_ payload: [UInt8], correlationData: [UInt8]?) {
        let arrival = monotonicNanoseconds()
        let envelope = try? Envelope.decode(payload)
        guard let id = envelope?.headers.correlationID ?? correlationData.map({ String(decoding: $0, as: UTF8.self) }) else {
            state.withLock { $0.unmatched += 1 }
            return
        }
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if id.hasPrefix("probe-") {
                state.probeAnswered = true
                return nil
            }
            let parts = id.split(separator: "-")
            guard parts.count == 2, parts[0] == state.phase, let index = Int(parts[1]),
                  let sentAt = state.sent.removeValue(forKey: index)
            else {
                state.unmatched += 1
                return nil
            }
            state.completed += 1
            state.latencies.append(arrival - sentAt)
            if let status = envelope?.status, !(200..<300).contains(status) { state.errors += 1 }
            if let waiting = state.waiting, waiting.index == index {
                state.waiting = nil
                return waiting.continuation
            }
            return nil
        }
        waiter?.resume()
    }

    func begin(phase: String) {
        state.withLock { state in
            state = State(probeAnswered: state.probeAnswered)
            state.phase = phase
        }
    }

    func recordSend(_ index: Int) {
        let now = monotonicNanoseconds()
        state.withLock { $0.sent[index] = now }
    }

    /// Waits for the response to request `index`, at most `timeout`. False when it did not come.
    func waitForResponse(_ index: Int, timeout: Duration) async -> Bool {
        let watchdog = Task { [self] in
            try await Task.sleep(for: timeout)
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                defer { state.waiting = nil }
                return state.waiting?.continuation
            }
            waiter?.resume()
        }
        defer { watchdog.cancel() }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let answered = state.withLock { state -> Bool in
                if state.sent[index] == nil { return true }
                state.waiting = (index, continuation)
                return false
            }
            if answered { continuation.resume() }
        }
        return state.withLock { $0.sent[index] == nil }
    }

    var outstanding: Int { state.withLock { $0.sent.count } }
}

/// Percentile of nanosecond samples, in microseconds.
func percentileMicroseconds(_ sorted: [Int64], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    let index = min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded()))
    return Double(sorted[index]) / 1_000
}
