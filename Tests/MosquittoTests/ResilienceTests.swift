import Foundation
import MQTT
import Mosquitto
import MosquittoTestSupport
import Synchronization
import Testing

@Suite("Reconnect, refusal, TLS, will and topic checks against real brokers")
struct ResilienceTests {
    @Test("Broker killed (-9) and restarted while publishing QoS 1: reconnect, subscription restored, no acked message missing")
    func brokerKilledAndRestarted() async throws {
        let broker = try await TestBroker.start()
        // One client publishes and subscribes: after the restart its subscription is restored before anything
        // is published on the new connection, so every message the broker acknowledged must come back.
        let client = try await connectedClient(broker, subscribe: ["kill/#"])
        let received = MessageCollector(client.messages)
        let events = MessageCollectorOfEvents(client.events)
        let acked = Mutex<Set<Int>>([])
        let publisher = Task {
            for index in 0..<150 {
                if (try? await client.publish(to: "kill/seq", payload: Array("\(index)".utf8), qos: .atLeastOnce)) != nil {
                    acked.withLock { _ = $0.insert(index) }
                }
                try? await Task.sleep(for: .milliseconds(5))
            }
        }
        while acked.withLock({ $0.count }) < 40 { try await Task.sleep(for: .milliseconds(5)) }
        broker.kill9()
        try await Task.sleep(for: .milliseconds(400))
        #expect(!client.isConnected)
        try await broker.restart()
        await publisher.value
        let ackedIndexes = acked.withLock { $0 }
        #expect(ackedIndexes.count == 150)
        let messages = await received.wait(for: 150, timeout: .seconds(15))
        let receivedIndexes = Set(messages.compactMap { Int(String(decoding: $0.payload, as: UTF8.self)) })
        #expect(ackedIndexes.subtracting(receivedIndexes).isEmpty, "acknowledged but never received: \(ackedIndexes.subtracting(receivedIndexes).sorted())")
        let seen = events.events
        #expect(seen.contains { if case .disconnected(let error) = $0 { error != nil } else { false } })
        #expect(seen.filter { if case .connected = $0 { true } else { false } }.count >= 1)
        // The restarted broker lost the session: ready again only after it granted the restored subscription.
        let lastConnected = seen.lastIndex { if case .connected(sessionPresent: false) = $0 { true } else { false } }
        let lastRestored = seen.lastIndex(of: .subscriptionsRestored)
        #expect(lastConnected != nil && lastRestored != nil && lastRestored! > lastConnected!, "\(seen)")
        #expect(client.isConnected)
        await client.disconnect()
    }

    @Test("Wrong password: a clear refusal within seconds, and recovery once the broker accepts the client")
    func wrongPassword() async throws {
        let broker = try await TestBroker.start(.init(passwordFile: true))
        var configuration = broker.clientConfiguration()
        configuration.credentials = .init(username: broker.username, password: "wrong")
        let client = try MosquittoClient(configuration: configuration, logger: testLogger)
        let start = ContinuousClock.now
        do {
            try await client.connect()
            Issue.record("connect with a wrong password succeeded")
        } catch {
            // Milliseconds when the machine is idle, but over 5 s was seen while the parallel run starts its
            // brokers; the bound only catches a hang (a connect that waits for its timeout or forever).
            #expect(ContinuousClock.now - start < .seconds(15))
            guard case .refused(let code) = error.kind else {
                Issue.record("expected a refusal, got \(error)")
                return
            }
            #expect(code == .badUsernameOrPassword || code == .notAuthorized)
            #expect(error.description.contains("refused"))
        }
        #expect(!client.isConnected)
        // The operator fixes the broker side: the same credentials become valid. The client retries by itself.
        try TestBroker.run("/usr/bin/mosquitto_passwd", ["-b", broker.directory.appendingPathComponent("passwords").path,
                                                        broker.username, "wrong"])
        try await broker.restart()
        try await client.connect()
        #expect(client.isConnected)
        try await client.publish(to: "auth/ok", payload: [1], qos: .atLeastOnce)
        await client.disconnect()
    }

    @Test("MQTT 3.1.1 refusal is reported too")
    func refusedMQTT311() async throws {
        let broker = try await TestBroker.start(.init(passwordFile: true))
        var configuration = broker.clientConfiguration(version: .v311)
        configuration.credentials = nil
        let client = try MosquittoClient(configuration: configuration, logger: testLogger)
        await #expect(throws: MQTTError.self) { try await client.connect() }
        await client.disconnect()
    }

    @Test("TLS: the right CA connects, a client certificate where required, a wrong CA fails clearly")
    func tls() async throws {
        let broker = try await TestBroker.start(.init(tls: true))
        let client = try MosquittoClient(configuration: broker.clientConfiguration(), logger: testLogger)
        try await client.connect()
        try await client.publish(to: "tls/ok", payload: [1], qos: .atLeastOnce)
        await client.disconnect()

        var wrong = broker.clientConfiguration()
        wrong.tls?.caFile = broker.otherCAFile
        let untrusting = try MosquittoClient(configuration: wrong, logger: testLogger)
        do {
            try await untrusting.connect()
            Issue.record("TLS with the wrong CA connected")
        } catch {
            #expect(error.description.localizedCaseInsensitiveContains("tls"))
        }
        await untrusting.disconnect()

        let mutual = try await TestBroker.start(.init(tls: true, requireClientCertificate: true))
        let withCertificate = try MosquittoClient(configuration: mutual.clientConfiguration(), logger: testLogger)
        try await withCertificate.connect()
        await withCertificate.disconnect()
        var anonymous = mutual.clientConfiguration()
        anonymous.tls?.certFile = nil
        anonymous.tls?.keyFile = nil
        let withoutCertificate = try MosquittoClient(configuration: anonymous, logger: testLogger)
        await #expect(throws: MQTTError.self) { try await withoutCertificate.connect() }
        await withoutCertificate.disconnect()
    }

    @Test("The will is published when a client dies without DISCONNECT")
    func will() async throws {
        let broker = try await TestBroker.start()
        let watcher = try await connectedClient(broker, subscribe: ["status/#"])
        let received = MessageCollector(watcher.messages)
        // A real process that dies: mosquitto_sub with a will, killed with SIGKILL.
        let child = try ChildProcess(
            "/usr/bin/mosquitto_sub",
            ["-h", "127.0.0.1", "-p", "\(broker.port)", "-V", "mqttv5", "-t", "none", "-i", "doomed",
             "--will-topic", "status/doomed", "--will-payload", "offline", "--will-qos", "1"])
        try await Task.sleep(for: .milliseconds(300))
        child.kill9()
        let will = try #require(await received.wait(for: 1).first)
        #expect(will.topic == "status/doomed")
        #expect(will.payload == Array("offline".utf8))

        // Our own client's will, with MQTT 5 properties, when it goes away announcing itself as dead.
        var configuration = broker.clientConfiguration()
        configuration.will = .init(topic: "status/self", payload: Array("gone".utf8),
                                   properties: PublishProperties(contentType: "text/plain",
                                                                 userProperties: [UserProperty(name: "reason", value: "test")]))
        let dying = try MosquittoClient(configuration: configuration, logger: testLogger)
        try await dying.connect()
        await dying.disconnectPublishingWill()
        let own = try #require(await received.first { $0.topic == "status/self" })
        #expect(own.payload == Array("gone".utf8))
        #expect(own.properties.contentType == "text/plain")
        #expect(own.properties.userProperties == [UserProperty(name: "reason", value: "test")])
        await watcher.disconnect()
    }

    @Test("Shared subscriptions split the messages between the group's members")
    func sharedSubscription() async throws {
        let broker = try await TestBroker.start()
        let first = try await connectedClient(broker, subscribe: ["$share/workers/jobs/#"])
        let second = try await connectedClient(broker, subscribe: ["$share/workers/jobs/#"])
        let a = MessageCollector(first.messages)
        let b = MessageCollector(second.messages)
        let publisher = try await connectedClient(broker)
        for index in 0..<40 {
            try await publisher.publish(to: "jobs/\(index)", payload: [UInt8(index)], qos: .atLeastOnce)
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while a.count + b.count < 40, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(a.count + b.count == 40)
        #expect(a.count > 0 && b.count > 0)
        for client in [first, second, publisher] { await client.disconnect() }
    }

    @Test("Invalid publish topics are rejected before any network I/O", arguments: [
        "a/#/b", "+", "a/+", "a/#", "", String(repeating: "x", count: 65_536), "a\u{0}b",
    ])
    func invalidPublishTopics(topic: String) async throws {
        // No broker at all: a rejection must not need one.
        let client = try MosquittoClient(configuration: MQTTConfiguration(port: 1), logger: testLogger)
        await #expect(throws: MQTTError.self) {
            try await client.publish(to: topic, payload: [], qos: .atMostOnce)
        }
    }

    @Test("Invalid filters are rejected before any network I/O", arguments: [
        "a/#/b", "a/+b", "", "$share//a", "$share/g+/a", String(repeating: "x", count: 65_536), "a\u{0}b",
    ])
    func invalidFilters(filter: String) async throws {
        let client = try MosquittoClient(configuration: MQTTConfiguration(port: 1), logger: testLogger)
        await #expect(throws: MQTTError.self) { try await client.subscribe([Subscription(filter: filter)]) }
        await #expect(throws: MQTTError.self) { try await client.unsubscribe([filter]) }
    }
}

/// Drains a connection event stream for assertions.
final class MessageCollectorOfEvents: Sendable {
    init(_ events: AsyncStream<ConnectionEvent>) {
        let box = EventBox()
        self.box = box
        Task {
            for await event in events { box.events.withLock { $0.append(event) } }
        }
    }

    private let box: EventBox

    var events: [ConnectionEvent] { box.events.withLock { $0 } }
}

private final class EventBox: Sendable {
    let events = Mutex<[ConnectionEvent]>([])
}
