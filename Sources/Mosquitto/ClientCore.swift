import CMosquitto
import MQTT
import DequeModule
import Foundation
import Glibc
import Logging
import Synchronization

/// The state behind a ``MosquittoClient``: its libmosquitto handle, driven by an ``MQTTEventLoop``.
///
/// SAFETY (`@unchecked Sendable`): every mutable stored property is touched only on `loop`'s thread (jobs
/// handed in with `loop.execute`, libmosquitto callbacks, which run inside `mosquitto_loop_read`/`_write`/
/// `_misc` on that thread); the connector thread touches only the handle, and only while `phase` is
/// `.connecting`, when the loop leaves the handle alone. Values read from other threads are atomics.
final class ClientCore: @unchecked Sendable {
    typealias Waiter<T> = CheckedContinuation<Result<T, MQTTError>, Never>

    enum Phase {
        case idle
        /// A connector thread runs the blocking TCP/TLS connect with the handle.
        case connecting
        case awaitingConnack
        case connected
        case waitingToReconnect
        case closing
        case closed
    }

    /// Who learns the outcome of a publish.
    enum Completion {
        case waiter(Waiter<PublishAck>)
        case token(UInt64)
    }

    struct InflightPublish {
        var completion: Completion
        var qos: QoS
    }

    struct QueuedPublish {
        var topic: String
        var payload: [UInt8]
        var qos: QoS
        var retain: Bool
        var properties: MosquittoPropertyList
        var waiter: Waiter<PublishAck>
    }

    let handle: MosquittoHandle
    let configuration: MQTTConfiguration
    let logger: Logger
    let loop: MQTTEventLoop
    /// A client without a loop of its own's choosing owns its loop and ends it when it closes.
    let ownsLoop: Bool
    let messages: AsyncStream<MQTTMessage>.Continuation
    let events: AsyncStream<ConnectionEvent>.Continuation
    private let connectProperties: MosquittoPropertyList

    // Read from any thread.
    let connectedFlag = Atomic<Bool>(false)
    let inflightCount = Atomic<Int>(0)
    let droppedCount = Atomic<Int>(0)
    /// The last error libmosquitto logged (the OpenSSL reason behind "A TLS error occurred"); written by the
    /// connector thread too.
    private let lastErrorLog = Mutex<String?>(nil)

    // Loop thread only.
    private(set) var phase = Phase.idle
    private var everConnected = false
    private var attempt = 0
    private var reconnectTimer: MQTTEventLoop.TimerID?
    private var closeTimer: MQTTEventLoop.TimerID?
    private var connectWaiters: [Waiter<Void>] = []
    private var whenConnected: [(Result<Void, MQTTError>) -> Void] = []
    private var inflight: [Int32: InflightPublish] = [:]
    private var earlyAcks: [Int32: Int32] = [:]
    private var insidePublish = false
    private var queued = Deque<QueuedPublish>()
    private var subscribeWaiters: [Int32: ([ReasonCode]) -> Void] = [:]
    private var replayedSubscribeMids: Set<Int32> = []
    /// A subscription could not be restored on this connection: ``ConnectionEvent/subscriptionsRestored`` is not sent.
    private var replayFailed = false
    private var unsubscribeWaiters: [Int32: () -> Void] = [:]
    /// Replayed after a reconnect without session, in first-subscribed order.
    private var subscriptions: [Subscription] = []
    private var closeWaiters: [CheckedContinuation<Void, Never>] = []
    private(set) var readingPaused = false
    private(set) var nextMiscDeadline = ContinuousClock.now + .seconds(1)
    /// Set inside callbacks, acted on once the read returned (outside libmosquitto's callback).
    private var connectedJustNow = false
    private var capacityFreed = false

    // Loop-thread handlers (the fast path); nil: messages go to the `messages` stream.
    var messageHandler: ((MQTTMessage) -> Void)?
    var tokenCompletionHandler: ((UInt64, Result<PublishAck, MQTTError>) -> Void)?
    var capacityHandler: (() -> Void)?
    var connectionHandler: ((ConnectionEvent) -> Void)?

    init(configuration: MQTTConfiguration, logger: Logger, loop: MQTTEventLoop?,
         messages: AsyncStream<MQTTMessage>.Continuation, events: AsyncStream<ConnectionEvent>.Continuation) throws(MQTTError) {
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
        // MQTT 5 sends this flag as clean start on every CONNECT; MQTT 3.1.1 as clean session.
        guard let raw = mosquitto_new(configuration.clientID, configuration.cleanStart, nil) else {
            throw MQTTError(.library(MOSQ_ERR_NOMEM.rawValue), "cannot create a libmosquitto client (errno \(errno))")
        }
        handle = MosquittoHandle(raw: raw)
        // "External threading": libmosquitto queues every packet instead of writing it inline, and the loop
        // writes after the read that queued it. So the PUBACK of an inbound QoS 1 message leaves only after
        // `on_message` returned (the bridge spooled it: a kill in between loses nothing, the broker redelivers),
        // and the publishes and PUBACKs of one read go out in one write. Nothing else changes: the handle stays
        // confined to the loop thread.
        mosquitto_threaded_set(raw, true)
        var properties = ConnectPropertiesBuilder()
        if configuration.version == .v5, let expiry = configuration.sessionExpiry {
            properties.sessionExpiry = UInt32(clamping: expiry.components.seconds)
        }
        do {
            connectProperties = try properties.build()
            try Self.configure(raw, configuration)
        } catch {
            mosquitto_destroy(raw)
            throw error
        }
        if let loop {
            self.loop = loop
            ownsLoop = false
        } else {
            self.loop = MQTTEventLoop(name: "mqtt \(configuration.clientID ?? "client")")
            ownsLoop = true
        }
        // SAFETY: the handle is destroyed in `finishClose` before `self` can go away: the loop keeps `self`
        // registered (a strong reference) from here until then.
        mosquitto_user_data_set(raw, Unmanaged.passUnretained(self).toOpaque())
        mosquitto_connect_v5_callback_set(raw, onConnect)
        mosquitto_disconnect_v5_callback_set(raw, onDisconnect)
        mosquitto_publish_v5_callback_set(raw, onPublish)
        mosquitto_message_v5_callback_set(raw, onMessage)
        mosquitto_subscribe_v5_callback_set(raw, onSubscribe)
        mosquitto_unsubscribe_v5_callback_set(raw, onUnsubscribe)
        self.loop.execute { [self] in self.loop.register(self) }
    }

    private static func configure(_ raw: OpaquePointer, _ configuration: MQTTConfiguration) throws(MQTTError) {
        let version = configuration.version == .v5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311
        try check(mosquitto_int_option(raw, MOSQ_OPT_PROTOCOL_VERSION, version), "protocol version")
        try check(mosquitto_int_option(raw, MOSQ_OPT_TCP_NODELAY, configuration.tcpNoDelay ? 1 : 0), "TCP_NODELAY")
        if let credentials = configuration.credentials {
            try check(mosquitto_username_pw_set(raw, credentials.username, credentials.password), "username/password")
        }
        if let tls = configuration.tls {
            guard tls.caFile != nil || tls.caPath != nil else {
                throw MQTTError(.invalidConfiguration, "TLS needs a CA file or a CA directory")
            }
            try check(mosquitto_tls_set(raw, tls.caFile, tls.caPath, tls.certFile, tls.keyFile, nil),
                      "TLS files (CA \(tls.caFile ?? tls.caPath ?? "-"), certificate \(tls.certFile ?? "-"))")
            try check(mosquitto_tls_opts_set(raw, 1, tls.version?.rawValue, nil), "TLS options")
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

    private var raw: OpaquePointer { handle.raw }
    private var brokerAddress: String { "\(configuration.host):\(configuration.port)" }
    private var inflightLimit: Int { max(1, configuration.maxInflightPublishes) }

    // MARK: connecting (loop thread)

    private func startConnecting() {
        loop.assertInLoop()
        reconnectTimer = nil
        phase = .connecting
        lastErrorLog.withLock { $0 = nil }
        // libmosquitto formats a log line for every packet while a log callback is set: only while connecting
        // (for the TLS and connect errors' reasons) or when trace logging asks for it.
        mosquitto_log_callback_set(raw, onLog)
        let handle = self.handle
        let first = !everConnected
        let host = configuration.host
        let port = Int32(configuration.port)
        let keepAlive = Int32(configuration.keepAlive.components.seconds)
        let properties = connectProperties
        // The blocking TCP connect and TLS handshake run on a thread of their own, so a slow or unreachable
        // broker never stalls the other clients on the loop.
        let connector = Thread { [self] in
            let rc = first ? mosquitto_connect_bind_v5(handle.raw, host, port, keepAlive, nil, properties.list)
                : mosquitto_reconnect(handle.raw)
            loop.execute { self.connectAttemptFinished(rc) }
        }
        connector.name = "mqtt connect \(configuration.clientID ?? "")"
        connector.start()
    }

    private func connectAttemptFinished(_ rc: Int32) {
        if phase == .closing {
            finishClose()
            return
        }
        guard phase == .connecting else { return }
        if rc == MOSQ_ERR_SUCCESS.rawValue {
            everConnected = true
            phase = .awaitingConnack
            nextMiscDeadline = .now + .seconds(1)
            flushWrites()
        } else {
            connectionEnded(MQTTError.library(rc, "cannot connect to \(brokerAddress)\(errorLogSuffix())"))
        }
    }

    private func errorLogSuffix() -> String {
        lastErrorLog.withLock { $0 }.map { " (\($0))" } ?? ""
    }

    /// A connection attempt failed or a connection ended without our asking: fail what cannot survive it and
    /// try again after the backoff.
    private func connectionEnded(_ error: MQTTError?) {
        let wasConnected = phase == .connected
        phase = .waitingToReconnect
        connectedFlag.store(false, ordering: .releasing)
        let failure = error ?? MQTTError(.library(MOSQ_ERR_CONN_LOST.rawValue), "connection to \(brokerAddress) lost")
        // QoS 0 packets not yet written are gone with the socket; QoS 1/2 stay with libmosquitto and are sent
        // again after the reconnect.
        for (mid, entry) in inflight where entry.qos == .atMostOnce {
            inflight[mid] = nil
            complete(entry.completion, .failure(failure))
        }
        publishInflightCount()
        for waiter in subscribeWaiters.values { waiter([]) }
        subscribeWaiters.removeAll()
        for waiter in unsubscribeWaiters.values { waiter() }
        unsubscribeWaiters.removeAll()
        replayedSubscribeMids.removeAll()
        if wasConnected {
            logger.info("MQTT disconnected", metadata: ["broker": "\(brokerAddress)", "reason": "\(failure)"])
        } else {
            logger.debug("MQTT connection attempt failed", metadata: ["broker": "\(brokerAddress)", "error": "\(failure)"])
        }
        emit(.disconnected(failure))
        let waiters = connectWaiters
        connectWaiters.removeAll()
        for waiter in waiters { waiter.resume(returning: .failure(failure)) }
        scheduleReconnect()
    }

    private func scheduleReconnect() {
        let initial = max(configuration.reconnect.initial, .milliseconds(50))
        var delay = initial
        for _ in 0..<min(attempt, 20) where delay < configuration.reconnect.maximum { delay *= 2 }
        delay = min(delay, max(configuration.reconnect.maximum, initial))
        attempt += 1
        reconnectTimer = loop.schedule(at: .now + delay) { [self] in
            if phase == .waitingToReconnect { startConnecting() }
        }
    }

    private func emit(_ event: ConnectionEvent) {
        events.yield(event)
        connectionHandler?(event)
    }

    // MARK: driving the socket (loop thread)

    /// What the loop polls for, or nil while the socket is not ours to use.
    func pollEvents() -> (fd: Int32, events: Int16)? {
        switch phase {
        case .awaitingConnack, .connected, .closing:
            let fd = mosquitto_socket(raw)
            guard fd >= 0 else { return nil }
            return (fd, readEvents | (mosquitto_want_write(raw) ? Int16(POLLOUT) : 0))
        default:
            return nil
        }
    }

    /// ``flushWrites()`` then ``pollEvents()`` with one `mosquitto_want_write` when nothing was queued (most
    /// turns: the write after the read that queued packets sent them). Sets `wrote` when it wrote.
    func writeQueuedThenPollEvents(wrote: inout Bool) -> (fd: Int32, events: Int16)? {
        switch phase {
        case .awaitingConnack, .connected, .closing:
            let fd = mosquitto_socket(raw)
            guard fd >= 0 else { return nil }
            guard mosquitto_want_write(raw) else { return (fd, readEvents) }
            wrote = true
            flushWrites()
            return pollEvents()
        default:
            return nil
        }
    }

    private var readEvents: Int16 { readingPaused && phase == .connected ? 0 : Int16(POLLIN) }

    func handle(revents: Int16) {
        let failed = revents & Int16(POLLHUP | POLLERR) != 0
        if revents & Int16(POLLIN) != 0 || failed {
            readAvailable()
        }
        if socketOpen, mosquitto_want_write(raw) {
            let rc = mosquitto_loop_write(raw, 1)
            if rc != MOSQ_ERR_SUCCESS.rawValue { socketFailed(rc); return }
        }
        afterIO()
    }

    private var socketOpen: Bool {
        switch phase {
        case .awaitingConnack, .connected, .closing: mosquitto_socket(raw) >= 0
        default: false
        }
    }

    /// Reads packets until the socket has no more, reading is paused, or a fair share is done.
    private func readAvailable() {
        for _ in 0..<512 {
            errno = 0
            let rc = mosquitto_loop_read(raw, 1)
            if rc != MOSQ_ERR_SUCCESS.rawValue {
                socketFailed(rc)
                return
            }
            if errno == EAGAIN || errno == EWOULDBLOCK || !socketOpen { break }
            if readingPaused && phase == .connected { break }
        }
        afterIO()
    }

    /// Writes what callbacks queued while the socket is writable, instead of waiting a poll round for it.
    func flushWrites() {
        guard socketOpen, mosquitto_want_write(raw) else { return }
        let rc = mosquitto_loop_write(raw, 1)
        if rc != MOSQ_ERR_SUCCESS.rawValue { socketFailed(rc) }
    }

    private func socketFailed(_ rc: Int32) {
        if phase == .closing {
            finishClose()
        } else if phase == .awaitingConnack || phase == .connected {
            connectionEnded(MQTTError.library(rc, "connection to \(brokerAddress) ended\(errorLogSuffix())"))
        }
    }

    /// Work that must not run inside a libmosquitto callback.
    private func afterIO() {
        switch phase {
        case .awaitingConnack, .connected:
            if mosquitto_socket(raw) < 0 {
                connectionEnded(nil)
                return
            }
        case .closing:
            if mosquitto_socket(raw) < 0 { finishClose() }
            return
        default:
            return
        }
        if connectedJustNow {
            connectedJustNow = false
            if logger.logLevel > .trace { mosquitto_log_callback_set(raw, nil) }
            let waiters = connectWaiters
            connectWaiters.removeAll()
            for waiter in waiters { waiter.resume(returning: .success(())) }
            let work = whenConnected
            whenConnected.removeAll()
            for item in work { item(.success(())) }
            drainQueued()
            flushWrites()
            if phase == .connected { capacityHandler?() }
            capacityFreed = false
        }
        if capacityFreed {
            capacityFreed = false
            drainQueued()
            if phase == .connected, inflight.count < inflightLimit { capacityHandler?() }
        }
    }

    func loopMisc(now: ContinuousClock.Instant) {
        guard now >= nextMiscDeadline else { return }
        nextMiscDeadline = now + .seconds(1)
        guard phase == .awaitingConnack || phase == .connected else { return }
        let rc = mosquitto_loop_misc(raw)
        if rc != MOSQ_ERR_SUCCESS.rawValue && rc != MOSQ_ERR_NO_CONN.rawValue {
            socketFailed(rc)
            return
        }
        afterIO()
    }

    // MARK: operations (loop thread)

    func connect(_ waiter: Waiter<Void>) {
        switch phase {
        case .closing, .closed:
            waiter.resume(returning: .failure(Self.shutdownError))
        case .connected:
            waiter.resume(returning: .success(()))
        case .idle:
            connectWaiters.append(waiter)
            startConnecting()
        default:
            connectWaiters.append(waiter)
        }
    }

    static let shutdownError = MQTTError(.shutdown, "the client was disconnected")

    /// Whether a publish now goes straight to the socket within the in-flight bound.
    var canPublishNow: Bool { phase == .connected && inflight.count < inflightLimit && queued.isEmpty }

    func enqueue(_ publish: QueuedPublish) {
        switch phase {
        case .closing, .closed:
            publish.waiter.resume(returning: .failure(Self.shutdownError))
        default:
            if canPublishNow {
                send(publish)
            } else {
                queued.append(publish)
                if phase == .idle { startConnecting() }
            }
        }
    }

    private func send(_ publish: QueuedPublish) {
        if let error = publishNow(topic: publish.topic, payload: publish.payload, qos: publish.qos, retain: publish.retain,
                                  list: publish.properties.list, completion: .waiter(publish.waiter)) {
            publish.waiter.resume(returning: .failure(error))
        }
    }

    private func drainQueued() {
        while phase == .connected, inflight.count < inflightLimit, let next = queued.popFirst() {
            send(next)
        }
    }

    /// Hands one PUBLISH to libmosquitto (written to the socket at once outside callbacks) and registers who
    /// learns its outcome. Returns an error when nothing was sent.
    func publishNow(topic: String, payload: [UInt8], qos: QoS, retain: Bool, list: OpaquePointer?,
                    completion: Completion) -> MQTTError? {
        var mid: Int32 = 0
        insidePublish = true
        // `withCString` lends a native string's own bytes; passing the `String` itself made a C copy per publish.
        let rc = topic.withCString { cTopic in
            payload.withUnsafeBytes { bytes in
                mosquitto_publish_v5(raw, &mid, cTopic, Int32(bytes.count), bytes.baseAddress, Int32(qos.rawValue), retain,
                                     list)
            }
        }
        insidePublish = false
        // QoS > 0: once libmosquitto accepted the message it is queued even when writing it failed (the connection
        // just dropped: NO_CONN, ERRNO such as EPIPE, CONN_LOST), and it is sent again after the reconnect.
        let queuedAnyway = switch rc {
        case MOSQ_ERR_NO_CONN.rawValue, MOSQ_ERR_ERRNO.rawValue, MOSQ_ERR_CONN_LOST.rawValue: qos != .atMostOnce
        default: false
        }
        guard rc == MOSQ_ERR_SUCCESS.rawValue || queuedAnyway else {
            return MQTTError.library(rc, "publish to '\(topic)'")
        }
        if let reason = earlyAcks.removeValue(forKey: mid) {
            // A QoS 0 PUBLISH written inline: libmosquitto called back before returning the mid.
            complete(completion, Self.ackResult(mid: mid, reason: reason))
            return nil
        }
        inflight[mid] = InflightPublish(completion: completion, qos: qos)
        publishInflightCount()
        return nil
    }

    private func publishInflightCount() {
        inflightCount.store(inflight.count, ordering: .relaxed)
    }

    private func complete(_ completion: Completion, _ result: Result<PublishAck, MQTTError>) {
        switch completion {
        case .waiter(let waiter): waiter.resume(returning: result)
        case .token(let token): tokenCompletionHandler?(token, result)
        }
    }

    static func ackResult(mid: Int32, reason: Int32) -> Result<PublishAck, MQTTError> {
        let code = ReasonCode(rawValue: UInt8(clamping: reason))
        if code.isFailure {
            return .failure(MQTTError(.rejected(code), "publish refused"))
        }
        return .success(PublishAck(messageID: UInt16(truncatingIfNeeded: mid), reasonCode: code))
    }

    func pauseReading() { readingPaused = true }

    func resumeReading() {
        guard readingPaused else { return }
        readingPaused = false
        // Data may already wait in the socket; the next poll reports it.
    }

    /// Runs `work` once connected (at once when connected), or with the error that ends the client.
    private func onceConnected(_ work: @escaping (Result<Void, MQTTError>) -> Void) {
        switch phase {
        case .connected: work(.success(()))
        case .closing, .closed: work(.failure(Self.shutdownError))
        case .idle:
            whenConnected.append(work)
            startConnecting()
        default: whenConnected.append(work)
        }
    }

    func subscribe(_ list: [Subscription], _ waiter: Waiter<[ReasonCode]>) {
        for subscription in list {
            if let index = subscriptions.firstIndex(where: { $0.filter == subscription.filter }) {
                subscriptions[index] = subscription
            } else {
                subscriptions.append(subscription)
            }
        }
        onceConnected { [self] result in
            if case .failure(let error) = result { return waiter.resume(returning: .failure(error)) }
            var codes = [[ReasonCode]?](repeating: nil, count: list.count)
            var remaining = list.count
            for (index, subscription) in list.enumerated() {
                var mid: Int32 = 0
                let rc = mosquitto_subscribe_v5(raw, &mid, subscription.filter, Int32(subscription.qos.rawValue),
                                                subscribeOptions(subscription), nil)
                guard rc == MOSQ_ERR_SUCCESS.rawValue else {
                    remaining = -1
                    return waiter.resume(returning: .failure(MQTTError.library(rc, "subscribe to '\(subscription.filter)'")))
                }
                subscribeWaiters[mid] = { granted in
                    guard remaining > 0 else { return }
                    if granted.isEmpty {
                        remaining = -1
                        return waiter.resume(returning: .failure(MQTTError(.library(MOSQ_ERR_CONN_LOST.rawValue),
                                                                           "connection lost before SUBACK")))
                    }
                    codes[index] = granted
                    remaining -= 1
                    if remaining == 0 { waiter.resume(returning: .success(codes.flatMap { $0 ?? [] })) }
                }
            }
            flushWrites()
        }
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

    func unsubscribe(_ filters: [String], _ waiter: Waiter<Void>) {
        subscriptions.removeAll { filters.contains($0.filter) }
        onceConnected { [self] result in
            if case .failure(let error) = result { return waiter.resume(returning: .failure(error)) }
            var remaining = filters.count
            guard remaining > 0 else { return waiter.resume(returning: .success(())) }
            for filter in filters {
                var mid: Int32 = 0
                let rc = mosquitto_unsubscribe_v5(raw, &mid, filter, nil)
                guard rc == MOSQ_ERR_SUCCESS.rawValue else {
                    remaining = -1
                    return waiter.resume(returning: .failure(MQTTError.library(rc, "unsubscribe from '\(filter)'")))
                }
                unsubscribeWaiters[mid] = {
                    guard remaining > 0 else { return }
                    remaining -= 1
                    if remaining == 0 { waiter.resume(returning: .success(())) }
                }
            }
            flushWrites()
        }
    }

    // MARK: closing (loop thread)

    /// Sends DISCONNECT (with `reason`), waits briefly for the broker to close, then frees everything.
    func close(reason: Int32, _ waiter: CheckedContinuation<Void, Never>?) {
        if let waiter { closeWaiters.append(waiter) }
        switch phase {
        case .closed:
            resumeCloseWaiters()
        case .closing:
            break
        case .connecting:
            // The connector thread owns the handle until it reports back.
            phase = .closing
        case .idle, .waitingToReconnect:
            finishClose()
        case .awaitingConnack, .connected:
            phase = .closing
            _ = mosquitto_disconnect_v5(raw, configuration.version == .v5 ? reason : 0, nil)
            flushWrites()
            if phase == .closing {
                closeTimer = loop.schedule(at: .now + .seconds(1)) { [self] in
                    if phase == .closing { finishClose() }
                }
            }
        }
    }

    /// The loop is ending: close without waiting for the broker.
    func closeNow() {
        switch phase {
        case .closed, .connecting:
            return
        case .awaitingConnack, .connected:
            _ = mosquitto_disconnect_v5(raw, 0, nil)
            flushWrites()
            if phase != .closed { finishClose() }
        default:
            finishClose()
        }
    }

    private func finishClose() {
        guard phase != .closed else { return }
        phase = .closed
        connectedFlag.store(false, ordering: .releasing)
        if let reconnectTimer { loop.cancel(reconnectTimer) }
        if let closeTimer { loop.cancel(closeTimer) }
        let error = Self.shutdownError
        for waiter in connectWaiters { waiter.resume(returning: .failure(error)) }
        connectWaiters.removeAll()
        let work = whenConnected
        whenConnected.removeAll()
        for item in work { item(.failure(error)) }
        let pending = inflight
        inflight.removeAll()
        publishInflightCount()
        for entry in pending.values { complete(entry.completion, .failure(error)) }
        while let next = queued.popFirst() { next.waiter.resume(returning: .failure(error)) }
        for waiter in subscribeWaiters.values { waiter([]) }
        subscribeWaiters.removeAll()
        for waiter in unsubscribeWaiters.values { waiter() }
        unsubscribeWaiters.removeAll()
        let wasConnectedOnce = everConnected
        mosquitto_destroy(raw)
        if wasConnectedOnce { emit(.disconnected(nil)) }
        messages.finish()
        events.finish()
        messageHandler = nil
        tokenCompletionHandler = nil
        capacityHandler = nil
        connectionHandler = nil
        loop.unregister(self)
        if ownsLoop { loop.requestStop() }
        resumeCloseWaiters()
    }

    private func resumeCloseWaiters() {
        let waiters = closeWaiters
        closeWaiters.removeAll()
        for waiter in waiters { waiter.resume() }
    }

    // MARK: callbacks (loop thread, inside libmosquitto)

    fileprivate func didConnect(reason: Int32, sessionPresent: Bool) {
        if reason != 0 {
            let code = ReasonCode(rawValue: UInt8(clamping: reason))
            let text = configuration.version == .v5 ? code.description : String(cString: mosquitto_connack_string(reason))
            let error = MQTTError(.refused(code), text)
            logger.warning("MQTT connection refused", metadata: ["broker": "\(brokerAddress)", "reason": "\(text)"])
            emit(.refused(code))
            let waiters = connectWaiters
            connectWaiters.removeAll()
            for waiter in waiters { waiter.resume(returning: .failure(error)) }
            return
        }
        // Without a session the broker forgot our subscriptions. Queue them before anything else: before
        // libmosquitto resends in-flight publishes (right after this callback) and before queued publishes go
        // out, so nothing published on this connection misses them.
        let replay = sessionPresent ? [] : subscriptions
        replayFailed = false
        for subscription in replay {
            var mid: Int32 = 0
            let rc = mosquitto_subscribe_v5(raw, &mid, subscription.filter, Int32(subscription.qos.rawValue),
                                            subscribeOptions(subscription), nil)
            if rc == MOSQ_ERR_SUCCESS.rawValue {
                replayedSubscribeMids.insert(mid)
            } else {
                replayFailed = true
                logger.error("restoring a subscription failed", metadata: [
                    "mqtt.filter": "\(subscription.filter)", "error": "\(MQTTError.library(rc, "subscribe"))",
                ])
            }
        }
        phase = .connected
        attempt = 0
        connectedFlag.store(true, ordering: .releasing)
        connectedJustNow = true
        logger.info("MQTT connected", metadata: [
            "broker": "\(brokerAddress)", "session.present": "\(sessionPresent)", "resubscribed": "\(replay.count)",
        ])
        emit(.connected(sessionPresent: sessionPresent))
        if replayedSubscribeMids.isEmpty, !replayFailed { emit(.subscriptionsRestored) }
    }

    fileprivate func didPublish(mid: Int32, reason: Int32) {
        guard let entry = inflight.removeValue(forKey: mid) else {
            if insidePublish { earlyAcks[mid] = reason }
            return
        }
        publishInflightCount()
        complete(entry.completion, Self.ackResult(mid: mid, reason: reason))
        capacityFreed = true
    }

    fileprivate func didSubscribe(mid: Int32, granted: [ReasonCode]) {
        if replayedSubscribeMids.remove(mid) != nil {
            if granted.contains(where: \.isFailure) {
                replayFailed = true
                logger.error("the broker refused a restored subscription", metadata: ["reason": "\(granted)"])
            }
            if replayedSubscribeMids.isEmpty, !replayFailed { emit(.subscriptionsRestored) }
            return
        }
        subscribeWaiters.removeValue(forKey: mid)?(granted)
    }

    fileprivate func didUnsubscribe(mid: Int32) {
        unsubscribeWaiters.removeValue(forKey: mid)?()
    }

    fileprivate func didReceive(_ message: MQTTMessage) {
        if let messageHandler {
            messageHandler(message)
            return
        }
        if case .dropped = messages.yield(message) {
            let dropped = droppedCount.add(1, ordering: .relaxed).newValue
            if dropped == 1 || dropped % 1_000 == 0 {
                logger.warning("inbound MQTT messages dropped: the consumer is behind", metadata: ["dropped": "\(dropped)"])
            }
        }
    }

    /// Any thread (the connector's too).
    fileprivate func didLog(level: Int32, text: String) {
        if level & Int32(MOSQ_LOG_ERR) != 0 {
            lastErrorLog.withLock { $0 = text }
            logger.debug("libmosquitto error: \(text)")
        } else {
            logger.trace("libmosquitto: \(text)")
        }
    }
}

/// The libmosquitto handle.
///
/// SAFETY: used only on the owning client's event-loop thread, or on its connector thread while the loop
/// leaves it alone (see ``ClientCore``); destroyed once, in `ClientCore.finishClose`.
struct MosquittoHandle: @unchecked Sendable {
    let raw: OpaquePointer
}

/// A libmosquitto property list owned by Swift.
///
/// SAFETY: only read (passed as `const`) after construction, freed once in deinit; libmosquitto copies what it
/// needs from it.
final class MosquittoPropertyList: @unchecked Sendable {
    let list: OpaquePointer?
    private let owned: Bool

    init(list: OpaquePointer?, owned: Bool = false) {
        self.list = list
        self.owned = owned
    }

    deinit {
        if owned {
            var list = self.list
            mosquitto_property_free_all(&list)
        }
    }
}

/// CONNECT properties.
struct ConnectPropertiesBuilder {
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

/// The loop notices a closed socket itself after each read, write and keepalive check.
private let onDisconnect: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32, OpaquePointer?) -> Void = {
    _, _, _, _ in
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
