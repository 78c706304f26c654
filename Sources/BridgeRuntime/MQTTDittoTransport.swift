import Mosquitto
import MQTT

/// Ditto's side over an MQTT connection to the broker Ditto's MQTT 5 connection uses (``DittoTransport``).
///
/// Connecting and subscribing are the client's (``MQTTSideService``); this is the loop-thread face the pipelines
/// use. A reload with new connection settings hands it a new client (``replace(client:)``).
final class MQTTDittoTransport: DittoTransport {
    private(set) var client: MosquittoClient
    /// The configured QoS of what goes to Ditto.
    var qos: QoS
    private var handlers: Handlers?

    private struct Handlers {
        var message: (DittoDelivery) -> Void
        var publishCompleted: (UplinkToken, DittoSendOutcome) -> Void
        var capacityAvailable: () -> Void
    }

    init(client: MosquittoClient, qos: QoS) {
        self.client = client
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

    /// Moves to a new client; the caller closed the old one, which completed what it had in flight.
    func replace(client: MosquittoClient) {
        self.client = client
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
