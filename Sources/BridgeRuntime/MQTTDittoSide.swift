import BridgeConfig
import Mosquitto
import MQTT

/// Ditto's side over an MQTT connection to the broker Ditto's MQTT 5 connection uses: connecting, subscribing,
/// readiness and reloads (``DittoSide``), through an ``MQTTSide``.
final class MQTTDittoSide: DittoSide {
    private let side: MQTTSide
    /// The QoS of what goes to Ditto, for the transport (a reload hands it the new one).
    private let qos: QoS
    let endpoint: String

    /// `broker`: the configuration's ``DittoConnection/mqtt(_:)``.
    init(_ environment: DittoSideEnvironment, broker: BrokerConnection) throws(MQTTError) {
        let configuration = environment.configuration
        side = try MQTTSide(name: Readiness.dittoSide, connection: broker,
                            subscriptions: Self.subscriptions(configuration), loop: environment.loop,
                            readiness: environment.readiness, metrics: environment.metrics, logger: environment.logger)
        qos = configuration.ditto.qos
        endpoint = "\(broker.host):\(broker.port)"
    }

    func makeTransport() -> sending any DittoTransport {
        MQTTDittoTransport(side: side, qos: qos)
    }

    func run() async {
        await side.run()
    }

    func reload(to new: BridgeConfiguration, from old: BridgeConfiguration,
                handover: DittoConnectionHandover) async -> [String] {
        let subscriptions = Self.subscriptions(new)
        guard new.connections.ditto != old.connections.ditto else {
            await side.resubscribe(from: Self.subscriptions(old), to: subscriptions)
            return []
        }
        // The service makes a new side when the binding changes; this side only ever sees its own.
        if let broker = new.connections.ditto.broker, let client = side.makeClient(for: broker) {
            await handover.drain()
            await side.replace(with: client, subscriptions: subscriptions, takeOver: handover.takeOver)
        }
        return ["Ditto-side connection changed: reconnected"]
    }

    func close() async {
        await side.close()
    }

    /// The Ditto connection's target (the loader checks that it covers the reply topic).
    static func subscriptions(_ configuration: BridgeConfiguration) -> [Subscription] {
        let filter = configuration.ditto.subscribeFilter.filter
        let qos = configuration.ditto.qos
        if let group = configuration.connections.ditto.broker?.sharedSubscriptionGroup {
            return [Subscription(filter: MQTTTopic.sharedFilter(group: group, filter: filter), qos: qos)]
        }
        return [Subscription(filter: filter, qos: qos, noLocal: true)]
    }
}

/// The loop-thread face of ``MQTTDittoSide`` (``DittoTransport``): the client in use, the QoS of what goes to
/// Ditto, and the pipelines' handlers on the client.
final class MQTTDittoTransport: DittoTransport {
    private let side: MQTTSide
    private(set) var client: MosquittoClient
    /// The configured QoS of what goes to Ditto.
    private var qos: QoS
    private var handlers: Handlers?

    private struct Handlers {
        var message: (DittoDelivery) -> Void
        var publishCompleted: (UplinkToken, DittoSendOutcome) -> Void
        var capacityAvailable: () -> Void
    }

    init(side: MQTTSide, qos: QoS) {
        self.side = side
        client = side.client
        self.qos = qos
    }

    var isConnected: Bool { client.isConnected }
    var canPublishNow: Bool { client.onLoop.canPublishNow }
    var publishesInFlight: Int { client.onLoop.inflightCount }

    func setHandlers(message: @escaping (DittoDelivery) -> Void,
                     publishCompleted: @escaping (UplinkToken, DittoSendOutcome) -> Void,
                     capacityAvailable: @escaping () -> Void) {
        handlers = Handlers(message: message, publishCompleted: publishCompleted, capacityAvailable: capacityAvailable)
        install()
    }

    func apply(_ configuration: BridgeConfiguration) {
        qos = configuration.ditto.qos
    }

    func connectionReplaced() {
        // The side put the new client in place before the data plane took over.
        client = side.client
        install()
    }

    func publish(_ payload: [UInt8], to address: String, properties: PublishProperties,
                 token: UplinkToken) -> DittoSendOutcome? {
        client.onLoop.publishNow(to: address, payload: payload, qos: qos, properties: properties, token: token.mqttToken)
            .map { Self.outcome(.failure($0)) }
    }

    private static func outcome(_ result: Result<PublishAck, MQTTError>) -> DittoSendOutcome {
        switch result {
        case .success: .taken
        // libmosquitto keeps QoS 1 and 2 messages across a reconnect and fails them only when the client closes.
        case .failure(let error) where error.kind == .shutdown: .unconfirmed
        case .failure(let error): .refused(error)
        }
    }

    private func install() {
        guard let handlers else { return }
        let message = handlers.message
        let publishCompleted = handlers.publishCompleted
        client.onLoop.setHandlers(
            message: { mqtt in
                message(DittoDelivery(payload: mqtt.payload,
                                      replyAddress: mqtt.properties.responseTopic.flatMap { $0.isEmpty ? nil : $0 },
                                      source: mqtt.topic))
            },
            publishCompleted: { token, result in publishCompleted(UplinkToken(mqttToken: token), Self.outcome(result)) },
            capacityAvailable: handlers.capacityAvailable)
    }
}

extension UplinkToken {
    /// Memory queue records carry this bit in the client's `UInt64` token; answers are 0, spool records their
    /// sequence number (from 1).
    private static let memoryBit: UInt64 = 1 << 63

    /// The token as the MQTT client carries it.
    var mqttToken: UInt64 {
        switch self {
        case .answer: 0
        case .spooled(let sequence): sequence
        case .memory(let sequence): Self.memoryBit | sequence
        }
    }

    init(mqttToken token: UInt64) {
        if token == 0 {
            self = .answer
        } else if token & Self.memoryBit != 0 {
            self = .memory(token & ~Self.memoryBit)
        } else {
            self = .spooled(token)
        }
    }
}
