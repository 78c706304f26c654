import BridgeConfig
import BridgeMapping
import BridgeOperations
import CoreMetrics
import DequeModule
import DittoProtocol
import Logging
import MQTT
import Mosquitto

/// Ditto's requests to devices and the devices' answers back: routing (kept per signal), the requests waiting
/// for an answer, the rules a reload replaced while requests sent with them wait, and the backlog towards the
/// device broker. Loop thread only.
///
/// A request is decoded, routed, mapped and written to the device socket inside the Ditto side's read; the device
/// broker's acknowledgement issues the `delivered` ack, the device's answer (recognised on a reply topic while the
/// ``UplinkPipeline`` reads device messages) becomes Ditto's response.
final class DownlinkPipeline {
    let context: PlaneContext
    private let presence: Presence
    private(set) var mapper: DownlinkMapper
    /// The downlink rule each Ditto signal (topic and path) goes to, so a request costs a lookup instead of a
    /// path parse and rule matches; emptied when the mapping is reloaded. Bounded by the uplink's topic limit but
    /// at most ``keptSignalLimit``: a target holds its own captures and rule values (nothing is shared between
    /// signals as it is between a rule's topics), so the uplink's large bound would let it grow far bigger.
    private var targets: KeptDecisions<HashedKeys<DownlinkSignal>, DownlinkTarget>
    /// The signal table's own bound (the bound both tables had before a kept topic became small).
    static let keptSignalLimit = 16_384
    var pending: PendingTable<PendingKey, PendingDownlink>
    private var expiry = ExpiryTimer()
    /// Things with a pending request per correlation id, to find a device's answer.
    var byCorrelation = ThingsByCorrelation()
    /// Downlink rules a reload replaced while requests sent with them waited, newest last: a device's answer on
    /// one of their reply topics is still read, and the topic stays subscribed, until those requests are answered
    /// or time out (a reload must not cut the answer path of a request sent before it).
    var retired: [RetiredDownlink] = []
    private var backlog = Deque<DownlinkSend>()
    private var deviceSends: [UInt64: DownlinkSend] = [:]
    /// Device-side tokens of requests; ``PlaneContext/deviceAnswerToken`` is below them.
    private var nextDeviceToken: UInt64 = PlaneContext.deviceAnswerToken + 1

    init(context: PlaneContext, presence: Presence) {
        self.context = context
        self.presence = presence
        targets = KeptDecisions(limit: min(context.keptTopicLimit, Self.keptSignalLimit))
        mapper = DownlinkMapper(configuration: context.configuration)
        pending = PendingTable(capacity: context.maximumPendingRequests)
    }

    var pendingCount: Int { pending.count }

    /// A reloaded mapping takes effect for the next request; requests already pending keep the rules they were
    /// sent with.
    func apply(_ configuration: BridgeConfiguration) {
        let waiting = byCorrelation.keys
        if !waiting.isEmpty { retired.append(RetiredDownlink(mapper: mapper, waiting: waiting)) }
        mapper = DownlinkMapper(configuration: configuration)
        targets.removeAll()
    }

    /// Reply filters of replaced rules that requests still wait on: a reload keeps them subscribed.
    var retainedReplyFilters: Set<String> { Set(retired.flatMap(\.mapper.replyFilters)) }

    // MARK: Ditto -> device

    func handleDittoRequest(_ envelope: Envelope, replyAddress: String?, source: String, arrival: Int64) {
        let route: DownlinkRoute
        do {
            route = try self.route(envelope)
        } catch {
            context.metrics.increment("downlink.dropped.\(error.kind.rawValue)")
            context.logger.warning("Ditto request not routed", metadata: [
                "mqtt.topic": "\(source)", "ditto.topic": "\(envelope.topic)", "reason": "\(error.reason)",
            ])
            context.answerDitto(envelope, error: error.dittoError, replyAddress: replyAddress)
            return
        }
        if !context.device.isConnected {
            context.metrics.increment("downlink.dropped.device-broker-down")
            context.answerDitto(envelope, error: BridgeErrors.deviceBrokerUnavailable(), replyAddress: replyAddress)
            return
        }
        if presence.isOffline(route.variables) {
            context.metrics.increment("downlink.dropped.device-offline")
            context.answerDitto(envelope, error: BridgeErrors.deviceOffline(route.thingID), replyAddress: replyAddress)
            return
        }
        let acks = context.configuration.acks
        let requested = Set(envelope.headers.requestedAcks ?? [])
        let answeredAck = acks.answered.flatMap { requested.contains($0) ? $0 : nil }
        let deliveredAck = acks.delivered.flatMap { requested.contains($0) ? $0 : nil }
        let correlationID = envelope.headers.correlationID ?? ""
        let waits = route.expectsReply && (route.responseRequired || answeredAck != nil) && !correlationID.isEmpty
        let deadline = ContinuousClock.now + route.timeout - min(.milliseconds(500), route.timeout / 10)
        var pendingKey: PendingKey?
        if waits {
            let key = PendingKey(thing: route.thingID.description, correlationID: correlationID)
            let waiting = PendingDownlink(request: envelope, route: route, replyAddress: replyAddress ?? "",
                                          responseRequired: route.responseRequired && replyAddress != nil,
                                          answeredAck: answeredAck, mapper: mapper)
            switch pending.insert(waiting, for: key, deadline: deadline) {
            case .inserted:
                pendingKey = key
                byCorrelation.insert(key.thing, for: correlationID)
                armExpiry(deadline)
            case .duplicate:
                context.metrics.increment("downlink.dropped.duplicate")
                context.logger.info("redelivered request still pending, not sent twice", metadata: [
                    "mqtt.topic": "\(source)", "correlation-id": "\(correlationID)",
                ])
                return
            case .full:
                context.metrics.increment("downlink.dropped.too-many-requests")
                context.answerDitto(envelope, error: BridgeErrors.tooManyPendingRequests(context.maximumPendingRequests),
                                    replyAddress: replyAddress)
                return
            }
        }
        let left = deadline - ContinuousClock.now
        let expiry = UInt32(max(1, (left.components.seconds + (left.components.attoseconds > 0 ? 1 : 0))))
        let publication: MQTTMessage
        do {
            // The device gets a response topic only when somebody waits for its answer.
            var publishedRoute = route
            publishedRoute.responseRequired = waits
            publication = try mapper.devicePublication(for: envelope, route: publishedRoute, messageExpiry: expiry)
        } catch {
            if let pendingKey { remove(pendingKey) }
            context.metrics.increment("downlink.dropped.\(error.kind.rawValue)")
            context.logger.warning("Ditto request cannot be mapped", metadata: [
                "mqtt.topic": "\(source)", "reason": "\(error.reason)",
            ])
            context.answerDitto(envelope, error: error.dittoError, replyAddress: replyAddress)
            return
        }
        let send = DownlinkSend(envelope: envelope, route: route, replyAddress: replyAddress, deliveredAck: deliveredAck,
                                pendingKey: pendingKey, publication: publication, arrival: arrival)
        context.gauges.mappingDownlink.recordNanoseconds(MQTTEventLoop.monotonicNanoseconds() - arrival)
        if context.device.canPublishNow && backlog.isEmpty {
            sendToDevice(send)
        } else if backlog.count < context.maximumPendingRequests {
            // In order behind the others; the device broker's acknowledgements make room.
            backlog.append(send)
        } else {
            if let pendingKey { remove(pendingKey) }
            context.metrics.increment("downlink.dropped.too-many-requests")
            context.answerDitto(envelope, error: BridgeErrors.tooManyPendingRequests(context.maximumPendingRequests),
                                replyAddress: replyAddress)
        }
    }

    /// ``DownlinkMapper/route(_:)`` with the signal's target kept.
    private func route(_ envelope: Envelope) throws(MappingError) -> DownlinkRoute {
        try mapper.checkRoutable(envelope)
        let signal = DownlinkSignal(envelope)
        if let target = targets.value(for: signal) { return mapper.route(envelope, to: target) }
        let target = try mapper.target(envelope)
        context.keep(target, for: signal, in: &targets, evicted: "downlink.signals-evicted")
        return mapper.route(envelope, to: target)
    }

    private func sendToDevice(_ send: DownlinkSend) {
        let token = nextDeviceToken
        nextDeviceToken += 1
        deviceSends[token] = send
        let publication = send.publication
        if let error = context.device.publishNow(to: publication.topic, payload: publication.payload,
                                                 qos: publication.qos,
                                                 properties: publication.properties, token: token) {
            deviceSendCompleted(token, .failure(error))
        } else {
            context.logger.debug("Ditto request sent to device", metadata: [
                "ditto.topic": "\(send.envelope.topic)", "device.topic": "\(publication.topic)", "rule": "\(send.route.ruleName)",
            ])
        }
    }

    /// Sends what waits for the device broker, while it takes more.
    func drainBacklog() {
        while context.device.canPublishNow, let next = backlog.popFirst() {
            if !context.device.isConnected {
                fail(next, BridgeErrors.deviceBrokerUnavailable(), ackStatus: 503)
                continue
            }
            sendToDevice(next)
        }
    }

    func deviceSendCompleted(_ token: UInt64, _ result: Result<PublishAck, MQTTError>) {
        guard token != PlaneContext.deviceAnswerToken else {
            if case .failure(let error) = result {
                context.metrics.increment("uplink.request.reply-failed")
                context.logger.error("answering the device failed", metadata: ["error": "\(error)"])
            }
            return
        }
        guard let send = deviceSends.removeValue(forKey: token) else { return }
        switch result {
        case .success:
            context.metrics.published(.downlink, rule: send.route.ruleName)
            context.gauges.latencyDownlink.recordNanoseconds(MQTTEventLoop.monotonicNanoseconds() - send.arrival)
            if let label = send.deliveredAck {
                context.acknowledge(send.envelope, label: label, status: 200, replyAddress: send.replyAddress)
            }
            if !send.route.expectsReply, send.route.responseRequired, let replyAddress = send.replyAddress {
                // Fire-and-forget rules answer for the device once its broker took the request.
                let response: Envelope = switch send.route.kind {
                case .message: Envelope.messageResponse(to: send.envelope, status: 202, payload: nil)
                case .command(let action, _): Envelope.commandResponse(to: send.envelope, status: action == .create ? 201 : 204)
                }
                context.publishToDitto(response, topic: replyAddress)
            }
        case .failure(let error):
            context.metrics.increment("downlink.publish-failed")
            context.logger.error("publishing to the device failed", metadata: [
                "device.topic": "\(send.publication.topic)", "error": "\(error)",
            ])
            fail(send, BridgeErrors.deliveryFailed("\(error)"), ackStatus: 503)
        }
    }

    private func fail(_ send: DownlinkSend, _ error: DittoError, ackStatus: Int) {
        if let key = send.pendingKey { remove(key) }
        context.answerDitto(send.envelope, error: error, replyAddress: send.replyAddress)
        if let label = send.deliveredAck {
            context.acknowledge(send.envelope, label: label, status: ackStatus, replyAddress: send.replyAddress)
        }
    }

    // MARK: expiry and stop

    private func armExpiry(_ deadline: ContinuousClock.Instant) {
        expiry.arm(deadline, on: context.loop) { [unowned self] in
            expiry.fired()
            expire()
        }
    }

    private func expire() {
        for entry in pending.expire(now: .now) {
            forgetCorrelation(entry.key)
            let waiting = entry.value
            context.metrics.increment("downlink.timeout")
            context.logger.info("device did not answer in time", metadata: [
                "thing-id": "\(waiting.route.thingID)", "correlation-id": "\(waiting.request.headers.correlationID ?? "")",
            ])
            if waiting.responseRequired {
                context.answerDitto(waiting.request, error: BridgeErrors.deviceTimeout(waiting.route.timeout),
                                    replyAddress: waiting.replyAddress)
            }
            if let label = waiting.answeredAck {
                context.acknowledge(waiting.request, label: label, status: 408, replyAddress: waiting.replyAddress)
            }
        }
        if let next = pending.nextDeadline { armExpiry(next) }
    }

    /// Graceful stop: requesters still waiting get an answer now instead of a timeout later.
    func answerPendingForShutdown() {
        for entry in pending.removeAll() where entry.value.responseRequired {
            context.answerDitto(entry.value.request, error: BridgeErrors.shuttingDown(), replyAddress: entry.value.replyAddress)
        }
        byCorrelation.removeAll()
        retired.removeAll()
        while let send = backlog.popFirst() {
            context.answerDitto(send.envelope, error: BridgeErrors.shuttingDown(), replyAddress: send.replyAddress)
        }
    }
}
