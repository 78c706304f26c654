import Mosquitto
import MQTT

/// The Ditto side of the data plane: how Ditto Protocol messages reach Ditto and how Ditto's reach the bridge.
///
/// The pipelines talk to Ditto only through this protocol, so that a second binding (Ditto's WebSocket) plugs in
/// without touching them. The MQTT connection to Ditto's broker, ``MQTTDittoTransport``, is the first.
///
/// What an implementation guarantees:
/// - **Confinement:** it is used only on the event loop's thread and calls its handlers there, inside its own
///   reads, so what a handler publishes to the device side leaves in the same turn. Nothing per message allocates
///   a closure or boxes a value: handlers are installed once.
/// - **Subscription:** once connected it delivers what Ditto sends for this bridge (requests, responses, acks),
///   one Ditto Protocol message per ``DittoDelivery``, in the order Ditto sent them, and restores that after every
///   reconnect.
/// - **Ordering:** messages go to Ditto in the order of ``publish(_:to:properties:token:)`` calls.
/// - **Completion:** every `publish` that returns nil ends in exactly one `publishCompleted` with its token.
///   ``DittoSendOutcome/taken`` means Ditto's side has the message (MQTT: the broker's PUBACK or PUBCOMP, QoS 0
///   written to the socket; another binding says what evidence it uses), so the spool releases it and never sends
///   it again. A `publish` that returns an outcome sent nothing and completes nothing.
/// - **Disconnect:** messages in flight when the connection drops are either sent again by the transport after it
///   reconnects (and completed then) or completed with ``DittoSendOutcome/unconfirmed``; a closed transport
///   completes everything still in flight with `unconfirmed`. The spool keeps what is unconfirmed and sends it
///   again (at least once: Ditto may see a message twice, never lose one the spool took).
/// - **Flow control:** while ``canPublishNow`` is false the pump waits; `capacityAvailable` runs when it turns true.
///
/// Connecting, subscribing and readiness run off the loop, in the service: for MQTT an ``MQTTSideService`` with
/// ``BridgeService/dittoSubscriptions(_:)``; another binding brings its own service for those.
protocol DittoTransport: AnyObject {
    /// Connected to Ditto's side now.
    var isConnected: Bool { get }
    /// Connected and below its in-flight bound: a `publish` now goes out at once.
    var canPublishNow: Bool { get }
    /// Published and not yet completed.
    var publishesInFlight: Int { get }

    /// Installs the pipelines' handlers (once; a transport that replaces its connection keeps them).
    func setHandlers(message: @escaping (DittoDelivery) -> Void,
                     publishCompleted: @escaping (UplinkToken, DittoSendOutcome) -> Void,
                     capacityAvailable: @escaping () -> Void)

    /// Sends one Ditto Protocol message. `address` is where the mapping addressed it on Ditto's side (for MQTT the
    /// topic; a binding without addresses ignores it), `properties` the MQTT 5 properties the mapping gave it.
    /// Returns nil when it went out (its completion follows), or, when nothing was sent, how it ended at once
    /// (``DittoSendOutcome/unconfirmed`` when the transport is closed).
    func publish(_ payload: [UInt8], to address: String, properties: PublishProperties,
                 token: UplinkToken) -> DittoSendOutcome?
}

/// One Ditto Protocol message from Ditto.
struct DittoDelivery {
    /// The message, as Ditto Protocol JSON.
    var payload: [UInt8]
    /// Where the answer goes when the binding names it outside the message (MQTT 5's response topic); nil: the
    /// message's `reply-to` header or its thing's default address.
    var replyAddress: String?
    /// Where it came from, for the log (for MQTT the topic).
    var source: String
}

/// How a publish to Ditto's side ended.
enum DittoSendOutcome {
    /// Ditto's side has it.
    case taken
    /// The connection closed before Ditto's side confirmed it: it may or may not have arrived.
    case unconfirmed
    /// Ditto's side refused it, or it could not be sent.
    case refused(any Error)
}

extension DittoSendOutcome: CustomStringConvertible {
    var description: String {
        switch self {
        case .taken: "taken"
        case .unconfirmed: "closed before Ditto's side confirmed it"
        case .refused(let error): "\(error)"
        }
    }
}

/// What a publish to Ditto's side carries to its completion.
enum UplinkToken: Hashable {
    /// An answer, error or acknowledgement for Ditto: nothing to do on completion but count a failure.
    case answer
    /// A spool record, by its sequence number (from 1).
    case spooled(UInt64)
    /// A record of the memory queue (no spool), by its sequence number.
    case memory(UInt64)
}
