// mqtt-relay: the zero-work reference the bridge is benchmarked against (`bridge-bench datapath`).
//
// It subscribes on a source broker and republishes every message's bytes unchanged to
// `<prefix>/<original topic>` on a target broker (which may be the same broker), with the same QoS. It does
// what the bridge's data path must do at the least (receive, hand over, publish, track the acknowledgement)
// and nothing else, so `bridge / relay` is the price of the mapping and the bridge's runtime.

import ArgumentParser
import Dispatch
import Logging
import Mosquitto
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// What the relay does to one message. Kept in one place so that the per-message path can be moved onto the
/// client's network thread (a synchronous message handler and a non-awaiting publish) without touching
/// anything else.
struct Relay: Sendable {
    let prefix: String

    func relay(_ message: MQTTMessage) -> (topic: String, payload: [UInt8]) {
        (prefix + "/" + message.topic, message.payload)
    }
}

/// A counting semaphore for async code: bounds how many messages are taken but not yet acknowledged.
final class Gate: Sendable {
    private struct State {
        var available: Int
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state: Mutex<State>

    init(_ permits: Int) {
        state = Mutex(State(available: permits))
    }

    func acquire() async {
        let granted = state.withLock { state in
            guard state.available > 0 else { return false }
            state.available -= 1
            return true
        }
        if granted { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state in
                if state.available > 0 {
                    state.available -= 1
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    func release() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.available += 1
                return nil
            }
            return state.waiters.removeFirst()
        }
        waiter?.resume()
    }
}

/// Publishes with many messages in flight while keeping the order per topic: each topic always goes to the
/// same lane, a lane publishes one message after the other, the lanes run concurrently.
final class Pipeline: Sendable {
    final class Counters: Sendable {
        let published = Atomic<Int>(0)
        let failed = Atomic<Int>(0)
        /// Taken and not yet acknowledged (or failed).
        let pending = Atomic<Int>(0)
    }

    typealias Item = (topic: String, payload: [UInt8])
    private let lanes: [AsyncStream<Item>.Continuation]
    private let workers: [Task<Void, Never>]
    private let gate: Gate
    let counters = Counters()

    init(target: MosquittoClient, qos: QoS, lanes count: Int, maximumTaken: Int, logger: Logger) {
        let gate = Gate(maximumTaken)
        let counters = counters
        var lanes: [AsyncStream<Item>.Continuation] = []
        var workers: [Task<Void, Never>] = []
        for _ in 0..<count {
            // Unbounded here, bounded overall by `gate`.
            let (stream, continuation) = AsyncStream.makeStream(of: Item.self)
            lanes.append(continuation)
            workers.append(Task {
                for await item in stream {
                    do {
                        try await target.publish(to: item.topic, payload: item.payload, qos: qos)
                        counters.published.add(1, ordering: .relaxed)
                    } catch {
                        if counters.failed.add(1, ordering: .relaxed).newValue == 1 {
                            logger.warning("publishing to the target failed (further failures are only counted): \(error)")
                        }
                    }
                    counters.pending.subtract(1, ordering: .relaxed)
                    gate.release()
                }
            })
        }
        self.gate = gate
        self.lanes = lanes
        self.workers = workers
    }

    /// Waits while `maximumTaken` messages are not yet acknowledged, then queues this one on its topic's lane.
    func enqueue(topic: String, payload: [UInt8]) async {
        await gate.acquire()
        counters.pending.add(1, ordering: .relaxed)
        // FNV-1a: a topic's lane must not change while the relay runs.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in topic.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        lanes[Int(hash % UInt64(lanes.count))].yield((topic, payload))
    }

    /// Waits (at most `timeout`) until every taken message is acknowledged or failed.
    func drain(timeout: Duration) async {
        let deadline = ContinuousClock.now + timeout
        while counters.pending.load(ordering: .relaxed) > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Ends the lanes; call after the target client is disconnected, so that nothing waits any more.
    func finish() async {
        for lane in lanes { lane.finish() }
        for worker in workers { await worker.value }
    }
}

struct MQTTRelay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mqtt-relay",
        abstract: "Republish every message unchanged under a prefix: the zero-work reference for bridge-bench.",
        discussion: "Runs until SIGINT or SIGTERM, then disconnects both sides and exits 0.")

    @Option(help: "Source broker host.") var sourceHost = "127.0.0.1"
    @Option(help: "Source broker port.") var sourcePort: Int
    @Option(help: "Target broker host.") var targetHost = "127.0.0.1"
    @Option(help: "Target broker port (may equal the source's).") var targetPort: Int
    @Option(help: "Topic filter to subscribe to on the source broker.") var filter: String
    @Option(help: "Messages go to <prefix>/<original topic> on the target broker.") var prefix: String
    @Option(help: "QoS of the subscription and of the publishes (0, 1 or 2).") var qos: Int = 1
    @Option(help: "Topics published concurrently (each topic stays in order).") var lanes: Int = 64
    @Option(help: "Messages taken from the source but not yet acknowledged by the target, at most.")
    var maximumInFlight: Int = 1_000
    @Option(help: "trace, debug, info, notice, warning, error or critical.") var logLevel: String = "warning"

    func validate() throws {
        for (name, port) in [("--source-port", sourcePort), ("--target-port", targetPort)] where !(1...65_535).contains(port) {
            throw ValidationError("\(name) must be 1...65535, not \(port)")
        }
        guard let level = QoS(rawValue: UInt8(clamping: qos)), level.rawValue == qos else {
            throw ValidationError("--qos must be 0, 1 or 2, not \(qos)")
        }
        guard lanes >= 1, maximumInFlight >= 1 else { throw ValidationError("--lanes and --maximum-in-flight must be at least 1") }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        do {
            try MQTTTopic.validateFilter(filter)
            try MQTTTopic.validatePublishTopic(prefix + "/x")
        } catch {
            throw ValidationError("\(error)")
        }
        let sameBroker = sourceHost == targetHost && sourcePort == targetPort
        if sameBroker, MQTTTopic.matches(filter: filter, topic: prefix + "/" + prefix) || MQTTTopic.matches(filter: filter, topic: prefix) {
            throw ValidationError("--filter '\(filter)' matches '\(prefix)/...' on the same broker: the relay would read its own output")
        }
    }

    func run() async throws {
        try await relayUntilStopped()
    }

    func relayUntilStopped() async throws {
        var logger = Logger(label: "mqtt-relay")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .warning
        let qos = QoS(rawValue: UInt8(qos)) ?? .atLeastOnce
        // The signal sources must exist before anything can fail, so that SIGTERM during connect also ends us.
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        let (stopRequests, stop) = AsyncStream.makeStream(of: Int32.self)
        let signalSources = [SIGTERM, SIGINT].map { number in
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { stop.yield(number) }
            source.resume()
            return source
        }
        defer { signalSources.forEach { $0.cancel() } }

        let pid = getpid()
        var sourceConfiguration = MQTTConfiguration(host: sourceHost, port: sourcePort, clientID: "mqtt-relay-source-\(pid)")
        sourceConfiguration.reconnect = .init(initial: .milliseconds(100), maximum: .seconds(2))
        var targetConfiguration = MQTTConfiguration(host: targetHost, port: targetPort, clientID: "mqtt-relay-target-\(pid)")
        targetConfiguration.reconnect = sourceConfiguration.reconnect
        targetConfiguration.maxInflightPublishes = max(targetConfiguration.maxInflightPublishes, maximumInFlight)
        let source = try MosquittoClient(configuration: sourceConfiguration, logger: logger)
        let target = try MosquittoClient(configuration: targetConfiguration, logger: logger)

        let relay = Relay(prefix: prefix)
        let pipeline = Pipeline(target: target, qos: qos, lanes: lanes, maximumTaken: maximumInFlight, logger: logger)
        let messages = source.messages
        let consumer = Task {
            for await message in messages {
                let (topic, payload) = relay.relay(message)
                await pipeline.enqueue(topic: topic, payload: payload)
            }
        }
        do {
            // Each step ends in bounded time (connect throws when the broker refuses or cannot be reached); a
            // signal meanwhile waits in `stopRequests`.
            try await target.connect()
            try await source.connect()
            try await source.subscribe([Subscription(filter: filter, qos: qos)])
        } catch {
            await source.disconnect()
            await target.disconnect()
            var standardError = StandardError()
            print("mqtt-relay: \(error)", to: &standardError)
            throw ExitCode(1)
        }
        logger.notice("relaying \(filter) on \(sourceHost):\(sourcePort) to \(prefix)/... on \(targetHost):\(targetPort), QoS \(qos.rawValue)")
        for await _ in stopRequests { break }

        // Stop taking messages, let what was taken reach the target (bounded), then leave both brokers.
        await source.disconnect()
        await consumer.value
        await pipeline.drain(timeout: .seconds(2))
        await target.disconnect()
        await pipeline.finish()
        let counters = pipeline.counters
        logger.notice("""
            relayed \(counters.published.load(ordering: .relaxed)), failed \(counters.failed.load(ordering: .relaxed)), \
            dropped by the source client \(source.droppedMessages)
            """)
    }
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        let bytes = Array(string.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }
}

// Top-level code cannot use @main; this is ArgumentParser's own sequence for an async command.
do {
    var command = try MQTTRelay.parseAsRoot()
    if let relay = command as? MQTTRelay {
        try await relay.relayUntilStopped()
    } else {
        try command.run()
    }
} catch {
    MQTTRelay.exit(withError: error)
}
