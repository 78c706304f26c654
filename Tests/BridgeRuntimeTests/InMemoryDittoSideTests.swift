import BridgeConfig
import DittoProtocol
import Foundation
import MQTT
import Mosquitto
import MosquittoTestSupport
import Synchronization
import Testing

@testable import BridgeRuntime

/// A Ditto side without MQTT: the test says when it is connected and subscribed, and plays Ditto through its
/// transport.
final class InMemoryDittoSide: DittoSide {
    private let readiness: Readiness
    private let state = Mutex((connected: false, subscribed: false))
    private let closing = AsyncStream<Void>.makeStream()

    init(readiness: Readiness) {
        self.readiness = readiness
    }

    let endpoint = "in memory"

    var isConnected: Bool { state.withLock { $0.connected } }

    func makeTransport() -> sending any DittoTransport {
        InMemoryDittoTransport(side: self)
    }

    func run() async {
        for await _ in closing.stream {}
    }

    func reload(to new: BridgeConfiguration, from old: BridgeConfiguration,
                handover: DittoConnectionHandover) async -> [String] {
        []
    }

    func close() async {
        report(connected: false, subscribed: false)
        closing.continuation.finish()
    }

    /// Ready only while connected and subscribed, as ``DittoSide`` asks.
    func report(connected: Bool, subscribed: Bool) {
        state.withLock { $0 = (connected, subscribed) }
        if connected, subscribed {
            readiness.setSubscribed(Readiness.dittoSide)
        } else {
            readiness.setConnected(Readiness.dittoSide, false)
        }
    }
}

/// What the bridge published through ``InMemoryDittoTransport``.
struct InMemoryPublish: Sendable {
    var payload: [UInt8]
    var address: String
    var token: UplinkToken

    var envelope: Envelope? { try? Envelope.decode(payload) }
}

/// Keeps every publish in flight until the test completes it.
final class InMemoryDittoTransport: DittoTransport {
    private let side: InMemoryDittoSide
    private var handlers: (message: (DittoDelivery) -> Void, publishCompleted: (UplinkToken, DittoSendOutcome) -> Void,
                           capacityAvailable: () -> Void)?
    private(set) var published: [InMemoryPublish] = []
    private var inFlight: Set<UplinkToken> = []

    init(side: InMemoryDittoSide) {
        self.side = side
    }

    var isConnected: Bool { side.isConnected }
    var canPublishNow: Bool { isConnected && inFlight.count < 16 }
    var publishesInFlight: Int { inFlight.count }

    func setHandlers(message: @escaping (DittoDelivery) -> Void,
                     publishCompleted: @escaping (UplinkToken, DittoSendOutcome) -> Void,
                     capacityAvailable: @escaping () -> Void) {
        handlers = (message, publishCompleted, capacityAvailable)
    }

    func publish(_ payload: [UInt8], to address: String, properties: PublishProperties,
                 token: UplinkToken) -> DittoSendOutcome? {
        published.append(InMemoryPublish(payload: payload, address: address, token: token))
        inFlight.insert(token)
        return nil
    }

    func apply(_ configuration: BridgeConfiguration) {}

    func connectionReplaced() {}

    /// Ditto sends a message.
    func deliver(_ delivery: DittoDelivery) {
        handlers?.message(delivery)
    }

    /// Ditto's side took what was published with `token`.
    func complete(_ token: UplinkToken) {
        guard inFlight.remove(token) != nil else { return }
        handlers?.publishCompleted(token, .taken)
        handlers?.capacityAvailable()
    }

    /// The connection opened: the uplink may send.
    func opened() {
        handlers?.capacityAvailable()
    }
}

@Suite("The pipelines over a Ditto side that is not MQTT", .serialized)
struct InMemoryDittoSideTests {
    @Test("An uplink event is released by its completion, a live message is answered by the device, readiness follows the side")
    func pipelinesOverInMemorySide() async throws {
        let broker = try await TestBroker.start()
        let yaml = uplinkConfig + inboxDownlink
        let configuration = try BridgeConfiguration.parse(yaml: yaml.replacingOccurrences(of: "PORT", with: "\(broker.port)"),
                                                          fileName: "test.yaml", environment: [:])
        let bridge = try BridgeService(configuration: configuration, logger: harnessLogger, metrics: BridgeMetrics(),
                                       maximumPendingRequests: 1_000, drainTimeout: .seconds(10), keptTopicLimit: 16_384,
                                       makeDittoSide: { InMemoryDittoSide(readiness: $0.readiness) })
        let side = try #require(bridge.ditto as? InMemoryDittoSide)
        let run = Task { try await bridge.run() }
        @Sendable func onTransport<T: Sendable>(_ body: @escaping @Sendable (InMemoryDittoTransport) -> T) async -> T {
            await bridge.loop.submit {
                // The data plane holds the transport the side made.
                body(bridge.plane.value.dittoTransport as! InMemoryDittoTransport)
            }
        }

        // Readiness: the device side connects to mosquitto; the Ditto side is ready once connected and subscribed.
        #expect(await eventually(timeout: .seconds(10)) { bridge.notReadySides == [Readiness.dittoSide] })
        side.report(connected: true, subscribed: false)
        try await Task.sleep(for: .milliseconds(100))
        #expect(!bridge.isReady)
        side.report(connected: true, subscribed: true)
        await onTransport { $0.opened() }
        #expect(await eventually(timeout: .seconds(5)) { bridge.isReady })

        let device = try MosquittoClient(configuration: broker.clientConfiguration(clientID: "device-lamp"), logger: harnessLogger)
        try await device.connect()
        try await device.subscribe([Subscription(filter: "devices/lamp/inbox/#", qos: .atLeastOnce)])

        // Uplink: the event goes out through the transport and waits until its completion releases it.
        try await device.publish(to: "devices/lamp/telemetry/temperature", payload: Array(#"{"value": 21.5}"#.utf8))
        #expect(await eventually(timeout: .seconds(10)) { await onTransport { $0.published.count } == 1 })
        let event = try #require(await onTransport { $0.published.first })
        #expect(event.envelope?.topic.description == "org.example/lamp/things/live/events/modified")
        #expect(event.envelope?.path == "/features/temperature/properties/value")
        #expect(event.token != .answer)
        #expect(await bridge.loop.submit { bridge.plane.value.uplinkWaiting } == 1)
        await onTransport { $0.complete(event.token) }
        #expect(await bridge.loop.submit { bridge.plane.value.uplinkWaiting } == 0)
        #expect(await onTransport { $0.publishesInFlight } == 0)

        // Downlink: a live message from Ditto reaches the device; its answer goes back through the transport.
        let answering = Task { () async throws -> MQTTMessage? in
            for await request in device.messages {
                guard let responseTopic = request.properties.responseTopic else { continue }
                var properties = PublishProperties(correlationData: request.properties.correlationData)
                properties.userProperties.append(UserProperty(name: "status", value: "200"))
                properties.contentType = "application/json"
                try await device.publish(to: responseTopic, payload: Array(#"{"pong":true}"#.utf8), properties: properties)
                return request
            }
            return nil
        }
        let request = try liveMessage("org.example:lamp", subject: "ping", correlationID: "c-1")
        await onTransport {
            $0.deliver(DittoDelivery(payload: Array(request.utf8), replyAddress: "answers/lamp", source: "in memory"))
        }
        let received = try #require(await answering.value)
        #expect(received.topic == "devices/lamp/inbox/ping")
        #expect(await eventually(timeout: .seconds(10)) { await onTransport { $0.published.count } == 2 })
        let answer = try #require(await onTransport { $0.published.last })
        #expect(answer.token == .answer)
        #expect(answer.address == "answers/lamp")
        #expect(answer.envelope?.headers.correlationID == "c-1")
        #expect(answer.envelope?.status == 200)
        #expect(answer.envelope?.value == .object(["pong": .bool(true)]))
        await onTransport { $0.complete(answer.token) }

        // Readiness follows the side: not ready while it is down, ready again once connected and subscribed.
        side.report(connected: false, subscribed: false)
        #expect(!bridge.isReady)
        #expect(bridge.notReadySides == [Readiness.dittoSide])
        side.report(connected: true, subscribed: true)
        #expect(bridge.isReady)

        await device.disconnect()
        bridge.stop()
        try await run.value
        broker.stop()
    }
}
