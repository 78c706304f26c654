public import BridgeConfig
import BridgeMapping
import DittoProtocol
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
public import Foundation
#endif
import BridgeOperations
public import Logging
import MQTT
import Mosquitto
public import ServiceLifecycle
import Synchronization

/// The running bridge: both MQTT connections on one event loop, the data plane between them, and the services
/// that connect, subscribe, watch readiness and stop gracefully.
///
/// Run it in a `ServiceGroup` (graceful shutdown on SIGTERM/SIGINT) or call ``stop()``. A graceful stop takes no
/// more device messages, waits (at most ``drainTimeout``) until what it took reached Ditto's broker (or, with a
/// spool, is on disk while Ditto's side is down), answers requests still waiting for a device with 503, then
/// disconnects both sides.
public final class BridgeService: Service, Sendable {
    public let configuration: BridgeConfiguration
    public let metrics: BridgeMetrics
    /// At most this many requests wait for an answer, per direction.
    public let maximumPendingRequests: Int
    /// How long a graceful stop waits for the uplink to drain.
    public let drainTimeout: Duration
    /// How many device topics (and Ditto signals) the data plane keeps what they decide for, by default: above
    /// the topics of a large site gateway (a topic per point), so that cycling over all of them finds each kept.
    /// An entry holds the topic's thing and references to what its rule's topics share, so the bound costs
    /// memory only as the topics come.
    public static let defaultKeptTopicLimit = 262_144
    let logger: Logger
    let loop: MQTTEventLoop
    /// The data plane, reachable only on the loop's thread.
    let plane: LoopBound<DataPlane>
    let readiness = Readiness()
    private let sides: Mutex<(device: MosquittoClient, ditto: MosquittoClient, configuration: BridgeConfiguration)>
    private let control = AsyncStream<Control>.makeStream()
    private let running = Mutex(false)
    /// One reload at a time.
    private let reloading = Mutex(false)

    private enum Control {
        case stop
        case start(MQTTSideService)
    }

    var deviceClient: MosquittoClient { sides.withLock { $0.device } }
    var dittoClient: MosquittoClient { sides.withLock { $0.ditto } }
    /// The configuration in force (the last one reloaded).
    public var currentConfiguration: BridgeConfiguration { sides.withLock { $0.configuration } }

    public init(configuration: BridgeConfiguration, logger: Logger, metrics: BridgeMetrics = BridgeMetrics(),
                maximumPendingRequests: Int = 10_000, drainTimeout: Duration = .seconds(10),
                keptTopicLimit: Int = BridgeService.defaultKeptTopicLimit) throws {
        self.configuration = configuration
        self.logger = logger
        self.metrics = metrics
        self.maximumPendingRequests = maximumPendingRequests
        self.drainTimeout = drainTimeout
        loop = MQTTEventLoop(name: "bridge loop")
        var deviceLogger = logger
        deviceLogger[metadataKey: "mqtt.side"] = "device"
        var dittoLogger = logger
        dittoLogger[metadataKey: "mqtt.side"] = "ditto"
        let deviceClient = try MosquittoClient(configuration: MQTTConfiguration(configuration.connections.device),
                                               logger: deviceLogger, eventLoop: loop)
        let dittoClient = try MosquittoClient(configuration: MQTTConfiguration(configuration.connections.ditto),
                                              logger: dittoLogger, eventLoop: loop)
        sides = Mutex((deviceClient, dittoClient, configuration))
        plane = LoopBound(try DataPlane(configuration: configuration, loop: loop, device: deviceClient, ditto: dittoClient,
                                        logger: logger, metrics: metrics, maximumPendingRequests: maximumPendingRequests,
                                        keptTopicLimit: keptTopicLimit),
                          loop: loop)
        let plane = self.plane
        loop.execute { plane.value.install() }
    }

    /// Requests waiting for an answer: Ditto's for devices (downlink) and devices' for Ditto (uplink).
    public var pendingRequestCounts: (downlink: Int, uplink: Int) {
        get async {
            let plane = self.plane
            let counts = await loop.submit { [plane] in PendingCounts(plane.value.pendingCounts) }
            return (counts.downlink, counts.uplink)
        }
    }

    /// Both sides connected and subscribed now.
    public var isReady: Bool { readiness.isReady }

    /// Seconds since the event loop that carries every message last turned (for `/health` and the watchdog).
    public var secondsSinceEventLoopTurn: Double { loop.secondsSinceLastTurn }

    /// Which sides are not ready (for `/ready`).
    public var notReadySides: [String] { readiness.notReady }

    /// Returns once both sides connected and subscribed for the first time.
    public func waitUntilReady() async {
        await readiness.waitUntilReady()
    }

    /// Ends ``run()`` with a graceful stop.
    public func stop() {
        control.continuation.yield(.stop)
    }

    public func run() async throws {
        let alreadyRunning = running.withLock { running in
            defer { running = true }
            return running
        }
        guard !alreadyRunning else { return }
        try await withGracefulShutdownHandler {
            try await withTaskCancellationHandler {
                try await runConnected()
            } onCancel: {
                self.stop()
            }
        } onGracefulShutdown: {
            self.stop()
        }
    }

    private func runConnected() async throws {
        logger.info("bridge starting", metadata: [
            "device.broker": "\(configuration.connections.device.host):\(configuration.connections.device.port)",
            "ditto.broker": "\(configuration.connections.ditto.host):\(configuration.connections.ditto.port)",
            "uplink.rules": "\(configuration.uplink.count)",
            "downlink.rules": "\(configuration.downlink.count)",
            "spool": "\(configuration.spool?.directory ?? "off")",
        ])
        let services = [
            sideService("ditto", dittoClient, Self.dittoSubscriptions(configuration)),
            sideService("device", deviceClient, Self.deviceSubscriptions(configuration)),
        ]
        await withDiscardingTaskGroup { group in
            for service in services {
                group.addTask { await service.run() }
            }
            for await command in control.stream {
                switch command {
                case .stop:
                    control.continuation.finish()
                case .start(let service):
                    group.addTask { await service.run() }
                }
            }
            await shutdown()
        }
        logger.info("bridge stopped", metadata: [
            "metrics": "\(metrics.snapshot.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))",
        ])
    }

    private func shutdown() async {
        logger.info("bridge stopping: no more device messages; waiting for the uplink to drain")
        let plane = self.plane
        await loop.submit { plane.value.stopTakingDeviceMessages() }
        await waitUntil(deadline: .now + drainTimeout) { await self.loop.submit { plane.value.uplinkDrained } }
        if !(await loop.submit { plane.value.uplinkDrained }) {
            let waiting = await loop.submit { plane.value.uplinkWaiting }
            logger.warning("uplink not drained in time", metadata: [
                "uplink.waiting": "\(waiting)", "spool": "\(configuration.spool == nil ? "off: these are lost" : "kept on disk")",
            ])
        }
        await loop.submit { plane.value.answerPendingForShutdown() }
        await waitUntil(deadline: .now + .seconds(2)) { await self.loop.submit { plane.value.dittoIdle } }
        await deviceClient.disconnect()
        await dittoClient.disconnect()
        await loop.submit { plane.value.countUnsentAtStop() }
        await loop.shutdown()
    }

    private func sideService(_ side: String, _ client: MosquittoClient, _ subscriptions: [Subscription]) -> MQTTSideService {
        MQTTSideService(side: side, client: client, subscriptions: subscriptions, readiness: readiness, metrics: metrics,
                        logger: logger)
    }

    // MARK: reload

    /// Applies a reloaded config: a new mapping (rules, header policy, devices, acks) takes effect for the next
    /// message without touching either connection or a pending request; subscriptions follow the rules; a side
    /// whose connection settings (host, port, credentials, TLS, ...) changed reconnects, and only that side.
    /// Returns what changed, one line each.
    @discardableResult
    public func reload(_ new: BridgeConfiguration) async -> [String] {
        let busy = reloading.withLock { busy in
            defer { busy = true }
            return busy
        }
        guard !busy else {
            metrics.reload(.rejected)
            return ["a reload is already in progress: ignored"]
        }
        defer { reloading.withLock { $0 = false } }
        let old = currentConfiguration
        var unchanged = new
        unchanged.spool = old.spool
        var changes: [String] = []
        if new.spool != old.spool { changes.append("spool settings changed: they take effect at the next start") }
        metrics.reload(unchanged == old ? .unchanged : .applied)
        guard unchanged != old else {
            logger.notice("config reloaded: unchanged, nothing applied", metadata: changes.isEmpty ? [:] : ["changes": "\(changes)"])
            return changes.isEmpty ? ["unchanged"] : changes
        }
        let plane = self.plane
        // Reply topics of the replaced rules stay subscribed while requests sent with them wait; the data plane
        // unsubscribes them once those are answered or timed out.
        let retained = await loop.submit {
            plane.value.apply(new)
            return plane.value.retainedReplyFilters
        }
        changes.append("mapping: \(new.uplink.count) uplink and \(new.downlink.count) downlink rules")

        let qos = new.defaults.qos
        let deviceSubscriptions = Self.deviceSubscriptions(new)
        let kept = retained.subtracting(deviceSubscriptions.map(\.filter)).sorted()
            .map { Subscription(filter: $0, qos: qos, noLocal: true) }
        if !kept.isEmpty { changes.append("reply topics kept until the requests sent before the reload are answered: \(kept.map(\.filter))") }
        if new.connections.device != old.connections.device {
            await replaceSide("device", connection: new.connections.device, subscriptions: deviceSubscriptions + kept)
            changes.append("device connection changed: reconnected")
        } else {
            await resubscribe(deviceClient, from: Self.deviceSubscriptions(old), to: deviceSubscriptions, keeping: Set(kept.map(\.filter)),
                              side: "device")
        }
        if new.connections.ditto != old.connections.ditto {
            await replaceSide("ditto", connection: new.connections.ditto, subscriptions: Self.dittoSubscriptions(new))
            changes.append("Ditto-side connection changed: reconnected")
        } else {
            await resubscribe(dittoClient, from: Self.dittoSubscriptions(old), to: Self.dittoSubscriptions(new), side: "ditto")
        }
        var stored = new
        stored.spool = old.spool
        sides.withLock { $0.configuration = stored }
        logger.notice("config reloaded: applied", metadata: ["changes": "\(changes.joined(separator: "; "))"])
        return changes
    }

    private func resubscribe(_ client: MosquittoClient, from old: [Subscription], to new: [Subscription],
                             keeping kept: Set<String> = [], side: String) async {
        let added = new.filter { !old.contains($0) }
        let removed = old.map(\.filter).filter { filter in !new.contains { $0.filter == filter } && !kept.contains(filter) }
        do {
            if !removed.isEmpty { try await client.unsubscribe(removed) }
            if !added.isEmpty { try await client.subscribe(added) }
        } catch {
            logger.error("changing subscriptions failed", metadata: ["mqtt.side": "\(side)", "error": "\(error)"])
        }
    }

    private func replaceSide(_ side: String, connection: BrokerConnection, subscriptions: [Subscription]) async {
        var sideLogger = logger
        sideLogger[metadataKey: "mqtt.side"] = "\(side)"
        let client: MosquittoClient
        do {
            client = try MosquittoClient(configuration: MQTTConfiguration(connection), logger: sideLogger, eventLoop: loop)
        } catch {
            logger.error("the new connection settings are unusable; the old connection stays", metadata: [
                "mqtt.side": "\(side)", "error": "\(error)",
            ])
            return
        }
        let plane = self.plane
        if side == "ditto" {
            // What is in flight finishes on the old connection first (bounded); the rest goes out on the new one.
            await loop.submit { plane.value.stopTakingDeviceMessages() }
            await waitUntil(deadline: .now + drainTimeout) { await self.loop.submit { plane.value.uplinkDrained } }
        }
        let old = sides.withLock { sides in
            defer { if side == "ditto" { sides.ditto = client } else { sides.device = client } }
            return side == "ditto" ? sides.ditto : sides.device
        }
        await old.disconnect()
        await loop.submit {
            if side == "ditto" {
                plane.value.replace(ditto: client, connection: connection)
            } else {
                plane.value.replace(device: client, connection: connection)
            }
        }
        control.continuation.yield(.start(sideService(side, client, subscriptions)))
        if side == "ditto" { await loop.submit { plane.value.resumeTakingDeviceMessages() } }
    }

    private func waitUntil(deadline: ContinuousClock.Instant, _ condition: () async -> Bool) async {
        while ContinuousClock.now < deadline, !(await condition()) {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    // MARK: subscriptions

    /// Uplink rules (as a shared-subscription group member when configured), device answers and device
    /// status; `noLocal` so that the bridge never reads back what it publishes to devices when a rule's filter
    /// happens to cover a downlink topic. Answers and status are never shared: every instance needs its own.
    static func deviceSubscriptions(_ configuration: BridgeConfiguration) -> [Subscription] {
        let qos = configuration.defaults.qos
        var seen = Set<String>()
        var result: [Subscription] = []
        let group = configuration.connections.device.sharedSubscriptionGroup
        for filter in UplinkMapper(configuration: configuration).subscriptionFilters where seen.insert(filter).inserted {
            if let group {
                // MQTT 5 forbids noLocal on a shared subscription.
                result.append(Subscription(filter: MQTTTopic.sharedFilter(group: group, filter: filter), qos: qos))
            } else {
                result.append(Subscription(filter: filter, qos: qos, noLocal: true))
            }
        }
        var own = DownlinkMapper(configuration: configuration).replyFilters
        if let status = configuration.deviceStatus { own.append(status.topic.filter) }
        for filter in own where seen.insert(filter).inserted {
            result.append(Subscription(filter: filter, qos: qos, noLocal: true))
        }
        return result
    }

    /// The Ditto connection's target (the loader checks that it covers the reply topic).
    static func dittoSubscriptions(_ configuration: BridgeConfiguration) -> [Subscription] {
        let filter = configuration.ditto.subscribeFilter.filter
        let qos = configuration.ditto.qos
        if let group = configuration.connections.ditto.sharedSubscriptionGroup {
            return [Subscription(filter: MQTTTopic.sharedFilter(group: group, filter: filter), qos: qos)]
        }
        return [Subscription(filter: filter, qos: qos, noLocal: true)]
    }
}

private struct PendingCounts: Sendable {
    var downlink: Int
    var uplink: Int
    init(_ counts: (downlink: Int, uplink: Int)) {
        downlink = counts.downlink
        uplink = counts.uplink
    }
}
