import Logging
import MQTT
import Mosquitto
import ServiceLifecycle
import Synchronization

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
