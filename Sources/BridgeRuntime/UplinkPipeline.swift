import BridgeConfig
import BridgeMapping
import BridgeOperations
import CoreMetrics
import DittoProtocol
import Logging
import MQTT
import Mosquitto

/// Device messages to Ditto: what each device topic decides (kept per topic), the mapping, the device requests
/// that wait for Ditto's answer, and the books per message between being taken and Ditto's side having it
/// (`messages_total{rule}`, bridge latency). Loop thread only.
///
/// A device message is read, matched, mapped and taken by the ``SpoolPump`` inside the device client's read, with no
/// thread hop. Status topics go to ``Presence``, device answers to Ditto's requests to the ``DownlinkPipeline``.
final class UplinkPipeline {
    private let context: PlaneContext
    private let pump: SpoolPump
    private let downlink: DownlinkPipeline
    private let presence: Presence
    private var mapper: UplinkMapper
    /// What each device topic decides (the downlink rules it is a reply topic of, with their captures; the uplink
    /// rule, thing, path, Ditto-side topic or no rule), so that a message costs a lookup instead of rule matches
    /// and template renders. Not for status topics, nor for topics whose values make no valid thing ID. At most
    /// ``PlaneContext/keptTopicLimit`` topics, the ones not used lately evicted first (``KeptDecisions``); emptied
    /// when the mapping is reloaded.
    private var topics: KeptTopics<KeptTopic>

    /// Device requests waiting for Ditto's answer.
    private var pending: PendingTable<PendingKey, PendingUplink>
    private var expiry = ExpiryTimer()
    /// Device requests among the uplink publishes in flight, by token.
    private var requestTokens: [UplinkToken: PendingKey] = [:]
    /// Rule and arrival of uplink messages not yet acknowledged by Ditto's side, by token; bounded by
    /// ``SpoolPump/trackLimit`` (beyond it, during a long outage, messages are counted with an empty rule and no
    /// latency).
    private var tracks: [UplinkToken: UplinkTrack] = [:]
    /// Made once: the mapper calls back for revisions, timestamps and correlation ids on every message.
    private let environment: UplinkEnvironment

    init(context: PlaneContext, pump: SpoolPump, downlink: DownlinkPipeline, presence: Presence) {
        self.context = context
        self.pump = pump
        self.downlink = downlink
        self.presence = presence
        topics = KeptTopics(limit: context.keptTopicLimit)
        mapper = UplinkMapper(configuration: context.configuration)
        pending = PendingTable(capacity: context.maximumPendingRequests)
        let stamps = context.stamps
        environment = UplinkEnvironment(
            nextRevision: { stamps.value.nextRevision(for: $0) },
            timestamp: { stamps.value.timestamp() },
            newCorrelationID: { CorrelationID.generate() })
    }

    var pendingCount: Int { pending.count }

    /// A reloaded mapping takes effect for the next message.
    func apply(_ configuration: BridgeConfiguration) {
        mapper = UplinkMapper(configuration: configuration)
        topics.removeAll()
    }

    // MARK: device -> Ditto

    func handleDeviceMessage(_ message: MQTTMessage) {
        let arrival = MQTTEventLoop.monotonicNanoseconds()
        let replyMatches: [DownlinkMapper.ReplyTopicMatch]
        let uplink: DittoPublication.Route?
        if let known = topics.value(forTopic: message.topic) {
            replyMatches = known.replyMatches
            uplink = known.uplink.map { DittoPublication.Route($0, thingID: context.stamps.value.thing(at: Int(known.thing))) }
        } else {
            // The configuration is read here, on a topic's first message, not per message: reading it from the
            // context copies what is read.
            let configuration = context.configuration
            if let status = configuration.deviceStatus, let variables = status.topic.match(message.topic) {
                presence.update(status, variables: variables, payload: message.payload)
                return
            }
            replyMatches = downlink.replyTopicMatches(message.topic)
            do throws(MappingError) {
                uplink = try DittoPublication.route(topic: message.topic, mapper: mapper, ditto: configuration.ditto)
                let thing = uplink.map { context.stamps.value.thingPosition(of: $0.uplink.thingID) } ?? 0
                remember(KeptTopic(replyMatches: replyMatches, uplink: uplink?.parts, thing: UInt32(thing)),
                         topic: message.topic)
            } catch {
                // The topic's values make no route (not kept: reported per message), unless the message is a reply.
                if downlink.takeReply(message, matches: replyMatches) { return }
                return drop(message, error, route: nil)
            }
        }
        // A reply topic may also be an uplink topic: whether a message is a reply depends on the message.
        if downlink.takeReply(message, matches: replyMatches) { return }
        guard let route = uplink else { return drop(message, UplinkMapper.noRule(message.topic), route: nil) }
        let mapped: DittoPublication
        do throws(MappingError) {
            if let encoded = try DittoPublication.encodedUplink(message, route: route, mapper: mapper,
                                                                 environment: environment) {
                send(encoded, from: message.topic, arrival: arrival, request: nil)
                return
            }
            mapped = try DittoPublication.uplink(message, route: route, mapper: mapper, environment: environment)
        } catch {
            return drop(message, error, route: route.uplink)
        }
        var requestKey: PendingKey?
        if let request = mapped.request {
            let key = PendingKey(thing: request.thingID.description, correlationID: request.correlationID)
            let deadline = ContinuousClock.now + request.timeout + .seconds(2)
            let waiting = PendingUplink(request: request, envelope: mapped.envelope, rule: mapped.rule)
            switch pending.insert(waiting, for: key, deadline: deadline) {
            case .inserted:
                requestKey = key
                armExpiry(deadline)
            case .duplicate:
                context.metrics.increment("uplink.dropped.duplicate-request")
                context.logger.warning("device request dropped: its correlation-id is already pending for this thing",
                                       metadata: ["mqtt.topic": "\(message.topic)", "correlation-id": "\(request.correlationID)"])
                return
            case .full:
                context.metrics.increment("uplink.dropped.too-many-requests")
                let error = BridgeErrors.tooManyPendingRequests(context.maximumPendingRequests)
                context.answerDevice(request, status: error.status, payload: .json(error.errorValue), headers: DittoHeaders())
                return
            }
        }
        send(mapped.encoded, from: message.topic, arrival: arrival, request: requestKey)
    }

    private func send(_ encoded: DittoPublication.Encoded, from deviceTopic: String, arrival: Int64, request: PendingKey?) {
        if context.logsEachMessage {
            context.logger.debug("device message mapped", metadata: [
                "mqtt.topic": "\(deviceTopic)", "rule": "\(encoded.rule)", "ditto.mqtt-topic": "\(encoded.topic)",
            ])
        }
        context.gauges.mappingUplink.recordNanoseconds(MQTTEventLoop.monotonicNanoseconds() - arrival)
        let token = pump.take(topic: encoded.topic, payload: encoded.payload, properties: encoded.properties)
        if let request { requestTokens[token] = request }
        remember(UplinkTrack(rule: encoded.rule, arrival: arrival), token: token)
        pump.send()
    }

    private func drop(_ publication: MQTTMessage, _ error: MappingError, route: UplinkRoute?) {
        context.metrics.increment("uplink.dropped.\(error.kind.rawValue)")
        var metadata: Logger.Metadata = [
            "mqtt.topic": "\(publication.topic)", "reason": "\(error.reason)", "drop.kind": "\(error.kind.rawValue)",
        ]
        if let route {
            metadata["rule"] = "\(route.ruleName)"
            metadata["thing-id"] = "\(route.thingID)"
        } else if error.kind != .noRule, let rule = context.configuration.uplinkRule(forTopic: publication.topic) {
            // The topic made no route (an invalid thing ID): the rule that took it by precedence.
            metadata["rule"] = "\(rule.name)"
        }
        if let responseTopic = publication.properties.responseTopic { metadata["mqtt.response-topic"] = "\(responseTopic)" }
        context.logger.warning("device message dropped", metadata: metadata)
        if let answer = mapper.errorAnswer(to: publication, error: error, route: route) {
            context.publishToDevice(answer)
        }
    }

    /// Keeps what a topic decides; at the bound a topic not used lately goes (a fleet with more topics than the
    /// bound costs a rule match per message of the topics that do not fit, nothing else).
    private func remember(_ entry: KeptTopic, topic: String) {
        var topic = topic
        topic.withUTF8 { context.keep(entry, for: $0, in: &topics, evicted: "uplink.topics-evicted") }
    }

    private func remember(_ track: UplinkTrack, token: UplinkToken) {
        let limit = pump.trackLimit
        if tracks.count >= limit, pump.spool != nil {
            // Records the spool dropped (drop-oldest, max-age) are never acknowledged: forget them.
            let acked = pump.ackedThrough
            tracks = tracks.filter { entry in
                if case .spooled(let sequence) = entry.key { sequence > acked } else { true }
            }
        }
        if tracks.count < limit { tracks[token] = track }
    }

    /// The uplink's share of a completion from Ditto's side: counts, latency, and a device request whose message
    /// Ditto's side refused stops waiting.
    func publishCompleted(_ token: UplinkToken, _ outcome: DittoSendOutcome) {
        if token == .answer {
            if case .taken = outcome { return }
            context.metrics.increment("ditto.publish-failed")
            context.logger.error("publishing to Ditto failed", metadata: ["error": "\(outcome)"])
            return
        }
        let request = requestTokens.isEmpty ? nil : requestTokens.removeValue(forKey: token)
        switch outcome {
        case .taken:
            let track = tracks.removeValue(forKey: token)
            context.metrics.published(.uplink, rule: track?.rule ?? "")
            if let track {
                context.gauges.latencyUplink.recordNanoseconds(MQTTEventLoop.monotonicNanoseconds() - track.arrival)
            }
        case .unconfirmed:
            // Sent again later (spool, or the memory queue after a client replacement); a stop counts what is left
            // once (``DataPlane/countUnsentAtStop()``).
            break
        case .refused(let error):
            context.metrics.increment("uplink.publish-failed")
            tracks[token] = nil
            context.logger.error("Ditto's broker refused an uplink message; dropped", metadata: ["error": "\(error)"])
            if let request { pending.remove(request) }
        }
    }

    // MARK: Ditto's answers to device requests

    /// A Ditto answer to a request a device made.
    func handleDittoResponse(_ envelope: Envelope, source: String) {
        // Acks answer nothing a device asked; a message response or an error for the same thing and
        // correlation id that answers the request by Ditto's rules completes it.
        guard envelope.topic.criterion != .acks, let correlationID = envelope.headers.correlationID,
              let thingID = envelope.topic.thingID
        else { return unmatched(source) }
        let key = PendingKey(thing: thingID.description, correlationID: correlationID)
        guard let waiting = pending[key], envelope.answers(waiting.envelope) else { return unmatched(source) }
        pending.remove(key)
        let payload: MessagePayload = envelope.topic.criterion == .errors
            ? .json(envelope.value ?? .null)
            : MessagePayload.from(envelopeValue: envelope.value, contentType: envelope.headers.contentType)
        context.answerDevice(waiting.request, status: envelope.status ?? 200, payload: payload, headers: envelope.headers)
        context.metrics.published(.reply, rule: waiting.rule, as: "uplink.request.answered")
    }

    private func unmatched(_ source: String) {
        context.metrics.increment("ditto.response.unmatched")
        context.logger.debug("Ditto response matches no device request", metadata: ["mqtt.topic": "\(source)"])
    }

    private func expire() {
        for entry in pending.expire(now: .now) {
            context.metrics.increment("uplink.request.timeout")
            context.answerDevice(entry.value.request, status: 408,
                                 payload: .json(BridgeErrors.deviceTimeout(entry.value.request.timeout).errorValue),
                                 headers: DittoHeaders())
        }
        if let next = pending.nextDeadline { armExpiry(next) }
    }

    private func armExpiry(_ deadline: ContinuousClock.Instant) {
        expiry.arm(deadline, on: context.loop) { [unowned self] in
            expiry.fired()
            expire()
        }
    }
}

/// What a device topic decides, kept per topic by the hundred thousand: the route in place but its thing, which
/// is kept once per thing (``KeptThings``); no object of its own per topic.
struct KeptTopic {
    /// The downlink rules whose reply topic this is (empty: no reply topic).
    var replyMatches: [DownlinkMapper.ReplyTopicMatch]
    /// The uplink route without its thing; nil when no uplink rule takes the topic. (A topic whose values make no
    /// route, an invalid thing ID, is not kept.)
    var uplink: DittoPublication.Route.Parts?
    /// The route's thing in ``EventStamps/things`` (0 without a route).
    var thing: UInt32
}

/// A device's request waiting for Ditto's answer.
struct PendingUplink: Sendable {
    var request: DeviceRequest
    var envelope: Envelope
    /// The uplink rule that mapped the request (`messages_total`'s `rule` of the answer).
    var rule: String
}

/// An uplink message between being taken and Ditto's acknowledgement, for `messages_total{rule}` and the
/// bridge-latency histogram.
struct UplinkTrack {
    var rule: String
    /// ``MQTTEventLoop/monotonicNanoseconds()`` when the device message was read.
    var arrival: Int64
}
