import BridgeConfig
import Logging
import MQTT
import Mosquitto
import ServiceLifecycle
import Synchronization

/// One MQTT side over its life: the client in use and what it subscribes to, the ``MQTTSideService`` that connects
/// it, and the client a reload puts in its place. The device side is one; ``MQTTDittoSide`` wraps the other.
final class MQTTSide: Sendable {
    /// The side's name in ``Readiness``, the log and the metrics.
    let name: String
    private let loop: MQTTEventLoop
    private let readiness: Readiness
    private let metrics: BridgeMetrics
    private let logger: Logger
    private let current: Mutex<MosquittoClient>
    /// The clients to run: the first, then each one a reload puts in place; finished by ``close()``.
    private let started = AsyncStream<(MosquittoClient, [Subscription])>.makeStream()

    init(name: String, connection: BrokerConnection, subscriptions: [Subscription], loop: MQTTEventLoop,
         readiness: Readiness, metrics: BridgeMetrics, logger: Logger) throws(MQTTError) {
        self.name = name
        self.loop = loop
        self.readiness = readiness
        self.metrics = metrics
        self.logger = logger
        let client = try Self.client(name: name, connection: connection, loop: loop, logger: logger)
        current = Mutex(client)
        started.continuation.yield((client, subscriptions))
    }

    private static func client(name: String, connection: BrokerConnection, loop: MQTTEventLoop,
                               logger: Logger) throws(MQTTError) -> MosquittoClient {
        var sideLogger = logger
        sideLogger[metadataKey: "mqtt.side"] = "\(name)"
        return try MosquittoClient(configuration: MQTTConfiguration(connection), logger: sideLogger, eventLoop: loop)
    }

    /// The client in use.
    var client: MosquittoClient { current.withLock { $0 } }

    /// Runs the service of each client in turn (the old one ends when it is closed) until ``close()``.
    func run() async {
        await withDiscardingTaskGroup { group in
            for await (client, subscriptions) in started.stream {
                let service = MQTTSideService(side: name, client: client, subscriptions: subscriptions,
                                              readiness: readiness, metrics: metrics, logger: logger)
                group.addTask { await service.run() }
            }
        }
    }

    /// A client for changed connection settings, not connected yet; nil (logged) when the settings are unusable,
    /// and then the connection in use stays.
    func makeClient(for connection: BrokerConnection) -> MosquittoClient? {
        do {
            return try Self.client(name: name, connection: connection, loop: loop, logger: logger)
        } catch {
            logger.error("the new connection settings are unusable; the old connection stays", metadata: [
                "mqtt.side": "\(name)", "error": "\(error)",
            ])
            return nil
        }
    }

    /// Moves to `client`: the old one closes (failing what it had in flight), `takeOver` moves the data plane to
    /// the new one, which then connects and subscribes.
    func replace(with client: MosquittoClient, subscriptions: [Subscription], takeOver: () async -> Void) async {
        let old = current.withLock { current in
            defer { current = client }
            return current
        }
        await old.disconnect()
        await takeOver()
        started.continuation.yield((client, subscriptions))
    }

    /// Subscribes what `new` adds and unsubscribes what it drops (except `kept`), on the connection in use.
    func resubscribe(from old: [Subscription], to new: [Subscription], keeping kept: Set<String> = []) async {
        let added = new.filter { !old.contains($0) }
        let removed = old.map(\.filter).filter { filter in !new.contains { $0.filter == filter } && !kept.contains(filter) }
        do {
            if !removed.isEmpty { try await client.unsubscribe(removed) }
            if !added.isEmpty { try await client.subscribe(added) }
        } catch {
            logger.error("changing subscriptions failed", metadata: ["mqtt.side": "\(name)", "error": "\(error)"])
        }
    }

    /// Disconnects: what is in flight fails with ``MQTTError/Kind/shutdown``, and ``run()`` returns.
    func close() async {
        started.continuation.finish()
        await client.disconnect()
    }
}

/// One MQTT client of a side: connects (the client itself retries with the config's `reconnect:` backoff), subscribes,
/// then reports connection changes to the readiness and the log until the client is closed.
struct MQTTSideService: Service {
    let side: String
    let client: MosquittoClient
    let subscriptions: [Subscription]
    let readiness: Readiness
    let metrics: BridgeMetrics
    let logger: Logger

    func run() async {
        let events = Task { [client, readiness, side, logger, metrics] in
            for await event in client.events {
                switch event {
                case .connected:
                    metrics.increment("\(side).connected")
                    logger.info("connection state", metadata: ["mqtt.side": "\(side)", "mqtt.event": "\(event)"])
                case .subscriptionsRestored:
                    // Ready again only once the broker has the subscriptions back (a reconnect without a session).
                    readiness.setConnected(side, true)
                case .disconnected(let error):
                    readiness.setConnected(side, false)
                    if error != nil { metrics.increment("\(side).connect-failed") }
                    logger.warning("connection state", metadata: ["mqtt.side": "\(side)", "mqtt.event": "\(event)"])
                case .refused:
                    logger.error("connection state", metadata: ["mqtt.side": "\(side)", "mqtt.event": "\(event)"])
                }
            }
        }
        do {
            try await client.connect()
        } catch {
            if case .shutdown = error.kind { return await events.value }
            logger.error("cannot connect yet; retrying in the background", metadata: [
                "mqtt.side": "\(side)", "error": "\(error)",
            ])
        }
        // Waits for the connection the client keeps trying to make.
        while true {
            do {
                let codes = try await client.subscribe(subscriptions)
                for (subscription, code) in zip(subscriptions, codes) where code.isFailure {
                    logger.error("subscription refused", metadata: [
                        "mqtt.side": "\(side)", "mqtt.filter": "\(subscription.filter)", "mqtt.reason": "\(code)",
                    ])
                }
                logger.info("connected and subscribed", metadata: [
                    "mqtt.side": "\(side)", "mqtt.filters": "\(subscriptions.map(\.filter))",
                ])
                readiness.setSubscribed(side)
                break
            } catch {
                if case .shutdown = error.kind { break }
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        await events.value
    }
}
