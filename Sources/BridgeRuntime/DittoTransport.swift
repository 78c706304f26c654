import BridgeConfig
import Logging
import Mosquitto
import MQTT

/// The Ditto side of the data plane, on the event loop: how Ditto Protocol messages reach Ditto and how Ditto's reach
/// the bridge.
///
/// The pipelines talk to Ditto only through this protocol and the service only through ``DittoSide``, so that a
/// second binding (Ditto's WebSocket) plugs in without touching them. The MQTT connection to the broker Ditto's
/// MQTT 5 connection uses, ``MQTTDittoTransport`` with ``MQTTDittoSide``, is the first.
///
/// What an implementation guarantees:
/// - **Confinement:** it is used only on the event loop's thread and calls its handlers there, inside its own
///   reads, so what a handler publishes to the device side leaves in the same turn. Nothing per message allocates
///   a closure or boxes a value: handlers are installed once.
/// - **Subscription:** it delivers what Ditto sends for this bridge (requests, responses, acknowledgements), one
///   Ditto Protocol message per ``DittoDelivery``, in the order Ditto sent them; its ``DittoSide`` puts the
///   subscription in place again after every reconnect and reports ready only once it is.
/// - **Ordering:** messages go to Ditto in the order of ``publish(_:to:properties:token:)`` calls.
/// - **Completion:** every `publish` that returns nil ends in exactly one `publishCompleted` with its token, on the
///   loop, possibly before `publish` returns (MQTT QoS 0 is written at once). ``DittoSendOutcome/taken`` means Ditto's side has the message (MQTT:
///   the broker's PUBACK or PUBCOMP, QoS 0 written to the socket; another binding states the evidence it uses, such
///   as a pong to a ping sent after the message on an ordered socket), so the spool releases it and never sends it
///   again. A `publish` that returns an outcome sent nothing and completes nothing.
/// - **Disconnect:** messages in flight when the connection drops are either sent again by the transport after it
///   reconnects (and completed then) or completed with ``DittoSendOutcome/unconfirmed``; a closed or replaced
///   connection completes everything still in flight on it with `unconfirmed`. The spool keeps what is unconfirmed
///   and sends it again (at least once: Ditto may see a message twice, never lose one the spool took).
/// - **Flow control:** while ``canPublishNow`` is false the pump waits; `capacityAvailable` runs when it turns true,
///   also when a (re)connection opens the window.
protocol DittoTransport: AnyObject {
    /// Connected to Ditto's side now.
    var isConnected: Bool { get }
    /// Connected and below its in-flight bound: a `publish` now goes out at once.
    var canPublishNow: Bool { get }
    /// Published and not yet completed.
    var publishesInFlight: Int { get }

    /// Installs the pipelines' handlers (once; a transport whose connection is replaced keeps them).
    func setHandlers(message: @escaping (DittoDelivery) -> Void,
                     publishCompleted: @escaping (UplinkToken, DittoSendOutcome) -> Void,
                     capacityAvailable: @escaping () -> Void)

    /// Sends one Ditto Protocol message. `address` is where the mapping addressed it on Ditto's side (for MQTT the
    /// topic; a binding without addresses ignores it), `properties` the MQTT 5 properties the mapping gave it.
    /// Returns nil when it went out (its completion follows), or, when nothing was sent, how it ended at once
    /// (``DittoSendOutcome/unconfirmed`` when the transport is closed).
    func publish(_ payload: [UInt8], to address: String, properties: PublishProperties,
                 token: UplinkToken) -> DittoSendOutcome?

    /// A reloaded mapping takes effect for the next message (for MQTT: the QoS of what goes to Ditto).
    func apply(_ configuration: BridgeConfiguration)

    /// Its ``DittoSide`` moved to a new connection (a reload changed its settings): the old one closed and completed
    /// what it had in flight; what follows goes out on the new one.
    func connectionReplaced()
}

/// The Ditto side's connection over its life, off the loop: connects, subscribes to what Ditto sends for this
/// bridge, restores that after every reconnect, and reports to ``Readiness`` (under ``Readiness/dittoSide``) that
/// it is ready only while it is connected and subscribed. A reload updates what it subscribes to or moves it to a
/// new connection. ``BridgeService/makeDittoSide(_:)`` chooses the binding from the configuration.
///
/// The transport it makes belongs to the data plane, on the loop; the side (`Sendable`) never holds it. The link
/// runs the other way: the transport may hold its side and read from it on the loop (MQTT's takes the side's new
/// client in ``DittoTransport/connectionReplaced()``).
protocol DittoSide: Sendable {
    /// Where it connects, for the log.
    var endpoint: String { get }

    /// The data plane's face of this side, made once, before ``run()``.
    func makeTransport() -> sending any DittoTransport

    /// Connects (retrying with the configuration's backoff), subscribes and reports readiness, also for a connection
    /// a reload puts in place, until ``close()``.
    func run() async

    /// Applies a reloaded configuration: subscriptions follow it; when its connection's settings changed, the side
    /// hands over to a new connection (``DittoConnectionHandover``). Returns what changed, one line each.
    func reload(to new: BridgeConfiguration, from old: BridgeConfiguration,
                handover: DittoConnectionHandover) async -> [String]

    /// Disconnects; what is in flight completes with ``DittoSendOutcome/unconfirmed`` and ``run()`` returns.
    func close() async
}

/// What the service does while a ``DittoSide`` moves to a new connection.
struct DittoConnectionHandover: Sendable {
    /// Before the old connection closes: the uplink takes no more device messages and what is in flight finishes on
    /// the old connection (bounded).
    var drain: @Sendable () async -> Void
    /// After the old connection closed, before the new one connects: the data plane moves to it
    /// (``DittoTransport/connectionReplaced()``) and takes device messages again.
    var takeOver: @Sendable () async -> Void
}

/// What a ``DittoSide`` is made from.
struct DittoSideEnvironment: Sendable {
    var configuration: BridgeConfiguration
    var loop: MQTTEventLoop
    var readiness: Readiness
    var metrics: BridgeMetrics
    var logger: Logger
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
