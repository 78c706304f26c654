import CMosquitto
import Dispatch
import Foundation
import Logging
import Synchronization

/// The shared state behind a ``MosquittoClient``: the handle, waiters and the network thread.
///
/// Callbacks run on the network thread with libmosquitto's callback mutex held: they take `state` briefly,
/// resume continuations after releasing it, and never block.
final class ClientCore: Sendable {
    typealias Waiter<T> = CheckedContinuation<Result<T, MQTTError>, Never>

    struct State {
        var connected = false
        var stopping = false
        var stopped = false
        var threadRunning = false
        var destroyed = false
        var attempt = 0
        var connectWaiters: [Waiter<Void>] = []
        var connectedWaiters: [Waiter<Void>] = []
        var publishWaiters: [Int32: Waiter<PublishAck>] = [:]
        /// Acknowledgements that arrived before the publisher registered its waiter.
        var earlyAcks: [Int32: Int32] = [:]
        var subscribeWaiters: [Int32: Waiter<[ReasonCode]>] = [:]
        var earlySubacks: [Int32: [ReasonCode]] = [:]
        /// SUBACKs of subscriptions replayed after a reconnect: nobody waits for them.
        var replayedSubscribeMids: Set<Int32> = []
        var unsubscribeWaiters: [Int32: Waiter<Void>] = [:]
        var earlyUnsubacks: Set<Int32> = []
        /// Replayed after a reconnect without session; keyed by filter, in first-subscribed order.
        var subscriptions: [Subscription] = []
        var inflight = 0
        var inflightWaiters: [Waiter<Void>] = []
        var threadExitWaiters: [CheckedContinuation<Void, Never>] = []
        var droppedMessages = 0
    }

    let handle: MosquittoHandle
    let configuration: MQTTConfiguration
    let logger: Logger
    let state = Mutex(State())
    let messages: AsyncStream<MQTTMessage>.Continuation
    let events: AsyncStream<ConnectionEvent>.Continuation
    /// Wakes the network thread's backoff sleep on shutdown.
    let wakeup = DispatchSemaphore(value: 0)
    private let connectProperties: MosquittoPropertyList

    init(configuration: MQTTConfiguration, logger: Logger, messages: AsyncStream<MQTTMessage>.Continuation,
         events: AsyncStream<ConnectionEvent>.Continuation) throws(MQTTError) {
        self.configuration = configuration
        self.logger = logger
        self.messages = messages
        self.events = events
        let keepAlive = configuration.keepAlive.components.seconds
        guard keepAlive == 0 || (5...65_535).contains(keepAlive) else {
            throw MQTTError(.invalidConfiguration, "keepalive must be 0 or 5...65535 seconds, not \(keepAlive)")
        }
        guard configuration.clientID != nil || configuration.cleanStart else {
            throw MQTTError(.invalidConfiguration, "a persistent session (clean start false) needs a client id")
        }
        guard let raw = mosquitto_new(configuration.clientID, configuration.cleanStart || configuration.version == .v5, nil)
        else {
            throw MQTTError(.library(MOSQ_ERR_NOMEM.rawValue), "cannot create a libmosquitto client (errno \(errno))")
        }
        handle = MosquittoHandle(raw: raw)
        var properties = PublishPropertiesBuilder()
        if configuration.version == .v5, let expiry = configuration.sessionExpiry {
            properties.sessionExpiry = UInt32(clamping: expiry.components.seconds)
        }
        do {
            connectProperties = try properties.build()
            try configure()
        } catch {
            mosquitto_destroy(raw)
            throw error
        }
        // SAFETY: `self` outlives the handle: the handle is destroyed in `destroyIfStopped`, called from the
        // owning client's deinit after the network thread (which also retains `self`) has ended.
        mosquitto_user_data_set(raw, Unmanaged.passUnretained(self).toOpaque())
        mosquitto_connect_v5_callback_set(raw, onConnect)
        mosquitto_disconnect_v5_callback_set(raw, onDisconnect)
        mosquitto_publish_v5_callback_set(raw, onPublish)
        mosquitto_message_v5_callback_set(raw, onMessage)
        mosquitto_subscribe_v5_callback_set(raw, onSubscribe)
        mosquitto_unsubscribe_v5_callback_set(raw, onUnsubscribe)
        mosquitto_log_callback_set(raw, onLog)
    }

    private func configure() throws(MQTTError) {
        let raw = handle.raw
        let version = configuration.version == .v5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311
        try check(mosquitto_int_option(raw, MOSQ_OPT_PROTOCOL_VERSION, version), "protocol version")
        try check(mosquitto_int_option(raw, MOSQ_OPT_TCP_NODELAY, configuration.tcpNoDelay ? 1 : 0), "TCP_NODELAY")
        try check(mosquitto_threaded_set(raw, true), "threaded mode")
        if let credentials = configuration.credentials {
            try check(mosquitto_username_pw_set(raw, credentials.username, credentials.password), "username/password")
        }
        if let tls = configuration.tls {
            guard tls.caFile != nil || tls.caPath != nil else {
                throw MQTTError(.invalidConfiguration, "TLS needs a CA file or a CA directory")
            }
            try check(mosquitto_tls_set(raw, tls.caFile, tls.caPath, tls.certFile, tls.keyFile, nil),
                      "TLS files (CA \(tls.caFile ?? tls.caPath ?? "-"), certificate \(tls.certFile ?? "-"))")
            try check(mosquitto_tls_opts_set(raw, 1, tls.tlsVersion, nil), "TLS options")
            try check(mosquitto_tls_insecure_set(raw, tls.insecure || !tls.verifyHostname), "TLS hostname verification")
        }
        if let will = configuration.will {
            try MQTTTopic.validatePublishTopic(will.topic)
            var list: OpaquePointer? = configuration.version == .v5 ? try will.properties.makeOwnedList() : nil
            let rc = will.payload.withUnsafeBytes { bytes in
                mosquitto_will_set_v5(raw, will.topic, Int32(bytes.count), bytes.baseAddress, Int32(will.qos.rawValue),
                                      will.retain, list)
            }
            if rc != MOSQ_ERR_SUCCESS.rawValue {
                // will_set_v5 takes ownership only on success.
                mosquitto_property_free_all(&list)
                throw MQTTError.library(rc, "last will")
            }
        }
    }

    // MARK: network thread

    /// Runs connect, the network loop and reconnects on a thread of its own, until shutdown.
    private func startThreadIfNeeded() {
        let start = state.withLock { state -> Bool in
            guard !state.threadRunning, !state.stopping else { return false }
            state.threadRunning = true
            return true
        }
        guard start else { return }
        let thread = Thread { [self] in runNetworkThread() }
        thread.name = "mqtt \(configuration.clientID ?? "client")"
        thread.start()
    }

    private func runNetworkThread() {
        let raw = handle.raw
        let host = configuration.host
        let port = Int32(configuration.port)
        let keepAlive = Int32(configuration.keepAlive.components.seconds)
        var everConnected = false
        while !isStopping {
            let rc = everConnected ? mosquitto_reconnect(raw)
                : mosquitto_connect_bind_v5(raw, host, port, keepAlive, nil, connectProperties.list)
            if rc == MOSQ_ERR_SUCCESS.rawValue {
                everConnected = true
                var loopRC = MOSQ_ERR_SUCCESS.rawValue
                while !isStopping, loopRC == MOSQ_ERR_SUCCESS.rawValue {
                    loopRC = mosquitto_loop(raw, 1_000, 1)
                }
                if isStopping { break }
                connectionEnded(MQTTError.library(loopRC, "connection to \(host):\(port) ended"))
            } else {
                connectionEnded(MQTTError.library(rc, "cannot connect to \(host):\(port)"))
            }
            sleepBeforeReconnect()
        }
        // Let a DISCONNECT queued by shutdown() reach the broker before the socket goes.
        for _ in 0..<10 where mosquitto_want_write(raw) {
            _ = mosquitto_loop(raw, 10, 1)
        }
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.threadRunning = false
            defer { state.threadExitWaiters.removeAll() }
            return state.threadExitWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    private var isStopping: Bool { state.withLock { $0.stopping } }

    private func sleepBeforeReconnect() {
        let attempt = state.withLock { state -> Int in
            defer { state.attempt += 1 }
            return state.attempt
        }
        let initial = max(configuration.reconnect.initial, .milliseconds(50))
        var delay = initial
        for _ in 0..<min(attempt, 20) where delay < configuration.reconnect.maximum { delay *= 2 }
        delay = min(delay, max(configuration.reconnect.maximum, initial))
        let nanoseconds = delay.components.seconds * 1_000_000_000 + delay.components.attoseconds / 1_000_000_000
        _ = wakeup.wait(timeout: .now() + .nanoseconds(Int(nanoseconds)))
    }

    /// A connection attempt failed or a connection ended without our asking.
    private func connectionEnded(_ error: MQTTError) {
        let (waiters, wasConnected) = state.withLock { state in
            let wasConnected = state.connected
            state.connected = false
            defer { state.connectWaiters.removeAll() }
            return (state.connectWaiters, wasConnected)
        }
        if !wasConnected { events.yield(.disconnected(error)) }
        logger.debug("MQTT connection ended", metadata: ["error": "\(error)"])
        for waiter in waiters { waiter.resume(returning: .failure(error)) }
    }

    // MARK: operations

    func connect() async throws(MQTTError) {
        let result: Result<Void, MQTTError> = await withCheckedContinuation { continuation in
            let immediate: Result<Void, MQTTError>? = state.withLock { state in
                if state.stopping { return .failure(MQTTError(.shutdown, "the client was disconnected")) }
                if state.connected { return .success(()) }
                state.connectWaiters.append(continuation)
                return nil
            }
            if let immediate { continuation.resume(returning: immediate) }
            startThreadIfNeeded()
        }
        try result.get()
    }

    func publish(topic: String, payload: [UInt8], qos: QoS, retain: Bool,
                 properties: PublishProperties) async throws(MQTTError) -> PublishAck {
        try MQTTTopic.validatePublishTopic(topic)
        guard payload.count <= 268_435_455 else {
            throw MQTTError(.invalidConfiguration, "payload of \(payload.count) bytes exceeds MQTT's maximum")
        }
        let useProperties = configuration.version == .v5 && !properties.isEmpty
        var list: OpaquePointer? = useProperties ? try properties.makeOwnedList() : nil
        defer { mosquitto_property_free_all(&list) }
        try await acquireInflightSlot()
        defer { releaseInflightSlot() }
        try await waitUntilConnected()
        let propertyList = MosquittoPropertyList(list: list)
        let raw = handle.raw
        let result: Result<PublishAck, MQTTError> = await withCheckedContinuation { continuation in
            var mid: Int32 = 0
            let rc = payload.withUnsafeBytes { bytes in
                mosquitto_publish_v5(raw, &mid, topic, Int32(bytes.count), bytes.baseAddress, Int32(qos.rawValue),
                                     retain, propertyList.list)
            }
            // QoS > 0 while the connection just dropped: libmosquitto queued it and sends it after reconnecting.
            guard rc == MOSQ_ERR_SUCCESS.rawValue || (rc == MOSQ_ERR_NO_CONN.rawValue && qos != .atMostOnce) else {
                continuation.resume(returning: .failure(MQTTError.library(rc, "publish to '\(topic)'")))
                return
            }
            let early: Int32? = state.withLock { state in
                if let reason = state.earlyAcks.removeValue(forKey: mid) { return reason }
                if state.stopping { return -1 }
                state.publishWaiters[mid] = continuation
                return nil
            }
            if let early {
                continuation.resume(returning: early < 0
                    ? .failure(MQTTError(.shutdown, "the client was disconnected"))
                    : Self.ackResult(mid: mid, reason: early))
            }
        }
        return try result.get()
    }

    static func ackResult(mid: Int32, reason: Int32) -> Result<PublishAck, MQTTError> {
        let code = ReasonCode(rawValue: UInt8(clamping: reason))
        if code.isFailure {
            return .failure(MQTTError(.rejected(code), "publish refused"))
        }
        return .success(PublishAck(messageID: UInt16(truncatingIfNeeded: mid), reasonCode: code))
    }

    func subscribe(_ subscriptions: [Subscription]) async throws(MQTTError) -> [ReasonCode] {
        guard !subscriptions.isEmpty else { return [] }
        for subscription in subscriptions { try MQTTTopic.validateFilter(subscription.filter) }
        state.withLock { state in
            for subscription in subscriptions {
                if let index = state.subscriptions.firstIndex(where: { $0.filter == subscription.filter }) {
                    state.subscriptions[index] = subscription
                } else {
                    state.subscriptions.append(subscription)
                }
            }
        }
        try await waitUntilConnected()
        var codes: [ReasonCode] = []
        for subscription in subscriptions {
            codes += try await sendSubscribe(subscription)
        }
        return codes
    }

    private func sendSubscribe(_ subscription: Subscription) async throws(MQTTError) -> [ReasonCode] {
        let raw = handle.raw
        let options = subscribeOptions(subscription)
        let result: Result<[ReasonCode], MQTTError> = await withCheckedContinuation { continuation in
            var mid: Int32 = 0
            let rc = mosquitto_subscribe_v5(raw, &mid, subscription.filter, Int32(subscription.qos.rawValue), options, nil)
            guard rc == MOSQ_ERR_SUCCESS.rawValue else {
                continuation.resume(returning: .failure(MQTTError.library(rc, "subscribe to '\(subscription.filter)'")))
                return
            }
            let early: [ReasonCode]?? = state.withLock { state in
                if let codes = state.earlySubacks.removeValue(forKey: mid) { return .some(codes) }
                if state.stopping { return .some(nil) }
                state.subscribeWaiters[mid] = continuation
                return nil
            }
            if let early {
                continuation.resume(returning: early.map { .success($0) }
                    ?? .failure(MQTTError(.shutdown, "the client was disconnected")))
            }
        }
        return try result.get()
    }

    private func subscribeOptions(_ subscription: Subscription) -> Int32 {
        var options: Int32 = 0
        if configuration.version == .v5 {
            if subscription.noLocal { options |= Int32(MQTT_SUB_OPT_NO_LOCAL.rawValue) }
            if subscription.retainAsPublished { options |= Int32(MQTT_SUB_OPT_RETAIN_AS_PUBLISHED.rawValue) }
            options |= Int32(subscription.retainHandling.rawValue) << 4
        }
        return options
    }

    func unsubscribe(_ filters: [String]) async throws(MQTTError) {
        for filter in filters { try MQTTTopic.validateFilter(filter) }
        state.withLock { state in state.subscriptions.removeAll { filters.contains($0.filter) } }
        try await waitUntilConnected()
        let raw = handle.raw
        for filter in filters {
            let result: Result<Void, MQTTError> = await withCheckedContinuation { continuation in
                var mid: Int32 = 0
                let rc = mosquitto_unsubscribe_v5(raw, &mid, filter, nil)
                guard rc == MOSQ_ERR_SUCCESS.rawValue else {
                    continuation.resume(returning: .failure(MQTTError.library(rc, "unsubscribe from '\(filter)'")))
                    return
                }
                let early: Result<Void, MQTTError>? = state.withLock { state in
                    if state.earlyUnsubacks.remove(mid) != nil { return .success(()) }
                    if state.stopping { return .failure(MQTTError(.shutdown, "the client was disconnected")) }
                    state.unsubscribeWaiters[mid] = continuation
                    return nil
                }
                if let early { continuation.resume(returning: early) }
            }
            try result.get()
        }
    }

    private func waitUntilConnected() async throws(MQTTError) {
        let result: Result<Void, MQTTError> = await withCheckedContinuation { continuation in
            let immediate: Result<Void, MQTTError>? = state.withLock { state in
                if state.stopping { return .failure(MQTTError(.shutdown, "the client was disconnected")) }
                if state.connected { return .success(()) }
                state.connectedWaiters.append(continuation)
                return nil
            }
            if let immediate { continuation.resume(returning: immediate) }
        }
        try result.get()
    }

    private func acquireInflightSlot() async throws(MQTTError) {
        let limit = max(1, configuration.maxInflightPublishes)
        let result: Result<Void, MQTTError> = await withCheckedContinuation { continuation in
            let immediate: Result<Void, MQTTError>? = state.withLock { state in
                if state.stopping { return .failure(MQTTError(.shutdown, "the client was disconnected")) }
                if state.inflight < limit {
                    state.inflight += 1
                    return .success(())
                }
                state.inflightWaiters.append(continuation)
                return nil
            }
            if let immediate { continuation.resume(returning: immediate) }
        }
        try result.get()
    }

    private func releaseInflightSlot() {
        // The slot passes straight to the next waiter, so the count stays the same.
        let next = state.withLock { state -> Waiter<Void>? in
            if state.inflightWaiters.isEmpty {
                state.inflight -= 1
                return nil
            }
            return state.inflightWaiters.removeFirst()
        }
        next?.resume(returning: .success(()))
    }

    func shutdown(reason: Int32) async {
        let (running, alreadyStopping) = state.withLock { state in
            defer { state.stopping = true }
            return (state.threadRunning, state.stopping)
        }
        if !alreadyStopping {
            if running {
                _ = mosquitto_disconnect_v5(handle.raw, configuration.version == .v5 ? reason : 0, nil)
                wakeup.signal()
            }
        }
        if running {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let exited = state.withLock { state -> Bool in
                    if !state.threadRunning { return true }
                    state.threadExitWaiters.append(continuation)
                    return false
                }
                if exited { continuation.resume() }
            }
        }
        failEverything()
    }

    private func failEverything() {
        let error = MQTTError(.shutdown, "the client was disconnected")
        let state = self.state.withLock { state -> State in
            let copy = state
            state.connectWaiters = []
            state.connectedWaiters = []
            state.publishWaiters = [:]
            state.subscribeWaiters = [:]
            state.unsubscribeWaiters = [:]
            state.inflightWaiters = []
            state.connected = false
            state.stopped = true
            return copy
        }
        for waiter in state.connectWaiters + state.connectedWaiters + state.inflightWaiters { waiter.resume(returning: .failure(error)) }
        for waiter in state.publishWaiters.values { waiter.resume(returning: .failure(error)) }
        for waiter in state.subscribeWaiters.values { waiter.resume(returning: .failure(error)) }
        for waiter in state.unsubscribeWaiters.values { waiter.resume(returning: .failure(error)) }
        messages.finish()
        events.finish()
    }

    /// Frees the handle once the network thread is gone (never while it might still use it).
    func destroyIfStopped() {
        let destroy = state.withLock { state -> Bool in
            guard !state.threadRunning, !state.destroyed else { return false }
            state.destroyed = true
            return true
        }
        if destroy {
            mosquitto_destroy(handle.raw)
        }
        messages.finish()
        events.finish()
    }

    // MARK: callbacks (network thread)

    fileprivate func didConnect(reason: Int32, sessionPresent: Bool) {
        if reason != 0 {
            let code = ReasonCode(rawValue: UInt8(clamping: reason))
            let text = configuration.version == .v5 ? code.description : String(cString: mosquitto_connack_string(reason))
            let error = MQTTError(.refused(code), text)
            let waiters = state.withLock { state in
                defer { state.connectWaiters.removeAll() }
                return state.connectWaiters
            }
            logger.warning("MQTT connection refused", metadata: ["broker": "\(configuration.host):\(configuration.port)", "reason": "\(text)"])
            events.yield(.refused(code))
            for waiter in waiters { waiter.resume(returning: .failure(error)) }
            return
        }
        // Without a session the broker forgot our subscriptions. Queue them before anything else: before
        // libmosquitto resends in-flight publishes (right after this callback) and before publishers waiting
        // for the connection are let go, so nothing published on this connection misses them.
        let replay = sessionPresent ? [] : state.withLock { $0.subscriptions }
        for subscription in replay {
            var mid: Int32 = 0
            let rc = mosquitto_subscribe_v5(handle.raw, &mid, subscription.filter, Int32(subscription.qos.rawValue),
                                            subscribeOptions(subscription), nil)
            if rc == MOSQ_ERR_SUCCESS.rawValue {
                state.withLock { _ = $0.replayedSubscribeMids.insert(mid) }
            } else {
                logger.error("restoring a subscription failed", metadata: ["mqtt.filter": "\(subscription.filter)", "error": "\(MQTTError.library(rc, "subscribe"))"])
            }
        }
        let waiters = state.withLock { state in
            state.connected = true
            state.attempt = 0
            defer {
                state.connectWaiters.removeAll()
                state.connectedWaiters.removeAll()
            }
            return state.connectWaiters + state.connectedWaiters
        }
        logger.info("MQTT connected", metadata: [
            "broker": "\(configuration.host):\(configuration.port)", "session.present": "\(sessionPresent)",
            "resubscribed": "\(replay.count)",
        ])
        events.yield(.connected(sessionPresent: sessionPresent))
        for waiter in waiters { waiter.resume(returning: .success(())) }
    }

    fileprivate func didDisconnect(reason: Int32) {
        let wasConnected = state.withLock { state in
            defer { state.connected = false }
            return state.connected
        }
        guard wasConnected else { return }
        let error: MQTTError? = reason == 0 ? nil : MQTTError.library(reason, "connection lost")
        logger.info("MQTT disconnected", metadata: ["broker": "\(configuration.host):\(configuration.port)", "reason": "\(error.map { "\($0)" } ?? "requested")"])
        events.yield(.disconnected(error))
    }

    fileprivate func didPublish(mid: Int32, reason: Int32) {
        let waiter = state.withLock { state -> Waiter<PublishAck>? in
            if let waiter = state.publishWaiters.removeValue(forKey: mid) { return waiter }
            state.earlyAcks[mid] = reason
            return nil
        }
        waiter?.resume(returning: Self.ackResult(mid: mid, reason: reason))
    }

    fileprivate func didSubscribe(mid: Int32, granted: [ReasonCode]) {
        let replayed = state.withLock { $0.replayedSubscribeMids.remove(mid) != nil }
        if replayed {
            if granted.contains(where: \.isFailure) {
                logger.error("the broker refused a restored subscription", metadata: ["reason": "\(granted)"])
            }
            return
        }
        let waiter = state.withLock { state -> Waiter<[ReasonCode]>? in
            if let waiter = state.subscribeWaiters.removeValue(forKey: mid) { return waiter }
            state.earlySubacks[mid] = granted
            return nil
        }
        waiter?.resume(returning: .success(granted))
    }

    fileprivate func didUnsubscribe(mid: Int32) {
        let waiter = state.withLock { state -> Waiter<Void>? in
            if let waiter = state.unsubscribeWaiters.removeValue(forKey: mid) { return waiter }
            state.earlyUnsubacks.insert(mid)
            return nil
        }
        waiter?.resume(returning: .success(()))
    }

    fileprivate func didReceive(_ message: MQTTMessage) {
        if case .dropped = messages.yield(message) {
            let dropped = state.withLock { state in
                state.droppedMessages += 1
                return state.droppedMessages
            }
            if dropped == 1 || dropped % 1_000 == 0 {
                logger.warning("inbound MQTT messages dropped: the consumer is behind", metadata: ["dropped": "\(dropped)"])
            }
        }
    }

    fileprivate func didLog(level: Int32, text: String) {
        logger.trace("libmosquitto: \(text)")
    }
}

/// A libmosquitto property list owned by Swift.
///
/// SAFETY: only read (passed as `const`) after construction, freed once in deinit; libmosquitto copies what it
/// needs from it.
final class MosquittoPropertyList: @unchecked Sendable {
    let list: OpaquePointer?

    init(list: OpaquePointer?, owned: Bool = false) {
        self.list = list
        self.owned = owned
    }

    private let owned: Bool

    deinit {
        if owned {
            var list = self.list
            mosquitto_property_free_all(&list)
        }
    }
}

/// CONNECT properties.
struct PublishPropertiesBuilder {
    var sessionExpiry: UInt32?

    func build() throws(MQTTError) -> MosquittoPropertyList {
        var list: OpaquePointer? = nil
        if let sessionExpiry {
            let rc = mosquitto_property_add_int32(&list, Int32(bitPattern: MQTT_PROP_SESSION_EXPIRY_INTERVAL.rawValue), sessionExpiry)
            if rc != MOSQ_ERR_SUCCESS.rawValue {
                mosquitto_property_free_all(&list)
                throw MQTTError.library(rc, "session expiry")
            }
        }
        return MosquittoPropertyList(list: list, owned: true)
    }
}

// MARK: C callbacks

/// SAFETY: userdata is the `ClientCore` set in its init, alive for as long as the handle can call back.
private func core(_ userdata: UnsafeMutableRawPointer?) -> ClientCore? {
    userdata.map { Unmanaged<ClientCore>.fromOpaque($0).takeUnretainedValue() }
}

private let onConnect: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32, Int32, OpaquePointer?) -> Void = {
    _, userdata, reason, flags, _ in
    core(userdata)?.didConnect(reason: reason, sessionPresent: flags & 1 == 1)
}

private let onDisconnect: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32, OpaquePointer?) -> Void = {
    _, userdata, reason, _ in
    core(userdata)?.didDisconnect(reason: reason)
}

private let onPublish: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32, Int32, OpaquePointer?) -> Void = {
    _, userdata, mid, reason, _ in
    core(userdata)?.didPublish(mid: mid, reason: reason)
}

private let onSubscribe: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32, Int32, UnsafePointer<Int32>?, OpaquePointer?) -> Void = {
    _, userdata, mid, count, granted, _ in
    let codes = (0..<Int(max(count, 0))).map { ReasonCode(rawValue: UInt8(clamping: granted?[$0] ?? 0x80)) }
    core(userdata)?.didSubscribe(mid: mid, granted: codes)
}

private let onUnsubscribe: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32, OpaquePointer?) -> Void = {
    _, userdata, mid, _ in
    core(userdata)?.didUnsubscribe(mid: mid)
}

private let onMessage: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, UnsafePointer<mosquitto_message>?, OpaquePointer?) -> Void = {
    _, userdata, message, properties in
    guard let message = message?.pointee, let topic = message.topic else { return }
    let payload = message.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: Int(message.payloadlen))) } ?? []
    core(userdata)?.didReceive(MQTTMessage(
        topic: String(cString: topic), payload: payload, qos: QoS(rawValue: UInt8(clamping: message.qos)) ?? .atMostOnce,
        retain: message.retain, properties: PublishProperties(borrowing: properties)))
}

private let onLog: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32, UnsafePointer<CChar>?) -> Void = {
    _, userdata, level, text in
    guard let text else { return }
    core(userdata)?.didLog(level: level, text: String(cString: text))
}
