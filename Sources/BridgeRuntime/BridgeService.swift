import BridgeConfig
import BridgeMapping
import DittoProtocol
import Foundation
import Logging
import Mosquitto
import ServiceLifecycle
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
    let logger: Logger
    let loop: MQTTEventLoop
    let deviceClient: MosquittoClient
    let dittoClient: MosquittoClient
    let plane: DataPlane
    let readiness = Readiness()
    private let stopRequest = AsyncStream<Void>.makeStream()
    private let running = Mutex(false)

    public init(configuration: BridgeConfiguration, logger: Logger, metrics: BridgeMetrics = BridgeMetrics(),
                maximumPendingRequests: Int = 10_000, drainTimeout: Duration = .seconds(10)) throws {
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
        deviceClient = try MosquittoClient(configuration: MQTTConfiguration(configuration.connections.device),
                                           logger: deviceLogger, eventLoop: loop)
        dittoClient = try MosquittoClient(configuration: MQTTConfiguration(configuration.connections.ditto),
                                          logger: dittoLogger, eventLoop: loop)
        plane = try DataPlane(configuration: configuration, loop: loop, device: deviceClient, ditto: dittoClient,
                              logger: logger, metrics: metrics, maximumPendingRequests: maximumPendingRequests)
        let plane = self.plane
        loop.execute { plane.install() }
    }

    /// Requests waiting for an answer: Ditto's for devices (downlink) and devices' for Ditto (uplink).
    public var pendingRequestCounts: (downlink: Int, uplink: Int) {
        get async {
            let plane = self.plane
            let counts = await loop.submit { [plane] in PendingCounts(plane.pendingCounts) }
            return (counts.downlink, counts.uplink)
        }
    }

    /// Both sides connected and subscribed now.
    public var isReady: Bool { readiness.isReady }

    /// Which sides are not ready (for `/ready`).
    public var notReadySides: [String] { readiness.notReady }

    /// Returns once both sides connected and subscribed for the first time.
    public func waitUntilReady() async {
        await readiness.waitUntilReady()
    }

    /// Ends ``run()`` with a graceful stop.
    public func stop() {
        stopRequest.continuation.yield()
        stopRequest.continuation.finish()
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
        let sides = [
            MQTTSideService(side: "ditto", client: dittoClient, subscriptions: dittoSubscriptions, readiness: readiness,
                            metrics: metrics, logger: logger),
            MQTTSideService(side: "device", client: deviceClient, subscriptions: deviceSubscriptions,
                            readiness: readiness, metrics: metrics, logger: logger),
        ]
        await withDiscardingTaskGroup { group in
            for side in sides {
                group.addTask { await side.run() }
            }
            for await _ in stopRequest.stream { break }
            await shutdown()
        }
        logger.info("bridge stopped", metadata: [
            "metrics": "\(metrics.snapshot.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))",
        ])
    }

    private func shutdown() async {
        logger.info("bridge stopping: no more device messages; waiting for the uplink to drain")
        let plane = self.plane
        await loop.submit { plane.stopTakingDeviceMessages() }
        let deadline = ContinuousClock.now + drainTimeout
        var drained = false
        while ContinuousClock.now < deadline {
            drained = await loop.submit { plane.uplinkDrained }
            if drained { break }
            try? await Task.sleep(for: .milliseconds(10))
        }
        if !drained {
            let waiting = await loop.submit { plane.uplinkWaiting }
            logger.warning("uplink not drained in time", metadata: [
                "uplink.waiting": "\(waiting)", "spool": "\(configuration.spool == nil ? "off: these are lost" : "kept on disk")",
            ])
        }
        await loop.submit { plane.answerPendingForShutdown() }
        let answersDeadline = ContinuousClock.now + .seconds(2)
        while ContinuousClock.now < answersDeadline, !(await loop.submit { plane.dittoIdle }) {
            try? await Task.sleep(for: .milliseconds(10))
        }
        await deviceClient.disconnect()
        await dittoClient.disconnect()
        await loop.shutdown()
    }

    // MARK: subscriptions

    /// Uplink rules (as a shared-subscription group member when configured), device answers and device
    /// status; `noLocal` so that the bridge never reads back what it publishes to devices when a rule's filter
    /// happens to cover a downlink topic. Answers and status are never shared: every instance needs its own.
    var deviceSubscriptions: [Subscription] {
        let qos = Mosquitto.QoS(configuration.defaults.qos)
        var seen = Set<String>()
        var result: [Subscription] = []
        let group = configuration.connections.device.sharedSubscriptionGroup
        for filter in plane.uplinkFilters where seen.insert(filter).inserted {
            if let group {
                // MQTT 5 forbids noLocal on a shared subscription.
                result.append(Subscription(filter: "$share/\(group)/\(filter)", qos: qos))
            } else {
                result.append(Subscription(filter: filter, qos: qos, noLocal: true))
            }
        }
        var own = plane.replyFilters
        if let status = configuration.deviceStatus { own.append(status.topic.filter) }
        for filter in own where seen.insert(filter).inserted {
            result.append(Subscription(filter: filter, qos: qos, noLocal: true))
        }
        return result
    }

    /// The Ditto connection's target (the loader checks that it covers the reply topic).
    var dittoSubscriptions: [Subscription] {
        let filter = configuration.ditto.subscribeFilter.filter
        let qos = Mosquitto.QoS(configuration.ditto.qos)
        if let group = configuration.connections.ditto.sharedSubscriptionGroup {
            return [Subscription(filter: "$share/\(group)/\(filter)", qos: qos)]
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

/// One MQTT side: connects (the client itself retries with the config's `reconnect:` backoff), subscribes,
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
                    readiness.setConnected(side, true)
                    logger.info("connection state", metadata: ["mqtt.side": "\(side)", "mqtt.event": "\(event)"])
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

/// Which sides are connected and subscribed; who waits for both.
final class Readiness: Sendable {
    private struct State {
        var subscribed: Set<String> = []
        var connected: Set<String> = []
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())
    static let sides = ["device", "ditto"]

    var isReady: Bool { state.withLock { Self.ready($0) } }

    var notReady: [String] {
        state.withLock { state in Self.sides.filter { !state.subscribed.contains($0) || !state.connected.contains($0) } }
    }

    private static func ready(_ state: State) -> Bool {
        sides.allSatisfy { state.subscribed.contains($0) && state.connected.contains($0) }
    }

    func setConnected(_ side: String, _ connected: Bool) {
        update { if connected { $0.connected.insert(side) } else { $0.connected.remove(side) } }
    }

    func setSubscribed(_ side: String) {
        update {
            $0.subscribed.insert(side)
            $0.connected.insert(side)
        }
    }

    private func update(_ change: (inout State) -> Void) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            change(&state)
            guard Self.ready(state) else { return [] }
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func waitUntilReady() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { state in
                if Self.ready(state) { return true }
                state.waiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }
}
