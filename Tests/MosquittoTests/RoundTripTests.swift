import Logging
import MQTT
import Mosquitto
import MosquittoTestSupport
import Testing

let testLogger = Logger(label: "mosquitto-tests")

/// Connects a client to `broker` and subscribes it to `filters`.
func connectedClient(_ broker: TestBroker, version: MQTTVersion = .v5, subscribe filters: [String] = [],
                     configure: (inout MQTTConfiguration) -> Void = { _ in }) async throws -> MosquittoClient {
    var configuration = broker.clientConfiguration(version: version)
    configure(&configuration)
    let client = try MosquittoClient(configuration: configuration, logger: testLogger)
    try await client.connect()
    if !filters.isEmpty {
        let codes = try await client.subscribe(filters.map { Subscription(filter: $0, qos: .atLeastOnce) })
        #expect(codes.allSatisfy { !$0.isFailure })
    }
    return client
}

@Suite("Publish and receive through a real broker")
struct RoundTripTests {
    @Test("Every MQTT 5 property survives publish -> broker -> subscriber")
    func propertiesRoundTrip() async throws {
        let broker = try await TestBroker.start()
        let subscriber = try await connectedClient(broker, subscribe: ["props/#"])
        let received = MessageCollector(subscriber.messages)
        let publisher = try await connectedClient(broker)
        let properties = PublishProperties(
            payloadFormatIndicator: 1, messageExpiryInterval: 120, contentType: "application/json; charset=utf-8",
            responseTopic: "props/reply/é", correlationData: [0x00, 0xFF, 0x10, 0x80, 0x41],
            userProperties: [
                UserProperty(name: "x-dup", value: "first"), UserProperty(name: "x-dup", value: "second"),
                UserProperty(name: "grüße", value: "温度 21.5 °C ✓"), UserProperty(name: "empty", value: ""),
            ])
        let ack = try await publisher.publish(to: "props/a", payload: Array("{\"v\":1}".utf8), qos: .atLeastOnce,
                                              properties: properties)
        #expect(!ack.reasonCode.isFailure)
        let messages = await received.wait(for: 1)
        let message = try #require(messages.first)
        #expect(message.topic == "props/a")
        #expect(message.payload == Array("{\"v\":1}".utf8))
        #expect(message.qos == .atLeastOnce)
        #expect(message.properties.payloadFormatIndicator == 1)
        #expect(message.properties.contentType == properties.contentType)
        #expect(message.properties.responseTopic == properties.responseTopic)
        #expect(message.properties.correlationData == properties.correlationData)
        #expect(message.properties.userProperties == properties.userProperties)
        let expiry = try #require(message.properties.messageExpiryInterval)
        #expect(expiry <= 120 && expiry >= 110)
        await publisher.disconnect()
        await subscriber.disconnect()
    }

    @Test("MQTT 3.1.1 clients publish and receive; properties are not sent")
    func mqtt311() async throws {
        let broker = try await TestBroker.start()
        let subscriber = try await connectedClient(broker, version: .v311, subscribe: ["v3/+"])
        let received = MessageCollector(subscriber.messages)
        let publisher = try await connectedClient(broker, version: .v311)
        try await publisher.publish(to: "v3/x", payload: [1, 2, 3], qos: .exactlyOnce,
                                    properties: PublishProperties(contentType: "ignored"))
        let message = try #require(await received.wait(for: 1).first)
        #expect(message.payload == [1, 2, 3])
        #expect(message.properties == PublishProperties())
        await publisher.disconnect()
        await subscriber.disconnect()
    }

    @Test("10,000 QoS 1 messages from one publisher arrive complete and in order")
    func tenThousandInOrder() async throws {
        let broker = try await TestBroker.start()
        let subscriber = try await connectedClient(broker, subscribe: ["bulk/#"])
        let received = MessageCollector(subscriber.messages)
        let publisher = try await connectedClient(broker)
        let count = 10_000
        try await withThrowingTaskGroup(of: Void.self) { group in
            // Several publishes in flight at once, each task sending its own slice in order.
            group.addTask {
                for index in 0..<count {
                    try await publisher.publish(to: "bulk/seq", payload: Array("\(index)".utf8), qos: .atLeastOnce)
                }
            }
            try await group.waitForAll()
        }
        let messages = await received.wait(for: count, timeout: .seconds(60))
        #expect(messages.count == count)
        let numbers = messages.map { Int(String(decoding: $0.payload, as: UTF8.self)) ?? -1 }
        #expect(numbers == Array(0..<count))
        #expect(subscriber.droppedMessages == 0)
        await publisher.disconnect()
        await subscriber.disconnect()
    }

    @Test("Publishes issued before CONNACK wait for it and arrive exactly once")
    func noDuplicatesBeforeConnack() async throws {
        let broker = try await TestBroker.start()
        let subscriber = try await connectedClient(broker, subscribe: ["early/#"])
        let received = MessageCollector(subscriber.messages)
        let publisher = try MosquittoClient(configuration: broker.clientConfiguration(), logger: testLogger)
        let count = 500
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<count {
                group.addTask { try await publisher.publish(to: "early/x", payload: Array("\(index)".utf8), qos: .atLeastOnce) }
            }
            // Connect only after every publish is already waiting.
            try await Task.sleep(for: .milliseconds(100))
            try await publisher.connect()
            try await group.waitForAll()
        }
        let messages = await received.wait(for: count)
        try await Task.sleep(for: .milliseconds(300))
        let payloads = received.messages.map { String(decoding: $0.payload, as: UTF8.self) }
        #expect(messages.count >= count)
        #expect(payloads.count == count)
        #expect(Set(payloads).count == count)
        await publisher.disconnect()
        await subscriber.disconnect()
    }

    @Test("At most maxInflightPublishes wait for acknowledgements; the rest wait in publish (back pressure)")
    func inflightBound() async throws {
        let broker = try await TestBroker.start()
        let client = try await connectedClient(broker) { $0.maxInflightPublishes = 4 }
        broker.pause()
        let completed = MessageCollector()
        let publishes = Task {
            await withTaskGroup(of: Void.self) { group in
                for index in 0..<10 {
                    group.addTask {
                        if (try? await client.publish(to: "bound/x", payload: [UInt8(index)], qos: .atLeastOnce)) != nil {
                            completed.append(MQTTMessage(topic: "done", payload: [UInt8(index)], qos: .atLeastOnce, retain: false))
                        }
                    }
                }
            }
        }
        // Wait for the publishes to start (slow on a loaded machine), then check none gets past the bound.
        let deadline = ContinuousClock.now + .seconds(10)
        while client.publishesInFlight < 4, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        try await Task.sleep(for: .milliseconds(300))
        #expect(client.publishesInFlight == 4)
        #expect(completed.count == 0)
        broker.resume()
        await publishes.value
        #expect(completed.count == 10)
        #expect(client.publishesInFlight == 0)
        await client.disconnect()
    }

    @Test("Subscription options: noLocal keeps a client's own messages away; unsubscribe stops delivery")
    func subscriptionOptions() async throws {
        let broker = try await TestBroker.start()
        let client = try MosquittoClient(configuration: broker.clientConfiguration(), logger: testLogger)
        try await client.connect()
        let codes = try await client.subscribe([Subscription(filter: "opts/local", qos: .exactlyOnce, noLocal: true),
                                                Subscription(filter: "opts/echo", qos: .atLeastOnce)])
        #expect(codes.map(\.rawValue) == [2, 1])
        let received = MessageCollector(client.messages)
        try await client.publish(to: "opts/local", payload: [1], qos: .atLeastOnce)
        try await client.publish(to: "opts/echo", payload: [2], qos: .atLeastOnce)
        _ = await received.wait(for: 1)
        try await Task.sleep(for: .milliseconds(200))
        #expect(received.messages.map(\.topic) == ["opts/echo"])
        try await client.unsubscribe(["opts/echo"])
        try await client.publish(to: "opts/echo", payload: [3], qos: .atLeastOnce)
        try await Task.sleep(for: .milliseconds(200))
        #expect(received.count == 1)
        await client.disconnect()
    }
}
