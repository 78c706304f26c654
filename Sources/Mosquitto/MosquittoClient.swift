import CMosquitto
public import MQTT
import Dispatch
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
public import Foundation
#endif
public import Logging
import Synchronization

/// libmosquitto must be initialised once per process before any handle exists; a global `let` runs once.
private let libraryInitialized: Bool = {
    mosquitto_lib_init()
    return true
}()

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
    /// Messages for this client's subscriptions, in arrival order (unless a message handler takes them; see
    /// ``LoopView/setHandlers(message:publishCompleted:capacityAvailable:connection:)``).
    public let messages: AsyncStream<MQTTMessage>
    /// Connection state changes.
    public let events: AsyncStream<ConnectionEvent>
    /// The thread that drives this client (its own unless one was given).
    public var eventLoop: MQTTEventLoop { core.loop }
    let core: ClientCore

    /// - Parameter eventLoop: share one loop between clients so that a message read by one is written by the
    ///   other on the same thread; nil: the client gets a loop of its own, ended by ``disconnect()``.
    public init(configuration: MQTTConfiguration, logger: Logger, eventLoop: MQTTEventLoop? = nil) throws(MQTTError) {
        _ = libraryInitialized
        self.configuration = configuration
        let (messages, messageContinuation) = AsyncStream.makeStream(
            of: MQTTMessage.self, bufferingPolicy: .bufferingOldest(max(1, configuration.inboundBufferLimit)))
        let (events, eventContinuation) = AsyncStream.makeStream(of: ConnectionEvent.self, bufferingPolicy: .bufferingNewest(1_000))
        self.messages = messages
        self.events = events
        self.core = try ClientCore(configuration: configuration, logger: logger, loop: eventLoop,
                                   messages: messageContinuation, events: eventContinuation)
    }

    /// Whether the broker accepted the current connection.
    public var isConnected: Bool { core.connectedFlag.load(ordering: .acquiring) }

    /// Publishes handed to the broker and not yet acknowledged (at most ``MQTTConfiguration/maxInflightPublishes``
    /// through ``publish(to:payload:qos:retain:properties:)``).
    public var publishesInFlight: Int { core.inflightCount.load(ordering: .relaxed) }

    /// Inbound messages dropped because the `messages` consumer fell behind ``MQTTConfiguration/inboundBufferLimit``.
    public var droppedMessages: Int { core.droppedCount.load(ordering: .relaxed) }

    /// Starts connecting (if not already) and waits for the outcome of the next connection attempt.
    public func connect() async throws(MQTTError) {
        let core = self.core
        let result: Result<Void, MQTTError> = await withCheckedContinuation { continuation in
            core.loop.execute { core.connect(continuation) }
        }
        try result.get()
    }

    /// Publishes and waits for the broker's acknowledgement (QoS 0: written to the socket). Waits while the
    /// client is not connected (also before the first ``connect()``), so nothing is published before CONNACK,
    /// and while ``MQTTConfiguration/maxInflightPublishes`` are unacknowledged. Reason codes below 0x80 (such
    /// as 16, no matching subscribers) are success; failures throw ``MQTTError/Kind/rejected(_:)``.
    @discardableResult
    public func publish(to topic: String, payload: [UInt8], qos: QoS = .atLeastOnce, retain: Bool = false,
                        properties: PublishProperties = .init()) async throws(MQTTError) -> PublishAck {
        try MQTTTopic.validatePublishTopic(topic)
        guard payload.count <= 268_435_455 else {
            throw MQTTError(.invalidConfiguration, "payload of \(payload.count) bytes exceeds MQTT's maximum")
        }
        let useProperties = configuration.version == .v5 && !properties.isEmpty
        let list = MosquittoPropertyList(list: useProperties ? try properties.makeOwnedList() : nil, owned: true)
        let core = self.core
        let result: Result<PublishAck, MQTTError> = await withCheckedContinuation { continuation in
            let publish = ClientCore.QueuedPublish(topic: topic, payload: payload, qos: qos, retain: retain,
                                                   properties: list, waiter: continuation)
            core.loop.execute { core.enqueue(publish) }
        }
        return try result.get()
    }

    /// Subscribes and remembers the subscriptions, replaying them after a reconnect that has no session.
    /// Returns the broker's reason code per subscription (the granted QoS, or a failure code).
    @discardableResult
    public func subscribe(_ subscriptions: [Subscription]) async throws(MQTTError) -> [ReasonCode] {
        guard !subscriptions.isEmpty else { return [] }
        for subscription in subscriptions { try MQTTTopic.validateSubscribeFilter(subscription.filter) }
        let core = self.core
        let result: Result<[ReasonCode], MQTTError> = await withCheckedContinuation { continuation in
            core.loop.execute { core.subscribe(subscriptions, continuation) }
        }
        return try result.get()
    }

    public func unsubscribe(_ filters: [String]) async throws(MQTTError) {
        for filter in filters { try MQTTTopic.validateSubscribeFilter(filter) }
        let core = self.core
        let result: Result<Void, MQTTError> = await withCheckedContinuation { continuation in
            core.loop.execute { core.unsubscribe(filters, continuation) }
        }
        try result.get()
    }

    /// Sends DISCONNECT (the will is not published), closes the connection, fails waiting operations with
    /// ``MQTTError/Kind/shutdown`` and finishes the streams. Idempotent.
    public func disconnect() async {
        await close(reason: 0)
    }

    /// Like ``disconnect()``, but asks an MQTT 5 broker to publish the will anyway (reason code 0x04), as if
    /// the client had died: for graceful shutdowns that should still announce the client as gone.
    public func disconnectPublishingWill() async {
        await close(reason: 4)
    }

    private func close(reason: Int32) async {
        let core = self.core
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            core.loop.execute { core.close(reason: reason, continuation) }
        }
        if core.ownsLoop { await core.loop.shutdown() }
    }

    deinit {
        // Dropped without disconnect(): close on the loop, which then ends if it was this client's own.
        let core = self.core
        core.loop.execute { core.close(reason: 0, nil) }
    }

    // MARK: the event loop's own interface

    /// The interface for code that runs on ``eventLoop``'s thread: handlers called inside the loop's reads,
    /// publishing without waiting, and reading control for back pressure. Traps (release builds too) unless the
    /// caller runs on the loop's thread; the view itself is not `Sendable`, so it cannot leave that thread.
    public var onLoop: LoopView {
        core.loop.preconditionInEventLoop()
        return LoopView(client: self)
    }

    /// ``MosquittoClient``'s loop-thread-only interface (``MosquittoClient/onLoop``).
    public struct LoopView {
        /// The client, for its `async` interface.
        public let client: MosquittoClient
        private var core: ClientCore { client.core }

        fileprivate init(client: MosquittoClient) {
            self.client = client
        }

        /// Whether the broker accepted the current connection.
        public var isConnected: Bool { client.isConnected }

        /// Installs handlers that run on the loop's thread: `message` receives every inbound message instead
        /// of ``MosquittoClient/messages`` (inside libmosquitto's read, so a publish it makes on another client of
        /// the same loop goes to that socket at once); `publishCompleted` learns the outcome of each
        /// ``publishNow(to:payload:qos:retain:properties:token:)``; `capacityAvailable` runs when publishes can go
        /// out again (connected, below the in-flight bound); `connection` sees connection events as they happen.
        /// Call before connecting.
        public func setHandlers(message: ((MQTTMessage) -> Void)?,
                                publishCompleted: ((UInt64, Result<PublishAck, MQTTError>) -> Void)? = nil,
                                capacityAvailable: (() -> Void)? = nil,
                                connection: ((ConnectionEvent) -> Void)? = nil) {
            core.messageHandler = message
            core.tokenCompletionHandler = publishCompleted
            core.capacityHandler = capacityAvailable
            core.connectionHandler = connection
        }

        /// Connected, below ``MQTTConfiguration/maxInflightPublishes``, nothing queued.
        public var canPublishNow: Bool { core.canPublishNow }

        /// Unacknowledged publishes.
        public var inflightCount: Int { core.inflightCount.load(ordering: .relaxed) }

        /// Publishes at once, without waiting; the outcome goes to the `publishCompleted` handler with `token`.
        /// The caller keeps within the in-flight bound (``canPublishNow``); beyond it libmosquitto would queue
        /// without bound. Returns the error when nothing was sent.
        public func publishNow(to topic: String, payload: [UInt8], qos: QoS, retain: Bool = false,
                               properties: PublishProperties = .init(), token: UInt64) -> MQTTError? {
            do {
                try MQTTTopic.validatePublishTopic(topic)
                let useProperties = client.configuration.version == .v5 && !properties.isEmpty
                var list: OpaquePointer? = useProperties ? try properties.makeOwnedList() : nil
                defer { mosquitto_property_free_all(&list) }
                return core.publishNow(topic: topic, payload: payload, qos: qos, retain: retain, list: list,
                                       completion: .token(token))
            } catch {
                return error
            }
        }

        /// Stops reading the client's socket (the broker then holds what it has for us: TCP flow control, then
        /// its session queue). Acknowledgements for our own publishes wait too.
        public func pauseReading() { core.pauseReading() }

        public func resumeReading() { core.resumeReading() }

        public var isReadingPaused: Bool { core.readingPaused }
    }
}

@available(*, unavailable)
extension MosquittoClient.LoopView: Sendable {}
