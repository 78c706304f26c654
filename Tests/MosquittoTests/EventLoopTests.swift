import Foundation
import MQTT
import Mosquitto
import MosquittoTestSupport
import Synchronization
import Testing

@Suite("The event loop: shared clients, back pressure, no leaks")
struct EventLoopTests {
    /// Names of this process's threads (`/proc/self/task/*/comm`, at most 15 characters).
    func threadNames() -> [String] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.compactMap { try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8) }
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
    }

    @Test("A client dropped without disconnect() closes its connection and ends its thread")
    func droppedClientLeaksNothing() async throws {
        let broker = try await TestBroker.start()
        do {
            let client = try MosquittoClient(configuration: broker.clientConfiguration(clientID: "leak-test"), logger: testLogger)
            try await client.connect()
            #expect(threadNames().contains("mqtt leak-test"))
        }
        let deadline = ContinuousClock.now + .seconds(5)
        while threadNames().contains("mqtt leak-test"), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(!threadNames().contains("mqtt leak-test"))
        // The broker saw the connection go: the same client id connects again without taking over a session.
        let again = try MosquittoClient(configuration: broker.clientConfiguration(clientID: "leak-test"), logger: testLogger)
        try await again.connect()
        await again.disconnect()
    }

    @Test("After disconnect() the client answers every call instead of waiting forever: disconnect again, publish, subscribe")
    func callsAfterDisconnectAnswer() async throws {
        let broker = try await TestBroker.start()
        let client = try MosquittoClient(configuration: broker.clientConfiguration(clientID: "late-calls"), logger: testLogger)
        try await client.connect()
        await client.disconnect()
        // The client's own loop thread has ended; a call that queued a job for it would wait forever.
        let outcomes = Mutex<[String]>([])
        let calls = Task.detached {
            await client.disconnect()
            outcomes.withLock { $0.append("disconnect") }
            do {
                try await client.publish(to: "late/topic", payload: [1], qos: .atLeastOnce)
                outcomes.withLock { $0.append("publish succeeded") }
            } catch {
                outcomes.withLock { $0.append("publish failed: \((error as? MQTTError).map { "\($0.kind)" } ?? "\(error)")") }
            }
            do {
                try await client.subscribe([Subscription(filter: "late/#", qos: .atLeastOnce)])
                outcomes.withLock { $0.append("subscribe succeeded") }
            } catch {
                outcomes.withLock { $0.append("subscribe failed: \((error as? MQTTError).map { "\($0.kind)" } ?? "\(error)")") }
            }
        }
        let deadline = ContinuousClock.now + .seconds(5)
        while outcomes.withLock({ $0.count }) < 3, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(outcomes.withLock { $0 } == ["disconnect", "publish failed: shutdown", "subscribe failed: shutdown"])
        if outcomes.withLock({ $0.count }) == 3 { await calls.value }
    }

    @Test("Two clients on one loop: a handler republishes inside the read; pausing reading holds messages back")
    func sharedLoopAndPause() async throws {
        let broker = try await TestBroker.start()
        let loop = MQTTEventLoop(name: "test loop")
        let source = try MosquittoClient(configuration: broker.clientConfiguration(clientID: "loop-source"),
                                         logger: testLogger, eventLoop: loop)
        let target = try MosquittoClient(configuration: broker.clientConfiguration(clientID: "loop-target"),
                                         logger: testLogger, eventLoop: loop)
        let acked = Counter()
        await loop.submit {
            source.onLoop.setHandlers(message: { message in
                _ = target.onLoop.publishNow(to: "out/" + message.topic, payload: message.payload, qos: .atLeastOnce, token: 7)
            })
            target.onLoop.setHandlers(message: nil, publishCompleted: { token, result in
                if token == 7, case .success = result { acked.increment() }
            })
        }
        try await target.connect()
        try await source.connect()
        try await source.subscribe([Subscription(filter: "in/#", qos: .atLeastOnce)])
        let sink = try await connectedClient(broker, subscribe: ["out/#"])
        let publisher = try await connectedClient(broker)
        for index in 0..<100 {
            try await publisher.publish(to: "in/\(index % 5)", payload: Array("\(index)".utf8))
        }
        var received: [String] = []
        for await message in sink.messages {
            received.append(String(decoding: message.payload, as: UTF8.self))
            if received.count == 100 { break }
        }
        #expect(received == (0..<100).map { "\($0)" })
        // The broker may hand the last message to the sink before the target reads its PUBACK.
        let deadline = ContinuousClock.now + .seconds(5)
        while acked.value < 100, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(acked.value == 100)

        // Paused: the broker holds what arrives; resumed: it all comes, in order.
        await loop.submit { source.onLoop.pauseReading() }
        for index in 100..<150 {
            try await publisher.publish(to: "in/x", payload: Array("\(index)".utf8))
        }
        try await Task.sleep(for: .milliseconds(300))
        #expect(acked.value == 100)
        await loop.submit { source.onLoop.resumeReading() }
        for await message in sink.messages {
            received.append(String(decoding: message.payload, as: UTF8.self))
            if received.count == 150 { break }
        }
        #expect(received.suffix(50) == (100..<150).map { "\($0)" }[...])
        for client in [source, target, sink, publisher] { await client.disconnect() }
        await loop.shutdown()
    }
}

/// SAFETY: `count` is only touched under `lock`.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}
