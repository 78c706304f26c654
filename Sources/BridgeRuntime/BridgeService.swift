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

/// The running bridge: the device side's MQTT connection and the Ditto side (``DittoSide``, chosen by
/// ``makeDittoSide(_:)``) on one event loop, the data plane between them, and the services that connect, subscribe,
/// watch readiness and stop gracefully.
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
    /// How many device topics the data plane keeps what they decide for, by default: above
    /// the topics of a large site gateway (a topic per point), so that cycling over all of them finds each kept.
    /// An entry holds the topic's thing and references to what its rule's topics share, so the bound costs
    /// memory only as the topics come.
    public static let defaultKeptTopicLimit = 262_144
    let logger: Logger
    let loop: MQTTEventLoop
    /// The data plane, reachable only on the loop's thread.
    let plane: LoopBound<DataPlane>
    let readiness: Readiness
    /// The devices' broker.
    let device: MQTTSide
    /// Ditto's side, whichever binding the configuration chose.
    let ditto: any DittoSide
    private let configurationInForce: Mutex<BridgeConfiguration>
    /// Ends ``run()``'s wait for a stop.
    private let stopping = AsyncStream<Void>.makeStream()
    private let running = Mutex(false)
    /// One reload at a time.
    private let reloading = Mutex(false)

    /// The configuration in force (the last one reloaded).
    public var currentConfiguration: BridgeConfiguration { configurationInForce.withLock { $0 } }

    public convenience init(configuration: BridgeConfiguration, logger: Logger, metrics: BridgeMetrics = BridgeMetrics(),
                            maximumPendingRequests: Int = 10_000, drainTimeout: Duration = .seconds(10),
                            keptTopicLimit: Int = BridgeService.defaultKeptTopicLimit) throws {
        try self.init(configuration: configuration, logger: logger, metrics: metrics,
                      maximumPendingRequests: maximumPendingRequests, drainTimeout: drainTimeout,
                      keptTopicLimit: keptTopicLimit, makeDittoSide: Self.makeDittoSide)
    }

    /// The one place that chooses the Ditto side's binding from the configuration.
    static func makeDittoSide(_ environment: DittoSideEnvironment) throws -> any DittoSide {
        switch environment.configuration.connections.ditto {
        case .mqtt(let broker): try MQTTDittoSide(environment, broker: broker)
        case .webSocket(let connection): try WebSocketDittoSide(environment, connection: connection)
        }
    }

    /// Which binding a configuration's Ditto side uses.
    static func binding(of configuration: BridgeConfiguration) -> String {
        switch configuration.connections.ditto {
        case .mqtt: "mqtt"
        case .webSocket: "websocket"
        }
    }

    /// `makeDittoSide` makes the Ditto side (tests give a side of their own).
    init(configuration: BridgeConfiguration, logger: Logger, metrics: BridgeMetrics, maximumPendingRequests: Int,
         drainTimeout: Duration, keptTopicLimit: Int,
         makeDittoSide: (DittoSideEnvironment) throws -> any DittoSide) throws {
        self.configuration = configuration
        self.logger = logger
        self.metrics = metrics
        self.maximumPendingRequests = maximumPendingRequests
        self.drainTimeout = drainTimeout
        let loop = MQTTEventLoop(name: "bridge loop")
        self.loop = loop
        let readiness = Readiness()
        self.readiness = readiness
        device = try MQTTSide(name: Readiness.deviceSide, connection: configuration.connections.device,
                              subscriptions: Self.deviceSubscriptions(configuration), loop: loop, readiness: readiness,
                              metrics: metrics, logger: logger)
        ditto = try makeDittoSide(DittoSideEnvironment(configuration: configuration, loop: loop, readiness: readiness,
                                                       metrics: metrics, logger: logger))
        configurationInForce = Mutex(configuration)
        plane = LoopBound(try DataPlane(configuration: configuration, loop: loop, device: device.client,
                                        ditto: ditto.makeTransport(),
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
        stopping.continuation.yield()
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
            "ditto.broker": "\(ditto.endpoint)",
            "uplink.rules": "\(configuration.uplink.count)",
            "downlink.rules": "\(configuration.downlink.count)",
            "spool": "\(configuration.spool?.directory ?? "off")",
        ])
        await withDiscardingTaskGroup { group in
            group.addTask { await self.ditto.run() }
            group.addTask { await self.device.run() }
            for await _ in stopping.stream {
                stopping.continuation.finish()
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
        await device.close()
        await ditto.close()
        await loop.submit { plane.value.countUnsentAtStop() }
        await loop.shutdown()
    }

    // MARK: reload

    /// Applies a reloaded config: a new mapping (rules, header policy, devices, acks) takes effect for the next
    /// message without touching either connection or a pending request; subscriptions follow the rules; a side
    /// whose connection settings (host, port, credentials, TLS, ...) changed reconnects, and only that side.
    /// Returns what changed, one line each.
    @discardableResult
    public func reload(_ requested: BridgeConfiguration) async -> [String] {
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
        var changes: [String] = []
        // The side's binding was made at start; a reload changes its settings, not which binding it is.
        let new: BridgeConfiguration
        if Self.binding(of: requested) != Self.binding(of: old) {
            var keeping = requested
            keeping.connections.ditto = old.connections.ditto
            new = keeping
            changes.append("connections.ditto.transport changed: it takes effect at the next start")
        } else {
            new = requested
        }
        var unchanged = new
        unchanged.spool = old.spool
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
            if let client = device.makeClient(for: new.connections.device) {
                await device.replace(with: client, subscriptions: deviceSubscriptions + kept) {
                    await self.loop.submit { plane.value.replace(device: client, connection: new.connections.device) }
                }
            }
            changes.append("device connection changed: reconnected")
        } else {
            await device.resubscribe(from: Self.deviceSubscriptions(old), to: deviceSubscriptions, keeping: Set(kept.map(\.filter)))
        }
        changes += await ditto.reload(to: new, from: old, handover: dittoHandover(to: new))
        var stored = new
        stored.spool = old.spool
        configurationInForce.withLock { $0 = stored }
        logger.notice("config reloaded: applied", metadata: ["changes": "\(changes.joined(separator: "; "))"])
        return changes
    }

    /// What the uplink does while the Ditto side moves to a new connection: what is in flight finishes on the old
    /// connection first (bounded); the rest goes out on the new one.
    private func dittoHandover(to new: BridgeConfiguration) -> DittoConnectionHandover {
        let plane = self.plane
        return DittoConnectionHandover(
            drain: {
                await self.loop.submit { plane.value.stopTakingDeviceMessages() }
                await self.waitUntil(deadline: .now + self.drainTimeout) { await self.loop.submit { plane.value.uplinkDrained } }
            },
            takeOver: {
                await self.loop.submit {
                    plane.value.dittoConnectionReplaced(new)
                    plane.value.resumeTakingDeviceMessages()
                }
            })
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
}

private struct PendingCounts: Sendable {
    var downlink: Int
    var uplink: Int
    init(_ counts: (downlink: Int, uplink: Int)) {
        downlink = counts.downlink
        uplink = counts.uplink
    }
}
