import BridgeConfig
import BridgeMapping
import DittoProtocol
import Logging
import MQTT
import Mosquitto

/// What every part of the data plane reads: the configuration in force, both sides, the log and the metrics; and
/// the answers any part may send (errors and acknowledgements to Ditto, answers to devices).
///
/// Loop thread only, like the parts: it is reached through the ``DataPlane`` a ``LoopBound`` holds.
final class PlaneContext {
    let loop: MQTTEventLoop
    /// The device side's client (replaced when a reload changes its connection).
    var deviceClient: MosquittoClient
    let ditto: any DittoTransport
    let logger: Logger
    /// `logger` logs at debug level: asked once, not per message (the level is the handler's, read through an
    /// existential copy).
    let logsEachMessage: Bool
    let metrics: BridgeMetrics
    let gauges: BridgeGauges
    /// At most this many requests wait for an answer, per direction.
    let maximumPendingRequests: Int
    /// The bound of the tables of what topics and signals decide.
    let keptTopicLimit: Int
    /// The mapping in force (a reload replaces its mapping parts, not its connections' spool).
    var configuration: BridgeConfiguration
    var headerMapper: HeaderMapper
    /// Event revisions and timestamps, bound to the loop so that the mapping's `@Sendable` callbacks can reach them.
    let stamps: LoopBound<EventStamps>

    /// The device side's token for answers to devices: nothing to do on their acknowledgement but count failures.
    static let deviceAnswerToken: UInt64 = 0

    init(configuration: BridgeConfiguration, loop: MQTTEventLoop, device: MosquittoClient, ditto: any DittoTransport,
         logger: Logger, metrics: BridgeMetrics, maximumPendingRequests: Int, keptTopicLimit: Int, revisionBase: Int64) {
        self.configuration = configuration
        self.loop = loop
        deviceClient = device
        self.ditto = ditto
        self.logger = logger
        logsEachMessage = logger.logLevel <= .debug
        self.metrics = metrics
        gauges = BridgeGauges(metrics: metrics)
        self.maximumPendingRequests = maximumPendingRequests
        self.keptTopicLimit = max(1, keptTopicLimit)
        headerMapper = HeaderMapper(policy: configuration.headers)
        stamps = LoopBound(EventStamps(revisionBase: revisionBase), loop: loop)
    }

    /// The device client's loop-thread interface.
    var device: MosquittoClient.LoopView { deviceClient.onLoop }

    func timestamp() -> String { stamps.value.timestamp() }

    /// Puts `value` into a table of what topics or signals decide (``KeptDecisions``: at most `keptTopicLimit`
    /// entries, the ones not used lately make room), counting each eviction as `evicted`.
    func keep<Keys, Value>(_ value: Value, for key: Keys.Key, in table: inout KeptDecisions<Keys, Value>,
                           evicted: String) {
        if table.keep(value, for: key) { metrics.increment(evicted) }
    }

    // MARK: answers

    /// A Ditto error response to a request that cannot be served, when its sender waits for one.
    func answerDitto(_ request: Envelope, error: DittoError, replyAddress: String?) {
        guard request.headers.responseRequired ?? true, let replyAddress, request.topic.thingID != nil,
              request.headers.correlationID != nil
        else { return }
        guard let response = Envelope.errorResponseWithinLimits(to: request, error: error) else {
            metrics.increment("ditto.error-response.too-large")
            logger.warning("no error response possible: the request's correlation-id alone exceeds Ditto's header limit",
                           metadata: ["ditto.topic": "\(request.topic)"])
            return
        }
        publishToDitto(response, topic: replyAddress)
        metrics.increment("ditto.error-response")
    }

    /// Input that is not valid Ditto Protocol: answered when it names a thing, a correlation id and a reply
    /// address, since then somebody is waiting.
    func answerUndecodable(_ delivery: DittoDelivery, error: DittoError) {
        guard case .object(let object)? = try? JSON.parse(delivery.payload),
              case .string(let topicText)? = object["topic"], object["status"] == nil
        else { return }
        var headers = DittoHeaders()
        if case .object(let headerObject)? = object["headers"] { headers = DittoHeaders(json: headerObject) }
        guard headers.responseRequired ?? true, let correlationID = headers.correlationID else { return }
        let thingID = (try? TopicPath(parsing: topicText))?.thingID
        guard let replyAddress = delivery.replyAddress ?? headers.replyTo
            ?? thingID.flatMap({ try? DittoPublication.render(configuration.ditto.publishTopic, for: $0) })
        else { return }
        var responseHeaders = DittoHeaders()
        responseHeaders.correlationID = correlationID
        publishToDitto(Envelope.errorResponse(thingID: thingID, channel: .live, error: error, headers: responseHeaders),
                       topic: replyAddress)
        metrics.increment("ditto.error-response")
    }

    func acknowledge(_ request: Envelope, label: String, status: Int, replyAddress: String?) {
        guard let thingID = request.topic.thingID, let replyAddress else { return }
        do {
            var headers = DittoHeaders()
            headers.correlationID = request.headers.correlationID
            let ack = try Envelope.acknowledgement(thingID: thingID, channel: .live, label: label, status: status,
                                                   headers: headers)
            publishToDitto(ack, topic: replyAddress)
            metrics.acknowledged(label: label)
        } catch {
            metrics.increment("ack.failed")
            logger.error("issuing an acknowledgement failed", metadata: ["ack.label": "\(label)", "error": "\(error)"])
        }
    }

    /// Sends Ditto's answer (or the bridge's own error) to the device that asked.
    func answerDevice(_ request: DeviceRequest, status: Int, payload: MessagePayload, headers: DittoHeaders) {
        do {
            publishToDevice(try request.answer(status: status, payload: payload, headers: headers, mapper: headerMapper))
        } catch {
            metrics.increment("uplink.request.reply-failed")
            logger.error("answering the device failed", metadata: ["thing-id": "\(request.thingID)", "error": "\(error)"])
        }
    }

    func publishToDevice(_ answer: MQTTMessage) {
        if let error = device.publishNow(to: answer.topic, payload: answer.payload, qos: .atLeastOnce,
                                         properties: answer.properties, token: Self.deviceAnswerToken) {
            metrics.increment("uplink.request.reply-failed")
            logger.error("answering the device failed", metadata: ["mqtt.topic": "\(answer.topic)", "error": "\(error)"])
        }
    }

    func publishToDitto(_ envelope: Envelope, topic: String) {
        if let outcome = ditto.publish(envelope.encoded(), to: topic,
                                       properties: DittoPublication.properties(for: envelope),
                                       token: .answer) {
            metrics.increment("ditto.publish-failed")
            logger.error("publishing to Ditto failed", metadata: ["ditto.topic": "\(envelope.topic)", "error": "\(outcome)"])
        }
    }
}

/// Live event revisions per thing and event timestamps. Loop thread only (through ``PlaneContext/stamps``).
final class EventStamps {
    /// The things of the kept topics, with their revisions.
    private(set) var things: KeptThings
    /// The thing last named by ``thing(at:)`` or ``thingPosition(of:)``: the one whose message is being mapped.
    private var current: Int?
    private var timestampCache: (millisecond: Int64, text: String) = (-1, "")

    init(revisionBase: Int64) {
        things = KeptThings(revisionBase: revisionBase)
    }

    /// The position of `thingID` in ``things``, added if new.
    func thingPosition(of thingID: ThingID) -> Int {
        let position = things.position(of: thingID)
        current = position
        return position
    }

    func thing(at position: Int) -> ThingID {
        current = position
        return things[position]
    }

    func nextRevision(for thingID: ThingID) -> Int64 {
        // Mostly the thing just looked up for the message: compared, not hashed.
        let position = if let current, things[current] == thingID { current } else { thingPosition(of: thingID) }
        return things.nextRevision(at: position)
    }

    /// ISO 8601 with milliseconds; formatted once per millisecond.
    func timestamp() -> String {
        let now = Spool.nowMillis()
        if timestampCache.millisecond != now {
            timestampCache = (now, UplinkEnvironment.isoTimestamp(millisecondsSince1970: now))
        }
        return timestampCache.text
    }
}
