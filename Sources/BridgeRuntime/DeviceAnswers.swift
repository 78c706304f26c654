import BridgeConfig
import BridgeMapping
import BridgeOperations
import CoreMetrics
import DittoProtocol
import Logging
import MQTT
import Mosquitto

/// Device answers to Ditto's requests: recognised on the reply topics of the rules in force or of rules a reload
/// replaced, matched to the request waiting for them, and sent to Ditto as its response.
extension DownlinkPipeline {
    /// Every rule whose reply topic `topic` is (kept per topic by the uplink).
    func replyTopicMatches(_ topic: String) -> [DownlinkMapper.ReplyTopicMatch] {
        mapper.replyTopicMatches(topic)
    }

    /// Takes a device message that answers a request (on one of `matches`, or on a reply topic of replaced
    /// rules); false: it is no answer.
    func takeReply(_ publication: MQTTMessage, matches: [DownlinkMapper.ReplyTopicMatch]) -> Bool {
        if !matches.isEmpty, let reply = mapper.reply(from: publication, matches: matches) {
            handleDeviceReply(reply, topic: publication.topic)
            return true
        }
        if !retired.isEmpty, let reply = retiredReply(publication) {
            handleDeviceReply(reply, topic: publication.topic)
            return true
        }
        return false
    }

    private func handleDeviceReply(_ reply: DeviceReply, topic: String) {
        // The answer belongs to the request with this correlation id whose device answers on this topic.
        let match = byCorrelation.first(for: reply.correlationID) { thing in
            let key = PendingKey(thing: thing, correlationID: reply.correlationID)
            return self.pending[key].map { $0.mapper.isAnswer(reply, on: topic, to: $0.route) } ?? false
        }.map { PendingKey(thing: $0, correlationID: reply.correlationID) }
        let arrival = MQTTEventLoop.monotonicNanoseconds()
        guard let key = match, let waiting = remove(key) else {
            context.metrics.increment("reply.unmatched")
            // With a shared group, the other instances' answers reach this one too.
            let shared = context.configuration.connections.device.sharedSubscriptionGroup != nil
            context.logger.log(level: shared ? .debug : .warning, "device answer matches no pending request of this device",
                               metadata: ["mqtt.topic": "\(topic)", "correlation-id": "\(reply.correlationID)"])
            return
        }
        let response: Envelope
        do {
            response = try waiting.mapper.response(to: waiting.request, route: waiting.route, reply: reply)
        } catch {
            context.metrics.increment("reply.dropped.\(error.kind.rawValue)")
            context.logger.warning("device answer cannot be mapped", metadata: [
                "mqtt.topic": "\(topic)", "reason": "\(error.reason)",
            ])
            context.answerDitto(waiting.request, error: error.dittoError, replyAddress: waiting.replyAddress)
            if let label = waiting.answeredAck {
                context.acknowledge(waiting.request, label: label, status: error.dittoError.status,
                                    replyAddress: waiting.replyAddress)
            }
            return
        }
        context.gauges.mappingReply.recordNanoseconds(MQTTEventLoop.monotonicNanoseconds() - arrival)
        if waiting.responseRequired {
            context.publishToDitto(response, topic: waiting.replyAddress)
            context.metrics.published(.reply, rule: waiting.route.ruleName)
        }
        context.gauges.roundTrip.recordNanoseconds(Int64((ContinuousClock.now - waiting.arrival) / .nanoseconds(1)))
        if let label = waiting.answeredAck {
            context.acknowledge(waiting.request, label: label, status: response.status ?? 200, replyAddress: waiting.replyAddress)
        }
    }

    @discardableResult
    func remove(_ key: PendingKey) -> PendingDownlink? {
        guard let waiting = pending.remove(key) else { return nil }
        forgetCorrelation(key)
        return waiting
    }

    func forgetCorrelation(_ key: PendingKey) {
        byCorrelation.remove(key.thing, for: key.correlationID)
        if !retired.isEmpty { releaseRetired(key) }
    }

    /// A device answer on a reply topic only the rules before a reload had (newest rules first).
    private func retiredReply(_ publication: MQTTMessage) -> DeviceReply? {
        for replaced in retired.reversed() {
            let matches = replaced.mapper.replyTopicMatches(publication.topic)
            if !matches.isEmpty, let reply = replaced.mapper.reply(from: publication, matches: matches) { return reply }
        }
        return nil
    }

    /// The request `key` no longer waits: rules no request waits on any more are dropped, and their reply topics
    /// that neither the rules in force nor other replaced rules still need are unsubscribed.
    private func releaseRetired(_ key: PendingKey) {
        for index in retired.indices { retired[index].waiting.remove(key) }
        let released = retired.filter(\.waiting.isEmpty)
        guard !released.isEmpty else { return }
        retired.removeAll { $0.waiting.isEmpty }
        let needed = retainedReplyFilters.union(BridgeService.deviceSubscriptions(context.configuration).map(\.filter))
        let filters = Array(Set(released.flatMap(\.mapper.replyFilters)).subtracting(needed)).sorted()
        guard !filters.isEmpty else { return }
        let logger = context.logger
        logger.info("reply topics of replaced rules released: no request sent with them waits any more", metadata: [
            "mqtt.side": "device", "mqtt.filters": "\(filters)",
        ])
        let client = context.deviceClient
        Task {
            do {
                try await client.unsubscribe(filters)
            } catch {
                logger.error("unsubscribing released reply topics failed", metadata: [
                    "mqtt.side": "device", "mqtt.filters": "\(filters)", "error": "\(error)",
                ])
            }
        }
    }
}
