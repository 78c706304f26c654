import BridgeConfig
import BridgeRuntime
import DittoProtocol
import Foundation
import Logging
import MQTT
import Mosquitto
import MosquittoTestSupport
import Testing

let harnessLogger: Logger = {
    var logger = Logger(label: "bridge-test")
    logger.logLevel = .warning
    return logger
}()

/// A real mosquitto, a running bridge on it, and an MQTT 5 client in Ditto's place that receives everything
/// the bridge publishes on the Ditto side (`ditto/in/#`).
final class BridgeHarness: Sendable {
    let broker: TestBroker
    /// The device broker when the test asked for one of its own (`DEVICE_PORT` in the YAML).
    let deviceBroker: TestBroker?
    let configuration: BridgeConfiguration
    let bridge: BridgeService
    let ditto: MosquittoClient
    /// Everything the bridge published to Ditto.
    let fromBridge: MessageCollector
    private let runTask: Task<Void, any Error>

    /// `yaml` may use `PORT` for the broker's port; both connections default to that broker. With
    /// `separateDeviceBroker`, `DEVICE_PORT` is a second broker's.
    init(yaml: String, maximumPendingRequests: Int = 1_000, separateDeviceBroker: Bool = false,
         metrics: BridgeMetrics = BridgeMetrics(), keptTopicLimit: Int = BridgeService.defaultKeptTopicLimit,
         logger: Logger = harnessLogger) async throws {
        broker = try await TestBroker.start()
        deviceBroker = separateDeviceBroker ? try await TestBroker.start() : nil
        var text = yaml
        if let deviceBroker { text = text.replacingOccurrences(of: "DEVICE_PORT", with: "\(deviceBroker.port)") }
        text = text.replacingOccurrences(of: "PORT", with: "\(broker.port)")
        configuration = try BridgeConfiguration.parse(yaml: text, fileName: "test.yaml", environment: [:])
        bridge = try BridgeService(configuration: configuration, logger: logger, metrics: metrics,
                                   maximumPendingRequests: maximumPendingRequests, keptTopicLimit: keptTopicLimit)
        let bridge = self.bridge
        runTask = Task { try await bridge.run() }
        ditto = try MosquittoClient(configuration: broker.clientConfiguration(clientID: "ditto"), logger: harnessLogger)
        try await ditto.connect()
        try await ditto.subscribe([Subscription(filter: "ditto/in/#", qos: .atLeastOnce)])
        fromBridge = MessageCollector(ditto.messages)
        await bridge.waitUntilReady()
    }

    /// A device client on the same broker. With `collect` its messages go to `inbox`; without, the caller
    /// consumes `client.messages` itself (a stream has one consumer).
    func device(_ id: String, version: MQTTVersion = .v5, subscribe filters: [String] = [],
                will: MQTTMessage? = nil, collect: Bool = true) async throws -> (client: MosquittoClient, inbox: MessageCollector) {
        var configuration = (deviceBroker ?? broker).clientConfiguration(version: version, clientID: "device-\(id)")
        configuration.will = will
        let client = try MosquittoClient(configuration: configuration, logger: harnessLogger)
        try await client.connect()
        let inbox = collect ? MessageCollector(client.messages) : MessageCollector()
        if !filters.isEmpty {
            try await client.subscribe(filters.map { Subscription(filter: $0, qos: .atLeastOnce) })
        }
        return (client, inbox)
    }

    /// Publishes a Ditto Protocol message as Ditto's MQTT-5 connection target does: to `ditto/out/<thingId>`,
    /// with correlation data and the response topic `ditto/in/<thingId>` (the connection's reply target).
    func sendFromDitto(_ json: String, thingID: String, correlationID: String? = nil) async throws {
        var properties = PublishProperties(contentType: "application/vnd.eclipse.ditto+json",
                                           responseTopic: "ditto/in/\(thingID)")
        if let correlationID { properties.correlationData = Array(correlationID.utf8) }
        try await ditto.publish(to: "ditto/out/\(thingID)", payload: Array(json.utf8), qos: .atLeastOnce,
                                properties: properties)
    }

    /// The envelopes the bridge published to Ditto, decoded (every one must be valid Ditto Protocol).
    func envelopes(count: Int, timeout: Duration = .seconds(10)) async throws -> [Envelope] {
        let messages = await fromBridge.wait(for: count, timeout: timeout)
        return try messages.map { try Envelope.decode($0.payload) }
    }

    /// The first envelope from the bridge with this correlation id.
    func envelope(correlationID: String, where predicate: @escaping (Envelope) -> Bool = { _ in true },
                  timeout: Duration = .seconds(10)) async -> Envelope? {
        let message = await fromBridge.first(timeout: timeout) { message in
            guard let envelope = try? Envelope.decode(message.payload) else { return false }
            return envelope.headers.correlationID == correlationID && predicate(envelope)
        }
        return message.flatMap { try? Envelope.decode($0.payload) }
    }

    func stop() async {
        bridge.stop()
        _ = try? await runTask.value
        await ditto.disconnect()
        broker.stop()
        deviceBroker?.stop()
    }
}

/// The base config of the runtime tests: one broker for both sides.
/// Live messages to `devices/{deviceId}/inbox/{subject}`, answered over MQTT 5 on `devices/{deviceId}/reply`.
let inboxDownlink = """

    downlink:
      - name: inbox
        match: { messages: { subject: "*" } }
        thing-id: "{namespace}:{deviceId}"
        topic: "devices/{deviceId}/inbox/{subject}"
        reply: { mode: mqtt5, topic: "devices/{deviceId}/reply", timeout: 20s }
    """

let baseConnections = """
    connections:
      device: { host: 127.0.0.1, port: PORT, client-id: bridge-devices, reconnect: { initial: 100ms, maximum: 1s } }
      ditto: { host: 127.0.0.1, port: PORT, client-id: bridge-ditto, reconnect: { initial: 100ms, maximum: 1s } }
    defaults:
      namespace: org.example
    """
