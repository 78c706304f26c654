import CMosquitto
import Dispatch
import Foundation
import Logging
import Synchronization

/// libmosquitto must be initialised once per process before any handle exists; a global `let` runs once.
private let libraryInitialized: Bool = {
    mosquitto_lib_init()
    return true
}()

/// The libmosquitto handle.
///
/// SAFETY: in threaded mode (`mosquitto_threaded_set(true)`) libmosquitto locks every shared structure
/// itself, so the handle may be used from any thread; it is destroyed only after the network thread ended.
struct MosquittoHandle: @unchecked Sendable {
    let raw: OpaquePointer
}

/// An MQTT 3.1.1 / 5 client over libmosquitto, for long-running daemons.
///
/// - ``connect()`` returns once the broker accepted the connection (CONNACK) and throws a clear error when it
///   refused or could not be reached; the client keeps trying in the background in both cases, with bounded
///   backoff, also after refusals and TLS failures, and restores its subscriptions after a reconnect without
///   a session.
/// - ``publish(to:payload:qos:retain:properties:)`` completes when the broker acknowledged the message
///   (PUBACK/PUBCOMP; QoS 0: written to the socket). It waits while the client is not connected (also before
///   the first ``connect()``), so nothing is published before CONNACK, and while
///   ``MQTTConfiguration/maxInflightPublishes`` are unacknowledged.
/// - ``messages`` and ``events`` are single-consumer streams.
/// - ``disconnect()`` sends DISCONNECT, ends the network thread and fails what still waits. Call it before
///   dropping the client.
public final class MosquittoClient: Sendable {
    public let configuration: MQTTConfiguration
    /// Messages for this client's subscriptions, in arrival order.
    public let messages: AsyncStream<MQTTMessage>
    /// Connection state changes.
    public let events: AsyncStream<ConnectionEvent>
    let core: ClientCore

    public init(configuration: MQTTConfiguration, logger: Logger) throws(MQTTError) {
        _ = libraryInitialized
        self.configuration = configuration
        let (messages, messageContinuation) = AsyncStream.makeStream(
            of: MQTTMessage.self, bufferingPolicy: .bufferingOldest(max(1, configuration.inboundBufferLimit)))
        let (events, eventContinuation) = AsyncStream.makeStream(of: ConnectionEvent.self, bufferingPolicy: .bufferingNewest(1_000))
        self.messages = messages
        self.events = events
        self.core = try ClientCore(configuration: configuration, logger: logger, messages: messageContinuation,
                                   events: eventContinuation)
    }

    /// Whether the broker accepted the current connection.
    public var isConnected: Bool { core.state.withLock { $0.connected } }

    /// Publishes handed to the broker and not yet acknowledged (at most ``MQTTConfiguration/maxInflightPublishes``).
    public var publishesInFlight: Int { core.state.withLock { $0.inflight } }

    /// Inbound messages dropped because the consumer fell behind ``MQTTConfiguration/inboundBufferLimit``.
    public var droppedMessages: Int { core.state.withLock { $0.droppedMessages } }

    /// Starts connecting (if not already) and waits for the outcome of the next connection attempt.
    public func connect() async throws(MQTTError) {
        try await core.connect()
    }

    /// Publishes and waits for the broker's acknowledgement. Reason codes below 0x80 (such as 16, no matching
    /// subscribers) are success; failures throw ``MQTTError/Kind/rejected(_:)``.
    @discardableResult
    public func publish(to topic: String, payload: [UInt8], qos: QoS = .atLeastOnce, retain: Bool = false,
                        properties: PublishProperties = .init()) async throws(MQTTError) -> PublishAck {
        try await core.publish(topic: topic, payload: payload, qos: qos, retain: retain, properties: properties)
    }

    /// Subscribes and remembers the subscriptions, replaying them after a reconnect that has no session.
    /// Returns the broker's reason code per subscription (the granted QoS, or a failure code).
    @discardableResult
    public func subscribe(_ subscriptions: [Subscription]) async throws(MQTTError) -> [ReasonCode] {
        try await core.subscribe(subscriptions)
    }

    public func unsubscribe(_ filters: [String]) async throws(MQTTError) {
        try await core.unsubscribe(filters)
    }

    /// Sends DISCONNECT (the will is not published), stops the network thread, fails waiting operations with
    /// ``MQTTError/Kind/shutdown`` and finishes the streams. Idempotent.
    public func disconnect() async {
        await core.shutdown(reason: 0)
    }

    /// Like ``disconnect()``, but asks an MQTT 5 broker to publish the will anyway (reason code 0x04), as if
    /// the client had died: for graceful shutdowns that should still announce the client as gone.
    public func disconnectPublishingWill() async {
        await core.shutdown(reason: 4)
    }

    deinit {
        core.destroyIfStopped()
    }
}
