import BridgeConfig
import BridgeMapping
import DittoProtocol
import Foundation
import Logging
import Mosquitto
import ServiceLifecycle
import Synchronization

/// The running bridge: both MQTT connections, the mappers in both directions, pending requests and acks.
///
/// Run it in a `ServiceGroup` (graceful shutdown on SIGTERM/SIGINT) or call ``stop()``.
public final class BridgeService: Service, Sendable {
    public let configuration: BridgeConfiguration
    public let metrics: BridgeMetrics
    /// At most this many requests wait for an answer, per direction.
    public let maximumPendingRequests: Int
    let uplink: UplinkMapper
    let downlink: DownlinkMapper
    let logger: Logger
    let state: BridgeState
    let deviceClient: MosquittoClient
    let dittoClient: MosquittoClient
    /// Ditto's requests, in order per thing, concurrently across things.
    private let requestLanes = SerialLanes()
    private let stopRequest = AsyncStream<Void>.makeStream()
    private let running = Mutex(false)
    /// Sides connected and subscribed, and who waits for both.
    private let readiness = Mutex<(sides: Set<String>, waiters: [CheckedContinuation<Void, Never>])>(([], []))

    public init(configuration: BridgeConfiguration, logger: Logger, metrics: BridgeMetrics = BridgeMetrics(),
                maximumPendingRequests: Int = 10_000) throws {
        self.configuration = configuration
        self.logger = logger
        self.metrics = metrics
        self.maximumPendingRequests = maximumPendingRequests
        self.uplink = UplinkMapper(configuration: configuration)
        self.downlink = DownlinkMapper(configuration: configuration)
        self.state = BridgeState(capacity: maximumPendingRequests)
        var deviceLogger = logger
        deviceLogger[metadataKey: "mqtt.side"] = "device"
        var dittoLogger = logger
        dittoLogger[metadataKey: "mqtt.side"] = "ditto"
        self.deviceClient = try MosquittoClient(configuration: MQTTConfiguration(configuration.connections.device),
                                                logger: deviceLogger)
        self.dittoClient = try MosquittoClient(configuration: MQTTConfiguration(configuration.connections.ditto),
                                               logger: dittoLogger)
    }

    /// Requests waiting for an answer: Ditto's for devices (downlink) and devices' for Ditto (uplink).
    public var pendingRequestCounts: (downlink: Int, uplink: Int) { state.pendingCounts }

    /// Returns once both sides connected and subscribed for the first time.
    public func waitUntilReady() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = readiness.withLock { readiness in
                if readiness.sides.count == 2 { return true }
                readiness.waiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }

    /// Ends ``run()``: both clients disconnect, pending work is dropped.
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
        ])
        await withDiscardingTaskGroup { group in
            group.addTask { await self.consumeDitto() }
            group.addTask { await self.consumeDevice() }
            group.addTask { await self.watch(self.dittoClient, side: "ditto") }
            group.addTask { await self.watch(self.deviceClient, side: "device") }
            let sweeper = Task { await self.sweepExpired() }
            group.addTask {
                await self.connect(self.dittoClient, side: "ditto", subscriptions: self.dittoSubscriptions)
            }
            group.addTask {
                await self.connect(self.deviceClient, side: "device", subscriptions: self.deviceSubscriptions)
            }
            for await _ in stopRequest.stream { break }
            logger.info("bridge stopping")
            sweeper.cancel()
            await deviceClient.disconnect()
            await requestLanes.drain()
            // Requesters still waiting get an answer now instead of a timeout later.
            let pending = state.removeAll()
            for request in pending.downlink where request.responseRequired {
                await answerDitto(request.request, error: BridgeErrors.shuttingDown(), replyAddress: request.replyAddress)
            }
            await dittoClient.disconnect()
        }
        logger.info("bridge stopped", metadata: [
            "metrics": "\(metrics.snapshot.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))",
        ])
    }

    // MARK: connections

    /// Uplink rules, device answers and device status; `noLocal` so that the bridge never reads back what it
    /// publishes to devices when a rule's filter happens to cover a downlink topic.
    var deviceSubscriptions: [Subscription] {
        var filters = uplink.subscriptionFilters + downlink.replyFilters
        if let status = configuration.deviceStatus { filters.append(status.topic.filter) }
        var seen = Set<String>()
        return filters.filter { seen.insert($0).inserted }.map {
            Subscription(filter: $0, qos: Mosquitto.QoS(configuration.defaults.qos), noLocal: true)
        }
    }

    /// The Ditto connection's target (the loader checks that it covers the reply topic).
    var dittoSubscriptions: [Subscription] {
        [Subscription(filter: configuration.ditto.subscribeFilter.filter,
                      qos: Mosquitto.QoS(configuration.ditto.qos), noLocal: true)]
    }

    /// Connects, retrying with backoff until it works or the bridge stops; then subscribes. The client itself
    /// reconnects and restores the subscriptions after that.
    private func connect(_ client: MosquittoClient, side: String, subscriptions: [Subscription]) async {
        var delay = Duration.milliseconds(500)
        while !Task.isCancelled {
            do {
                try await client.connect()
                let codes = try await client.subscribe(subscriptions)
                for (subscription, code) in zip(subscriptions, codes) where code.isFailure {
                    logger.error("subscription refused", metadata: [
                        "mqtt.side": "\(side)", "mqtt.filter": "\(subscription.filter)", "mqtt.reason": "\(code)",
                    ])
                }
                logger.info("connected and subscribed", metadata: [
                    "mqtt.side": "\(side)", "mqtt.filters": "\(subscriptions.map(\.filter))",
                ])
                let waiters = readiness.withLock { readiness in
                    readiness.sides.insert(side)
                    guard readiness.sides.count == 2 else { return [CheckedContinuation<Void, Never>]() }
                    defer { readiness.waiters.removeAll() }
                    return readiness.waiters
                }
                for waiter in waiters { waiter.resume() }
                return
            } catch {
                if case .shutdown = error.kind { return }
                logger.error("cannot connect, retrying", metadata: [
                    "mqtt.side": "\(side)", "error": "\(error)", "retry.in": "\(delay)",
                ])
                metrics.increment("\(side).connect-failed")
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(30))
            }
        }
    }

    private func watch(_ client: MosquittoClient, side: String) async {
        for await event in client.events {
            logger.info("connection state", metadata: ["mqtt.side": "\(side)", "mqtt.event": "\(event)"])
        }
    }

    // MARK: device side

    private func consumeDevice() async {
        for await message in deviceClient.messages {
            await handleDeviceMessage(MQTTPublication(message))
        }
    }

    func handleDeviceMessage(_ message: MQTTPublication) async {
        if let status = configuration.deviceStatus, let variables = status.topic.match(message.topic) {
            updatePresence(status, variables: variables, payload: message.payload)
            return
        }
        if let reply = downlink.reply(from: message) {
            await handleDeviceReply(reply, topic: message.topic)
            return
        }
        let publication: DittoPublication
        do {
            publication = try DittoPublication.uplink(message, mapper: uplink, ditto: configuration.ditto,
                                                      environment: uplinkEnvironment)
        } catch {
            metrics.increment("uplink.dropped.\(error.kind.rawValue)")
            logger.warning("device message dropped", metadata: [
                "mqtt.topic": "\(message.topic)", "reason": "\(error.reason)", "drop.kind": "\(error.kind.rawValue)",
            ])
            return
        }
        if let request = publication.request {
            let deadline = ContinuousClock.now + request.timeout + .seconds(2)
            switch state.insertUplink(request, deadline: deadline) {
            case .inserted:
                break
            case .duplicate:
                metrics.increment("uplink.dropped.duplicate-request")
                logger.warning("device request dropped: its correlation-id is already pending", metadata: [
                    "mqtt.topic": "\(message.topic)", "correlation-id": "\(request.correlationID)",
                ])
                return
            case .full:
                metrics.increment("uplink.dropped.too-many-requests")
                let error = BridgeErrors.tooManyPendingRequests(maximumPendingRequests)
                await answerDevice(request, status: error.status, payload: .json(error.errorValue), headers: DittoHeaders())
                return
            }
        }
        do {
            try await publishToDitto(publication.envelope, topic: publication.topic)
            metrics.increment("uplink.published")
            logger.debug("device message mapped", metadata: [
                "mqtt.topic": "\(message.topic)", "rule": "\(publication.rule)", "ditto.topic": "\(publication.envelope.topic)",
            ])
        } catch {
            if let request = publication.request { state.removeUplink(request.correlationID) }
            metrics.increment("uplink.publish-failed")
            logger.error("publishing to Ditto failed", metadata: ["mqtt.topic": "\(message.topic)", "error": "\(error)"])
        }
    }

    /// Devices are keyed by the values the status topic captures (e.g. `deviceId`), which downlink routes
    /// capture from the thing ID under the same names.
    static func presenceKey(_ placeholders: [String], _ variables: [String: String]) -> String? {
        var parts: [String] = []
        for name in placeholders {
            guard let value = variables[name] else { return nil }
            parts.append(name + "=" + value)
        }
        return parts.joined(separator: "\u{0}")
    }

    private func updatePresence(_ status: DeviceStatusSettings, variables: [String: String], payload: [UInt8]) {
        guard let key = Self.presenceKey(status.topic.placeholders, variables) else { return }
        let value = String(decoding: payload, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let online = !payload.isEmpty && !status.offlinePayloads.contains(value)
        state.setOnline(online, key)
        logger.info("device presence", metadata: ["device": "\(variables)", "online": "\(online)"])
    }

    private var uplinkEnvironment: UplinkEnvironment {
        let state = self.state
        return UplinkEnvironment(
            nextRevision: { state.nextRevision(for: $0) },
            timestamp: { UplinkEnvironment.isoTimestamp(Date()) },
            newCorrelationID: { CorrelationID.generate() })
    }

    private func handleDeviceReply(_ reply: DeviceReply, topic: String) async {
        guard let pending = state.removeDownlink(reply.correlationID) else {
            metrics.increment("reply.unmatched")
            logger.warning("device answer matches no pending request", metadata: [
                "mqtt.topic": "\(topic)", "correlation-id": "\(reply.correlationID)",
            ])
            return
        }
        let response: Envelope
        do {
            response = try downlink.response(to: pending.request, route: pending.route, reply: reply)
        } catch {
            metrics.increment("reply.dropped.\(error.kind.rawValue)")
            logger.warning("device answer cannot be mapped", metadata: ["mqtt.topic": "\(topic)", "reason": "\(error.reason)"])
            await answerDitto(pending.request, error: error.dittoError, replyAddress: pending.replyAddress)
            if let label = pending.answeredAck {
                await acknowledge(pending.request, label: label, status: error.dittoError.status, replyAddress: pending.replyAddress)
            }
            return
        }
        let status = response.status ?? 200
        if pending.responseRequired {
            do {
                try await publishToDitto(response, topic: pending.replyAddress)
                metrics.increment("reply.published")
            } catch {
                metrics.increment("reply.publish-failed")
                logger.error("publishing the answer to Ditto failed", metadata: ["mqtt.topic": "\(topic)", "error": "\(error)"])
                return
            }
        }
        if let label = pending.answeredAck {
            await acknowledge(pending.request, label: label, status: status, replyAddress: pending.replyAddress)
        }
    }

    // MARK: Ditto side

    private func consumeDitto() async {
        for await message in dittoClient.messages {
            await handleDittoMessage(MQTTPublication(message))
        }
    }

    func handleDittoMessage(_ message: MQTTPublication) async {
        let envelope: Envelope
        do {
            envelope = try Envelope.decode(message.payload)
        } catch {
            metrics.increment("ditto.invalid")
            logger.warning("invalid Ditto Protocol message", metadata: ["mqtt.topic": "\(message.topic)", "reason": "\(error)"])
            await answerUndecodable(message, error: error)
            return
        }
        if envelope.isResponse {
            await handleDittoResponse(envelope, topic: message.topic)
            return
        }
        let replyAddress = message.properties.responseTopic.flatMap { $0.isEmpty ? nil : $0 }
            ?? envelope.headers.replyTo
            ?? envelope.topic.thingID.flatMap { try? DittoPublication.render(configuration.ditto.publishTopic, for: $0) }
        switch envelope.topic.criterion {
        case .messages, .commands:
            requestLanes.enqueue(envelope.topic.thingID?.description ?? "") {
                await self.handleDittoRequest(envelope, replyAddress: replyAddress, topic: message.topic)
            }
        default:
            metrics.increment("ditto.ignored")
            logger.debug("Ditto signal ignored", metadata: ["mqtt.topic": "\(message.topic)", "ditto.topic": "\(envelope.topic)"])
        }
    }

    private func handleDittoRequest(_ envelope: Envelope, replyAddress: String?, topic: String) async {
        let route: DownlinkRoute
        do {
            route = try downlink.route(envelope)
        } catch {
            metrics.increment("downlink.dropped.\(error.kind.rawValue)")
            logger.warning("Ditto request not routed", metadata: [
                "mqtt.topic": "\(topic)", "ditto.topic": "\(envelope.topic)", "reason": "\(error.reason)",
            ])
            await answerDitto(envelope, error: error.dittoError, replyAddress: replyAddress)
            return
        }
        if !deviceClient.isConnected {
            metrics.increment("downlink.dropped.device-broker-down")
            await answerDitto(envelope, error: BridgeErrors.deviceBrokerUnavailable(), replyAddress: replyAddress)
            return
        }
        if let status = configuration.deviceStatus,
           let key = Self.presenceKey(status.topic.placeholders, route.variables), state.isOffline(key) {
            metrics.increment("downlink.dropped.device-offline")
            await answerDitto(envelope, error: BridgeErrors.deviceOffline(route.thingID), replyAddress: replyAddress)
            return
        }
        let requested = Set(envelope.headers.requestedAcks ?? [])
        let answeredAck = configuration.acks.answered.flatMap { requested.contains($0) ? $0 : nil }
        let deliveredAck = configuration.acks.delivered.flatMap { requested.contains($0) ? $0 : nil }
        let correlationID = envelope.headers.correlationID ?? ""
        let waits = route.expectsReply && (route.responseRequired || answeredAck != nil) && !correlationID.isEmpty
        let arrival = ContinuousClock.now
        let deadline = arrival + route.timeout - min(.milliseconds(500), route.timeout / 10)
        if waits {
            let pending = PendingDownlink(request: envelope, route: route, replyAddress: replyAddress ?? "",
                                          responseRequired: route.responseRequired && replyAddress != nil,
                                          answeredAck: answeredAck)
            switch state.insertDownlink(pending, key: correlationID, deadline: deadline) {
            case .inserted:
                break
            case .duplicate:
                metrics.increment("downlink.dropped.duplicate")
                logger.info("redelivered request still pending, not sent twice", metadata: [
                    "mqtt.topic": "\(topic)", "correlation-id": "\(correlationID)",
                ])
                return
            case .full:
                metrics.increment("downlink.dropped.too-many-requests")
                await answerDitto(envelope, error: BridgeErrors.tooManyPendingRequests(maximumPendingRequests),
                                  replyAddress: replyAddress)
                return
            }
        }
        let left = deadline - ContinuousClock.now
        let expiry = UInt32(max(1, (left.components.seconds + (left.components.attoseconds > 0 ? 1 : 0))))
        let publication: MQTTPublication
        do {
            // The device gets a response topic only when somebody waits for its answer.
            var publishedRoute = route
            publishedRoute.responseRequired = waits
            publication = try downlink.devicePublication(for: envelope, route: publishedRoute, messageExpiry: expiry)
        } catch {
            if waits { state.removeDownlink(correlationID) }
            metrics.increment("downlink.dropped.\(error.kind.rawValue)")
            logger.warning("Ditto request cannot be mapped", metadata: ["mqtt.topic": "\(topic)", "reason": "\(error.reason)"])
            await answerDitto(envelope, error: error.dittoError, replyAddress: replyAddress)
            return
        }
        do {
            _ = try await deviceClient.publish(to: publication.topic, payload: publication.payload,
                                               qos: Mosquitto.QoS(level: publication.qos), retain: false,
                                               properties: PublishProperties(publication.properties))
            metrics.increment("downlink.published")
            logger.debug("Ditto request sent to device", metadata: [
                "ditto.topic": "\(envelope.topic)", "device.topic": "\(publication.topic)", "rule": "\(route.ruleName)",
            ])
        } catch {
            if waits { state.removeDownlink(correlationID) }
            metrics.increment("downlink.publish-failed")
            logger.error("publishing to the device failed", metadata: ["device.topic": "\(publication.topic)", "error": "\(error)"])
            await answerDitto(envelope, error: BridgeErrors.deliveryFailed("\(error)"), replyAddress: replyAddress)
            if let deliveredAck { await acknowledge(envelope, label: deliveredAck, status: 503, replyAddress: replyAddress) }
            return
        }
        if let deliveredAck { await acknowledge(envelope, label: deliveredAck, status: 200, replyAddress: replyAddress) }
        if !route.expectsReply, route.responseRequired, let replyAddress {
            // Fire-and-forget rules answer for the device once its broker took the request.
            await answerDelivered(envelope, route: route, replyAddress: replyAddress)
        }
    }

    private func answerDelivered(_ request: Envelope, route: DownlinkRoute, replyAddress: String) async {
        do {
            let response: Envelope = switch route.kind {
            case .message: Envelope.messageResponse(to: request, status: 202, payload: nil)
            case .command(let action, _): Envelope.commandResponse(to: request, status: action == .create ? 201 : 204)
            }
            try await publishToDitto(response, topic: replyAddress)
        } catch {
            logger.error("answering a delivered request failed", metadata: ["ditto.topic": "\(request.topic)", "error": "\(error)"])
        }
    }

    /// A Ditto answer to a request a device made, or an ack/error for one.
    private func handleDittoResponse(_ envelope: Envelope, topic: String) async {
        // Acks answer nothing a device asked; only a message response or an error completes a device request.
        guard envelope.topic.criterion != .acks, let correlationID = envelope.headers.correlationID,
              let request = state.removeUplink(correlationID)
        else {
            metrics.increment("ditto.response.unmatched")
            logger.debug("Ditto response matches no device request", metadata: ["mqtt.topic": "\(topic)"])
            return
        }
        let contentType = envelope.headers.contentType
        let payload: MessagePayload
        if envelope.topic.criterion == .errors {
            payload = .json(envelope.value ?? .null)
        } else {
            payload = MessagePayload.from(envelopeValue: envelope.value, contentType: contentType)
        }
        await answerDevice(request, status: envelope.status ?? 200, payload: payload, headers: envelope.headers)
        metrics.increment("uplink.request.answered")
    }

    // MARK: answers

    /// A Ditto error response to a request that cannot be served, when its sender waits for one.
    func answerDitto(_ request: Envelope, error: DittoError, replyAddress: String?) async {
        guard request.headers.responseRequired ?? true, let replyAddress, request.topic.thingID != nil,
              request.headers.correlationID != nil
        else { return }
        let response = Envelope.errorResponse(to: request, error: error)
        do {
            try await publishToDitto(response, topic: replyAddress)
            metrics.increment("ditto.error-response")
        } catch {
            logger.error("publishing an error response failed", metadata: ["ditto.topic": "\(request.topic)", "error": "\(error)"])
        }
    }

    /// Input that is not valid Ditto Protocol: answered when it names a thing, a correlation id and a reply
    /// address, since then somebody is waiting.
    private func answerUndecodable(_ message: MQTTPublication, error: DittoError) async {
        guard case .object(let object)? = try? JSON.parse(message.payload),
              case .string(let topicText)? = object["topic"], object["status"] == nil
        else { return }
        var headers = DittoHeaders()
        if case .object(let headerObject)? = object["headers"] { headers = DittoHeaders(json: headerObject) }
        guard headers.responseRequired ?? true, let correlationID = headers.correlationID else { return }
        let thingID = (try? TopicPath(parsing: topicText))?.thingID
        guard let replyAddress = message.properties.responseTopic ?? headers.replyTo
            ?? thingID.flatMap({ try? DittoPublication.render(configuration.ditto.publishTopic, for: $0) })
        else { return }
        var responseHeaders = DittoHeaders()
        responseHeaders.correlationID = correlationID
        let response = Envelope.errorResponse(thingID: thingID, channel: .live, error: error, headers: responseHeaders)
        do {
            try await publishToDitto(response, topic: replyAddress)
            metrics.increment("ditto.error-response")
        } catch {
            logger.error("publishing an error response failed", metadata: ["mqtt.topic": "\(message.topic)", "error": "\(error)"])
        }
    }

    private func acknowledge(_ request: Envelope, label: String, status: Int, replyAddress: String?) async {
        guard let thingID = request.topic.thingID, let replyAddress else { return }
        do {
            var headers = DittoHeaders()
            headers.correlationID = request.headers.correlationID
            let ack = try Envelope.acknowledgement(thingID: thingID, channel: .live, label: label, status: status,
                                                   headers: headers)
            try await publishToDitto(ack, topic: replyAddress)
            metrics.increment("ack.issued")
        } catch {
            metrics.increment("ack.failed")
            logger.error("issuing an acknowledgement failed", metadata: ["ack.label": "\(label)", "error": "\(error)"])
        }
    }

    /// Sends Ditto's answer (or the bridge's own error) to the device that asked.
    private func answerDevice(_ request: DeviceRequest, status: Int, payload: MessagePayload, headers: DittoHeaders) async {
        do {
            let answer = try request.answer(status: status, payload: payload, headers: headers,
                                            mapper: HeaderMapper(policy: configuration.headers))
            _ = try await deviceClient.publish(to: answer.topic, payload: answer.payload, qos: .atLeastOnce, retain: false,
                                               properties: PublishProperties(answer.properties))
        } catch {
            metrics.increment("uplink.request.reply-failed")
            logger.error("answering the device failed", metadata: ["thing.id": "\(request.thingID)", "error": "\(error)"])
        }
    }

    // MARK: expiry

    private func sweepExpired() async {
        while !Task.isCancelled {
            let next = state.nextDeadline.map { $0 - .now } ?? .milliseconds(100)
            try? await Task.sleep(for: min(max(next, .milliseconds(5)), .milliseconds(100)))
            let expired = state.expire(now: .now)
            for pending in expired.downlink {
                metrics.increment("downlink.timeout")
                logger.info("device did not answer in time", metadata: [
                    "thing.id": "\(pending.route.thingID)", "correlation-id": "\(pending.request.headers.correlationID ?? "")",
                ])
                if pending.responseRequired {
                    await answerDitto(pending.request, error: BridgeErrors.deviceTimeout(pending.route.timeout),
                                      replyAddress: pending.replyAddress)
                }
                if let label = pending.answeredAck {
                    await acknowledge(pending.request, label: label, status: 408, replyAddress: pending.replyAddress)
                }
            }
            for request in expired.uplink {
                metrics.increment("uplink.request.timeout")
                await answerDevice(request, status: 408, payload: .json(BridgeErrors.deviceTimeout(request.timeout).errorValue),
                                   headers: DittoHeaders())
            }
        }
    }

    // MARK: publishing

    private func publishToDitto(_ envelope: Envelope, topic: String) async throws {
        _ = try await dittoClient.publish(
            to: topic, payload: envelope.encoded(), qos: Mosquitto.QoS(configuration.ditto.qos),
            retain: false, properties: PublishProperties(DittoPublication.properties(for: envelope)))
    }
}
