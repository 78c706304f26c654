import BridgeConfig
import BridgeMapping
import DequeModule
import DittoProtocol
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import Logging
import Mosquitto

/// A request waiting for an answer, keyed by who it belongs to: a correlation id is only unique per thing.
struct PendingKey: Hashable, Sendable {
    var thing: String
    var correlationID: String
}

/// A Ditto request on its way to a device, waiting for the device's answer.
///
/// A class: the pending table hands it out for every answer that might be its device's, and a struct of an
/// envelope, a route and the rules was copied whole each time (a retain and a release per string and array).
final class PendingDownlink: Sendable {
    let request: Envelope
    let route: DownlinkRoute
    /// Where the answer goes on the Ditto side.
    let replyAddress: String
    /// Whether Ditto waits for a response (`response-required`).
    let responseRequired: Bool
    /// The requested ack label this bridge issues when the device answers.
    let answeredAck: String?
    /// The rules the request was sent with: its answer is read with them even after a reload.
    let mapper: DownlinkMapper
    /// When the request reached the bridge (round-trip histogram).
    let arrival = ContinuousClock.now

    init(request: Envelope, route: DownlinkRoute, replyAddress: String, responseRequired: Bool, answeredAck: String?,
         mapper: DownlinkMapper) {
        self.request = request
        self.route = route
        self.replyAddress = replyAddress
        self.responseRequired = responseRequired
        self.answeredAck = answeredAck
        self.mapper = mapper
    }
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
    /// ``MonotonicClock/nanoseconds()`` when the device message was read.
    var arrival: Int64
}

/// The monotonic clock as plain nanoseconds: cheaper to read and subtract per message than `ContinuousClock`.
enum MonotonicClock {
    @inline(__always)
    static func nanoseconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Int64(spec.tv_sec) * 1_000_000_000 + Int64(spec.tv_nsec)
    }
}

/// A Ditto request mapped for a device, on its way to the device broker (a class for the same reason as
/// ``PendingDownlink``: it is kept until the device broker acknowledges it, and a copy of a struct retained each part).
final class DownlinkSend {
    let envelope: Envelope
    let route: DownlinkRoute
    let replyAddress: String?
    let deliveredAck: String?
    let pendingKey: PendingKey?
    let publication: MQTTPublication
    /// ``MonotonicClock/nanoseconds()`` when the request was read (bridge-latency histogram).
    let arrival: Int64

    init(envelope: Envelope, route: DownlinkRoute, replyAddress: String?, deliveredAck: String?, pendingKey: PendingKey?,
         publication: MQTTPublication, arrival: Int64) {
        self.envelope = envelope
        self.route = route
        self.replyAddress = replyAddress
        self.deliveredAck = deliveredAck
        self.pendingKey = pendingKey
        self.publication = publication
        self.arrival = arrival
    }
}

/// Everything that happens per message, on one thread: the event loop that drives both MQTT clients.
///
/// A device message is read, matched, mapped, appended to the spool and written to the Ditto-side socket inside
/// the device client's read, with no thread hop; Ditto's acknowledgement moves the spool's cursor. Ditto's
/// requests go to the device socket the same way, and the device's answer back. Back pressure is the loop not
/// reading a socket: the device side's while the spool or the in-flight window is full.
///
/// SAFETY (`@unchecked Sendable`): every mutable property is used only on `loop`'s thread: the clients' handlers
/// run there, and the service hands work in with `loop.execute`/`submit`.
final class DataPlane: @unchecked Sendable {
    let loop: MQTTEventLoop
    private(set) var device: MosquittoClient
    private(set) var ditto: MosquittoClient
    let logger: Logger
    /// `logger` logs at debug level: asked once, not per message (the level is the handler's, read through an
    /// existential copy).
    private let logsEachMessage: Bool
    let metrics: BridgeMetrics
    let maximumPendingRequests: Int
    private(set) var configuration: BridgeConfiguration
    private var uplink: UplinkMapper
    private var downlink: DownlinkMapper
    private var headerMapper: HeaderMapper
    private let spool: Spool?
    private let revisionBase: Int64

    /// Without a spool: mapped messages waiting for room in the Ditto-side window.
    private var memoryQueue = Deque<OutboundRecord>()
    private var memorySequence: UInt64 = 0
    private var memoryInFlight = 0
    /// Without a spool, what is in flight is kept until acknowledged, so that a replaced Ditto-side client
    /// can send it again.
    private var memoryInFlightRecords: [UInt64: OutboundRecord] = [:]
    private var returnedRecords: [OutboundRecord] = []
    /// Device requests among the uplink publishes in flight, by token.
    private var requestTokens: [UInt64: PendingKey] = [:]
    /// Rule and arrival of uplink messages not yet acknowledged by Ditto's broker, by token; bounded by
    /// ``trackLimit`` (beyond it, during a long outage, messages are counted with an empty rule and no latency).
    private var uplinkTracks: [UInt64: UplinkTrack] = [:]
    /// What each device topic decides (the downlink rules it is a reply topic of, with their captures; the uplink
    /// rule, thing, path, Ditto-side topic or no rule), so that a message costs a lookup instead of rule matches
    /// and template renders. Not for status topics, nor for topics whose values make no valid thing ID. At most
    /// `keptTopicLimit` topics, the unused ones evicted first (``KeptDecisions``); emptied when the mapping is reloaded.
    private var topics: KeptDecisions<String, TopicEntry>

    private struct TopicEntry {
        /// The downlink rules whose reply topic this is (empty: no reply topic).
        var replyMatches: [DownlinkMapper.ReplyTopicMatch]
        var uplink: Result<DittoPublication.Route?, MappingError>
    }
    /// The downlink rule each Ditto signal (topic and path) goes to, so a request costs a lookup instead of a
    /// path parse and rule matches; bounded and emptied like ``topics``.
    private var downlinkTargets: KeptDecisions<DownlinkSignal, DownlinkTarget>
    private var downlinkPending: PendingTable<PendingKey, PendingDownlink>
    /// Downlink rules a reload replaced while requests sent with them waited, newest last: a device's answer on
    /// one of their reply topics is still read, and the topic stays subscribed, until those requests are answered
    /// or time out (a reload must not cut the answer path of a request sent before it).
    private var retiredDownlinks: [RetiredDownlink] = []

    private struct RetiredDownlink {
        let mapper: DownlinkMapper
        /// The requests sent with these rules that still wait.
        var waiting: Set<PendingKey>
    }
    /// Things with a pending downlink request per correlation id, to find a device's answer.
    private var downlinkByCorrelation = ThingsByCorrelation()
    private var uplinkPending: PendingTable<PendingKey, PendingUplink>
    private var downlinkBacklog = Deque<DownlinkSend>()
    private var deviceSends: [UInt64: DownlinkSend] = [:]
    private var nextDeviceToken: UInt64 = 1
    private var revisions: [ThingID: Int64] = [:]
    /// Devices (by ``presenceKey(_:_:)``) whose status topic last said offline.
    private var offline: Set<String> = []
    private var expiryTimer: (id: MQTTEventLoop.TimerID, deadline: ContinuousClock.Instant)?
    private var cursorTimerArmed = false
    private var takingDeviceMessages = true
    private var deviceReadingPaused = false
    private var timestampCache: (millisecond: Int64, text: String) = (-1, "")
    private let gauges: BridgeGauges

    /// Without a spool, the memory queue's bound: what it holds was acknowledged to the device broker and dies with
    /// the process, so a crash loses at most this plus the `max-inflight` window (README, Delivery guarantees);
    /// the surplus stays in the device broker's session. With a spool, the backlog the spool may hold while Ditto is
    /// connected (beyond it the device broker holds the surplus, so latency stays bounded under overload).
    private var queueLimit: Int {
        spool == nil ? Self.memoryQueueLimit : max(Self.memoryQueueLimit, 4 * configuration.connections.ditto.maxInflight)
    }
    static let memoryQueueLimit = 1_000
    private var trackLimit: Int { 2 * queueLimit + configuration.connections.ditto.maxInflight }
    /// Tokens of uplink publishes not from the spool carry this bit.
    private static let memoryToken: UInt64 = 1 << 63
    /// Answers, errors and acks to Ditto: nothing to do on their acknowledgement but count failures.
    private static let answerToken: UInt64 = 0

    init(configuration: BridgeConfiguration, loop: MQTTEventLoop, device: MosquittoClient, ditto: MosquittoClient,
         logger: Logger, metrics: BridgeMetrics, maximumPendingRequests: Int, keptTopicLimit: Int = 16_384) throws {
        self.configuration = configuration
        topics = KeptDecisions(limit: keptTopicLimit)
        downlinkTargets = KeptDecisions(limit: keptTopicLimit)
        self.loop = loop
        self.device = device
        self.ditto = ditto
        self.logger = logger
        logsEachMessage = logger.logLevel <= .debug
        self.metrics = metrics
        self.maximumPendingRequests = maximumPendingRequests
        gauges = BridgeGauges(factory: metrics.factory)
        uplink = UplinkMapper(configuration: configuration)
        downlink = DownlinkMapper(configuration: configuration)
        headerMapper = HeaderMapper(policy: configuration.headers)
        downlinkPending = PendingTable(capacity: maximumPendingRequests)
        uplinkPending = PendingTable(capacity: maximumPendingRequests)
        if let settings = configuration.spool {
            spool = try Spool(settings: settings, logger: logger)
        } else {
            spool = nil
        }
        revisionBase = RevisionBase.next(stateDirectory: configuration.spool?.directory, logger: logger)
    }

    /// Loop thread: connects the clients' handlers to this data plane.
    func install() {
        installDevice()
        installDitto()
        if let spool, case .interval(let interval) = spool.settings.fsync { scheduleSync(every: interval) }
        updateDeviceReading()
        sampleGauges()
    }

    /// The gauges of `/metrics`, once a second.
    private func sampleGauges() {
        gauges.requestsPendingDownlink.record(downlinkPending.count)
        gauges.requestsPendingUplink.record(uplinkPending.count)
        gauges.inFlightDevice.record(device.inflightCount)
        gauges.inFlightDitto.record(ditto.inflightCount)
        gauges.upDevice.record(device.isConnected ? 1 : 0)
        gauges.upDitto.record(ditto.isConnected ? 1 : 0)
        gauges.spoolBytes.record(spool?.totalBytes ?? 0)
        gauges.spoolMessages.record(spool?.unacknowledged ?? memoryQueue.count + memoryInFlight)
        gauges.spoolOldestAge.record(spool?.oldestAge ?? 0)
        loop.schedule(at: .now + .seconds(1)) { [weak self] in self?.sampleGauges() }
    }

    private func installDevice() {
        device.setHandlers(
            message: { [unowned self] in handleDeviceMessage($0) },
            publishCompleted: { [unowned self] in deviceSendCompleted($0, $1) },
            capacityAvailable: { [unowned self] in drainDownlinkBacklog() },
            connection: { [unowned self] in deviceConnectionChanged($0) })
    }

    private func installDitto() {
        ditto.setHandlers(
            message: { [unowned self] in handleDittoMessage($0) },
            publishCompleted: { [unowned self] in dittoSendCompleted($0, $1) },
            capacityAvailable: { [unowned self] in pump() })
    }

    // MARK: device -> Ditto

    private func handleDeviceMessage(_ message: MQTTMessage) {
        let arrival = MonotonicClock.nanoseconds()
        let publication = MQTTPublication(message)
        let entry: TopicEntry
        if let known = topics.value(for: message.topic) {
            entry = known
        } else {
            if let status = configuration.deviceStatus, let variables = status.topic.match(message.topic) {
                updatePresence(status, variables: variables, payload: message.payload)
                return
            }
            let uplinkRoute = Result { () throws(MappingError) in
                try DittoPublication.route(topic: message.topic, mapper: uplink, ditto: configuration.ditto)
            }
            entry = TopicEntry(replyMatches: downlink.replyTopicMatches(message.topic), uplink: uplinkRoute)
            if case .success = uplinkRoute { remember(entry, topic: message.topic) }
        }
        // A reply topic may also be an uplink topic: whether a message is a reply depends on the message.
        if !entry.replyMatches.isEmpty, let reply = downlink.reply(from: publication, matches: entry.replyMatches) {
            handleDeviceReply(reply, topic: message.topic)
            return
        }
        if !retiredDownlinks.isEmpty, let reply = retiredReply(publication) {
            handleDeviceReply(reply, topic: message.topic)
            return
        }
        let mapped: DittoPublication
        do throws(MappingError) {
            guard let route = try entry.uplink.get() else { throw UplinkMapper.noRule(message.topic) }
            if let encoded = try DittoPublication.encodedUplink(publication, route: route, mapper: uplink,
                                                                 environment: uplinkEnvironment) {
                sendUplink(encoded, from: message.topic, arrival: arrival, request: nil)
                return
            }
            mapped = try DittoPublication.uplink(publication, route: route, mapper: uplink, environment: uplinkEnvironment)
        } catch {
            dropDeviceMessage(publication, error, route: (try? entry.uplink.get())??.uplink)
            return
        }
        var requestKey: PendingKey?
        if let request = mapped.request {
            let key = PendingKey(thing: request.thingID.description, correlationID: request.correlationID)
            let deadline = ContinuousClock.now + request.timeout + .seconds(2)
            let pending = PendingUplink(request: request, envelope: mapped.envelope, rule: mapped.rule)
            switch uplinkPending.insert(pending, for: key, deadline: deadline) {
            case .inserted:
                requestKey = key
                scheduleExpiry(deadline)
            case .duplicate:
                metrics.increment("uplink.dropped.duplicate-request")
                logger.warning("device request dropped: its correlation-id is already pending for this thing", metadata: [
                    "mqtt.topic": "\(message.topic)", "correlation-id": "\(request.correlationID)",
                ])
                return
            case .full:
                metrics.increment("uplink.dropped.too-many-requests")
                let error = BridgeErrors.tooManyPendingRequests(maximumPendingRequests)
                answerDevice(request, status: error.status, payload: .json(error.errorValue), headers: DittoHeaders())
                return
            }
        }
        sendUplink(mapped.encoded, from: message.topic, arrival: arrival, request: requestKey)
    }

    private func sendUplink(_ encoded: DittoPublication.Encoded, from deviceTopic: String, arrival: Int64,
                            request: PendingKey?) {
        if logsEachMessage {
            logger.debug("device message mapped", metadata: [
                "mqtt.topic": "\(deviceTopic)", "rule": "\(encoded.rule)", "ditto.mqtt-topic": "\(encoded.topic)",
            ])
        }
        let properties = PublishProperties(encoded.properties)
        gauges.mappingUplink.recordNanoseconds(MonotonicClock.nanoseconds() - arrival)
        enqueueUplink(topic: encoded.topic, payload: encoded.payload, properties: properties, request: request,
                      track: UplinkTrack(rule: encoded.rule, arrival: arrival))
    }

    private func dropDeviceMessage(_ publication: MQTTPublication, _ error: MappingError, route: UplinkRoute?) {
        metrics.increment("uplink.dropped.\(error.kind.rawValue)")
        var metadata: Logger.Metadata = [
            "mqtt.topic": "\(publication.topic)", "reason": "\(error.reason)", "drop.kind": "\(error.kind.rawValue)",
        ]
        if let route {
            metadata["rule"] = "\(route.ruleName)"
            metadata["thing-id"] = "\(route.thingID)"
        } else if error.kind != .noRule, let rule = configuration.uplinkRule(forTopic: publication.topic) {
            // The topic made no route (an invalid thing ID): the rule that took it by precedence.
            metadata["rule"] = "\(rule.name)"
        }
        if let responseTopic = publication.properties.responseTopic { metadata["mqtt.response-topic"] = "\(responseTopic)" }
        logger.warning("device message dropped", metadata: metadata)
        if let answer = uplink.errorAnswer(to: publication, error: error, route: route) {
            publishToDevice(answer)
        }
    }

    /// Keeps what a topic decides; at the bound a topic not used lately goes (a fleet with more topics than the
    /// bound costs a rule match per message of the topics that do not fit, nothing else).
    private func remember(_ entry: TopicEntry, topic: String) {
        if topics.keep(entry, for: topic) { metrics.increment("uplink.topics-evicted") }
    }

    /// Made once: the mapper calls back for revisions, timestamps and correlation ids on every message.
    private lazy var uplinkEnvironment: UplinkEnvironment = {
        UplinkEnvironment(
            nextRevision: { [unowned self] in nextRevision(for: $0) },
            timestamp: { [unowned self] in timestamp() },
            newCorrelationID: { CorrelationID.generate() })
    }()

    private func nextRevision(for thingID: ThingID) -> Int64 {
        // Incremented in place in the table: the thing's ID is hashed once per event.
        Self.increment(&revisions[thingID, default: revisionBase])
    }

    private static func increment(_ value: inout Int64) -> Int64 {
        value += 1
        return value
    }

    /// ISO 8601 with milliseconds; formatted once per millisecond.
    private func timestamp() -> String {
        let now = Spool.nowMillis()
        if timestampCache.millisecond != now {
            timestampCache = (now, UplinkEnvironment.isoTimestamp(millisecondsSince1970: now))
        }
        return timestampCache.text
    }

    /// The message counts as taken once this returns: in the spool, or (without one) in the bounded queue.
    private func enqueueUplink(topic: String, payload: [UInt8], properties: PublishProperties, request: PendingKey?,
                               track: UplinkTrack) {
        if let spool {
            do {
                let record = try spool.append(topic: topic, payload: payload, properties: properties)
                if let request { requestTokens[record.sequence] = request }
                remember(track, token: record.sequence)
                if spool.isFull, spool.settings.whenFull == .dropOldest {
                    let dropped = try spool.dropOldestUntilRoom()
                    if dropped > 0 {
                        metrics.increment("uplink.dropped.spool-full", by: dropped)
                        logger.warning("spool full: oldest messages dropped", metadata: ["dropped": "\(dropped)"])
                    }
                }
                armCursorTimer()
            } catch {
                // The disk failed us: keep the message in memory rather than lose it.
                metrics.increment("spool.write-failed")
                logger.error("spool append failed; the message waits in memory", metadata: [
                    "mqtt.topic": "\(topic)", "error": "\(error)",
                ])
                appendToMemory(topic: topic, payload: payload, properties: properties, request: request, track: track)
            }
        } else {
            appendToMemory(topic: topic, payload: payload, properties: properties, request: request, track: track)
        }
        pump()
        updateDeviceReading()
    }

    private func appendToMemory(topic: String, payload: [UInt8], properties: PublishProperties, request: PendingKey?,
                                track: UplinkTrack) {
        memorySequence += 1
        // `created` is for the spool's `max-age`; the memory queue has none, so no clock is read for it.
        memoryQueue.append(OutboundRecord(sequence: memorySequence, created: 0, topic: topic,
                                          payload: payload, properties: properties))
        if let request { requestTokens[Self.memoryToken | memorySequence] = request }
        remember(track, token: Self.memoryToken | memorySequence)
    }

    private func remember(_ track: UplinkTrack, token: UInt64) {
        if uplinkTracks.count >= trackLimit, let spool {
            // Records the spool dropped (drop-oldest, max-age) are never acknowledged: forget them.
            let acked = spool.ackedThrough
            uplinkTracks = uplinkTracks.filter { $0.key & Self.memoryToken != 0 || $0.key > acked }
        }
        if uplinkTracks.count < trackLimit { uplinkTracks[token] = track }
    }

    /// Sends what waits, in order, while the Ditto side takes more.
    private func pump() {
        let qos = Mosquitto.QoS(configuration.ditto.qos)
        while ditto.canPublishNow {
            let token: UInt64
            let record: OutboundRecord
            if let next = memoryQueue.popFirst() {
                record = next
                token = Self.memoryToken | next.sequence
                memoryInFlight += 1
                memoryInFlightRecords[next.sequence] = next
            } else if let spool {
                do {
                    guard let next = try spool.nextToSend() else { break }
                    record = next
                    token = next.sequence
                } catch {
                    metrics.increment("spool.read-failed")
                    logger.error("spool record unreadable; skipped", metadata: ["error": "\(error)"])
                    spool.skipUnreadable()
                    continue
                }
            } else {
                break
            }
            if let error = ditto.publishNow(to: record.topic, payload: record.payload, qos: qos,
                                            properties: record.properties, token: token) {
                dittoSendCompleted(token, .failure(error))
            }
        }
        if let spool, spool.expired > 0 {
            metrics.increment("uplink.dropped.expired", by: spool.takeExpired())
        }
        updateDeviceReading()
    }

    private func dittoSendCompleted(_ token: UInt64, _ result: Result<PublishAck, MQTTError>) {
        if token == Self.answerToken {
            if case .failure(let error) = result {
                metrics.increment("ditto.publish-failed")
                logger.error("publishing to Ditto failed", metadata: ["error": "\(error)"])
            }
            return
        }
        let request = requestTokens.isEmpty ? nil : requestTokens.removeValue(forKey: token)
        switch result {
        case .success:
            let track = uplinkTracks.removeValue(forKey: token)
            metrics.published(.uplink, rule: track?.rule ?? "")
            if let track { gauges.latencyUplink.recordNanoseconds(MonotonicClock.nanoseconds() - track.arrival) }
        case .failure(let error) where error.kind == .shutdown:
            // The client closed with it unacknowledged: the spool keeps it (sent again after a client
            // replacement or a restart); without a spool it goes back to the queue. A stop counts what is left
            // once (``countUnsentAtStop()``).
            if token & Self.memoryToken != 0 {
                memoryInFlight -= 1
                if let record = memoryInFlightRecords.removeValue(forKey: token & ~Self.memoryToken) {
                    returnedRecords.append(record)
                }
            }
            return
        case .failure(let error):
            metrics.increment("uplink.publish-failed")
            uplinkTracks[token] = nil
            logger.error("Ditto's broker refused an uplink message; dropped", metadata: ["error": "\(error)"])
            if let request { uplinkPending.remove(request) }
        }
        if token & Self.memoryToken != 0 {
            memoryInFlight -= 1
            memoryInFlightRecords[token & ~Self.memoryToken] = nil
        } else if let spool {
            spool.acknowledge(token)
            armCursorTimer()
        }
    }

    /// Reads the device side only while the uplink can take more (hysteresis: resumes at half).
    private func updateDeviceReading() {
        let pause: Bool
        if !takingDeviceMessages {
            pause = true
        } else if let spool {
            let limit = deviceReadingPaused ? queueLimit / 2 : queueLimit
            let full = deviceReadingPaused ? !spool.hasRoom : spool.isFull
            pause = (full && spool.settings.whenFull == .backPressure) || (ditto.isConnected && spool.backlog >= limit)
                || memoryQueue.count >= (deviceReadingPaused ? queueLimit / 2 : queueLimit)
        } else {
            pause = memoryQueue.count >= (deviceReadingPaused ? queueLimit / 2 : queueLimit)
        }
        guard pause != deviceReadingPaused else { return }
        deviceReadingPaused = pause
        if pause {
            device.pauseReading()
            metrics.increment("uplink.back-pressure")
            logger.debug("device side paused: the uplink is full", metadata: ["uplink.waiting": "\(uplinkWaiting)"])
        } else {
            device.resumeReading()
            logger.debug("device side resumed")
        }
    }

    /// Messages taken from devices and not yet acknowledged by Ditto's broker.
    var uplinkWaiting: Int {
        memoryQueue.count + memoryInFlight + (spool?.unacknowledged ?? 0)
    }

    private func armCursorTimer() {
        guard !cursorTimerArmed, let spool, spool.cursorDirty else { return }
        cursorTimerArmed = true
        // Acknowledgements persisted in batches: after a kill -9 at most this much is sent twice.
        loop.schedule(at: .now + .milliseconds(20)) { [unowned self] in
            cursorTimerArmed = false
            spool.persistCursor()
        }
    }

    private func scheduleSync(every interval: Duration) {
        loop.schedule(at: .now + interval) { [weak self] in
            guard let self, let spool = self.spool else { return }
            spool.sync()
            scheduleSync(every: interval)
        }
    }

    // MARK: presence

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

    /// A device's topic values for the log, `name=value` sorted by name (`deviceId=lamp`), not Swift's
    /// dictionary syntax.
    static func describe(_ variables: [String: String]) -> String {
        variables.filter { $0.key != "topic" }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }

    private func updatePresence(_ status: DeviceStatusSettings, variables: [String: String], payload: [UInt8]) {
        guard let key = Self.presenceKey(status.topic.placeholders, variables) else { return }
        let value = String(decoding: payload, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let online = !payload.isEmpty && !status.offlinePayloads.contains(value)
        if online { offline.remove(key) } else { offline.insert(key) }
        logger.info("device presence", metadata: ["device": "\(Self.describe(variables))", "online": "\(online)"])
        if let connectionStatus = status.connectionStatus { sendConnectionStatus(connectionStatus, variables, online: online) }
    }

    private func sendConnectionStatus(_ settings: ConnectionStatusSettings, _ variables: [String: String], online: Bool) {
        var values = variables
        if values["namespace"] == nil, let namespace = configuration.defaults.namespace { values["namespace"] = namespace }
        do {
            let thingID = try ThingID(try settings.thingID.render(values))
            let update = ConnectionStatus.update(thingID: thingID, featureID: settings.featureID, online: online,
                                                 now: timestamp(), correlationID: CorrelationID.generate())
            publishToDitto(update, topic: try DittoPublication.render(configuration.ditto.publishTopic, for: thingID))
            metrics.increment("presence.published")
        } catch {
            metrics.increment("presence.dropped")
            logger.warning("ConnectionStatus not sent", metadata: ["device": "\(Self.describe(variables))", "reason": "\(error)"])
        }
    }

    private func deviceConnectionChanged(_ event: ConnectionEvent) {
        if case .connected = event { drainDownlinkBacklog() }
    }

    // MARK: device answers to Ditto's requests

    private func handleDeviceReply(_ reply: DeviceReply, topic: String) {
        // The answer belongs to the request with this correlation id whose device answers on this topic.
        let match = downlinkByCorrelation.first(for: reply.correlationID) { thing in
            let key = PendingKey(thing: thing, correlationID: reply.correlationID)
            return self.downlinkPending[key].map { $0.mapper.isAnswer(reply, on: topic, to: $0.route) } ?? false
        }.map { PendingKey(thing: $0, correlationID: reply.correlationID) }
        let arrival = MonotonicClock.nanoseconds()
        guard let key = match, let pending = removeDownlink(key) else {
            metrics.increment("reply.unmatched")
            // With a shared group, the other instances' answers reach this one too.
            let level: Logger.Level = configuration.connections.device.sharedSubscriptionGroup == nil ? .warning : .debug
            logger.log(level: level, "device answer matches no pending request of this device", metadata: [
                "mqtt.topic": "\(topic)", "correlation-id": "\(reply.correlationID)",
            ])
            return
        }
        let response: Envelope
        do {
            response = try pending.mapper.response(to: pending.request, route: pending.route, reply: reply)
        } catch {
            metrics.increment("reply.dropped.\(error.kind.rawValue)")
            logger.warning("device answer cannot be mapped", metadata: ["mqtt.topic": "\(topic)", "reason": "\(error.reason)"])
            answerDitto(pending.request, error: error.dittoError, replyAddress: pending.replyAddress)
            if let label = pending.answeredAck {
                acknowledge(pending.request, label: label, status: error.dittoError.status, replyAddress: pending.replyAddress)
            }
            return
        }
        gauges.mappingReply.recordNanoseconds(MonotonicClock.nanoseconds() - arrival)
        if pending.responseRequired {
            publishToDitto(response, topic: pending.replyAddress)
            metrics.published(.reply, rule: pending.route.ruleName)
        }
        gauges.roundTrip.recordNanoseconds(Int64((ContinuousClock.now - pending.arrival) / .nanoseconds(1)))
        if let label = pending.answeredAck {
            acknowledge(pending.request, label: label, status: response.status ?? 200, replyAddress: pending.replyAddress)
        }
    }

    @discardableResult
    private func removeDownlink(_ key: PendingKey) -> PendingDownlink? {
        guard let pending = downlinkPending.remove(key) else { return nil }
        forgetCorrelation(key)
        return pending
    }

    private func forgetCorrelation(_ key: PendingKey) {
        downlinkByCorrelation.remove(key.thing, for: key.correlationID)
        if !retiredDownlinks.isEmpty { releaseRetired(key) }
    }

    /// A device answer on a reply topic only the rules before a reload had (newest rules first).
    private func retiredReply(_ publication: MQTTPublication) -> DeviceReply? {
        for retired in retiredDownlinks.reversed() {
            let matches = retired.mapper.replyTopicMatches(publication.topic)
            if !matches.isEmpty, let reply = retired.mapper.reply(from: publication, matches: matches) { return reply }
        }
        return nil
    }

    /// The request `key` no longer waits: rules no request waits on any more are dropped, and their reply topics
    /// that neither the rules in force nor other replaced rules still need are unsubscribed.
    private func releaseRetired(_ key: PendingKey) {
        for index in retiredDownlinks.indices { retiredDownlinks[index].waiting.remove(key) }
        let released = retiredDownlinks.filter(\.waiting.isEmpty)
        guard !released.isEmpty else { return }
        retiredDownlinks.removeAll { $0.waiting.isEmpty }
        let needed = retainedReplyFilters.union(BridgeService.deviceSubscriptions(configuration).map(\.filter))
        let filters = Array(Set(released.flatMap(\.mapper.replyFilters)).subtracting(needed)).sorted()
        guard !filters.isEmpty else { return }
        logger.info("reply topics of replaced rules released: no request sent with them waits any more", metadata: [
            "mqtt.side": "device", "mqtt.filters": "\(filters)",
        ])
        let client = device
        let logger = self.logger
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

    /// Reply filters of replaced rules that requests still wait on: a reload keeps them subscribed.
    var retainedReplyFilters: Set<String> { Set(retiredDownlinks.flatMap(\.mapper.replyFilters)) }

    // MARK: Ditto -> device

    private func handleDittoMessage(_ message: MQTTMessage) {
        let arrival = MonotonicClock.nanoseconds()
        let envelope: Envelope
        do {
            envelope = try Envelope.decode(message.payload)
        } catch {
            metrics.increment("ditto.invalid")
            logger.warning("invalid Ditto Protocol message", metadata: ["mqtt.topic": "\(message.topic)", "reason": "\(error)"])
            answerUndecodable(MQTTPublication(message), error: error)
            return
        }
        if envelope.isResponse {
            handleDittoResponse(envelope, topic: message.topic)
            return
        }
        let replyAddress = message.properties.responseTopic.flatMap { $0.isEmpty ? nil : $0 }
            ?? envelope.headers.replyTo
            ?? envelope.topic.thingID.flatMap { try? DittoPublication.render(configuration.ditto.publishTopic, for: $0) }
        switch envelope.topic.criterion {
        case .messages, .commands:
            handleDittoRequest(envelope, replyAddress: replyAddress, topic: message.topic, arrival: arrival)
        default:
            metrics.increment("ditto.ignored")
            logger.debug("Ditto signal ignored", metadata: ["mqtt.topic": "\(message.topic)", "ditto.topic": "\(envelope.topic)"])
        }
    }

    private func handleDittoRequest(_ envelope: Envelope, replyAddress: String?, topic: String, arrival: Int64) {
        let route: DownlinkRoute
        do {
            route = try downlinkRoute(envelope)
        } catch {
            metrics.increment("downlink.dropped.\(error.kind.rawValue)")
            logger.warning("Ditto request not routed", metadata: [
                "mqtt.topic": "\(topic)", "ditto.topic": "\(envelope.topic)", "reason": "\(error.reason)",
            ])
            answerDitto(envelope, error: error.dittoError, replyAddress: replyAddress)
            return
        }
        if !device.isConnected {
            metrics.increment("downlink.dropped.device-broker-down")
            answerDitto(envelope, error: BridgeErrors.deviceBrokerUnavailable(), replyAddress: replyAddress)
            return
        }
        if let status = configuration.deviceStatus,
           let key = Self.presenceKey(status.topic.placeholders, route.variables), offline.contains(key) {
            metrics.increment("downlink.dropped.device-offline")
            answerDitto(envelope, error: BridgeErrors.deviceOffline(route.thingID), replyAddress: replyAddress)
            return
        }
        let requested = Set(envelope.headers.requestedAcks ?? [])
        let answeredAck = configuration.acks.answered.flatMap { requested.contains($0) ? $0 : nil }
        let deliveredAck = configuration.acks.delivered.flatMap { requested.contains($0) ? $0 : nil }
        let correlationID = envelope.headers.correlationID ?? ""
        let waits = route.expectsReply && (route.responseRequired || answeredAck != nil) && !correlationID.isEmpty
        let deadline = ContinuousClock.now + route.timeout - min(.milliseconds(500), route.timeout / 10)
        var pendingKey: PendingKey?
        if waits {
            let key = PendingKey(thing: route.thingID.description, correlationID: correlationID)
            let pending = PendingDownlink(request: envelope, route: route, replyAddress: replyAddress ?? "",
                                          responseRequired: route.responseRequired && replyAddress != nil,
                                          answeredAck: answeredAck, mapper: downlink)
            switch downlinkPending.insert(pending, for: key, deadline: deadline) {
            case .inserted:
                pendingKey = key
                downlinkByCorrelation.insert(key.thing, for: correlationID)
                scheduleExpiry(deadline)
            case .duplicate:
                metrics.increment("downlink.dropped.duplicate")
                logger.info("redelivered request still pending, not sent twice", metadata: [
                    "mqtt.topic": "\(topic)", "correlation-id": "\(correlationID)",
                ])
                return
            case .full:
                metrics.increment("downlink.dropped.too-many-requests")
                answerDitto(envelope, error: BridgeErrors.tooManyPendingRequests(maximumPendingRequests),
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
            if let pendingKey { removeDownlink(pendingKey) }
            metrics.increment("downlink.dropped.\(error.kind.rawValue)")
            logger.warning("Ditto request cannot be mapped", metadata: ["mqtt.topic": "\(topic)", "reason": "\(error.reason)"])
            answerDitto(envelope, error: error.dittoError, replyAddress: replyAddress)
            return
        }
        let send = DownlinkSend(envelope: envelope, route: route, replyAddress: replyAddress, deliveredAck: deliveredAck,
                                pendingKey: pendingKey, publication: publication, arrival: arrival)
        gauges.mappingDownlink.recordNanoseconds(MonotonicClock.nanoseconds() - arrival)
        if device.canPublishNow && downlinkBacklog.isEmpty {
            sendToDevice(send)
        } else if downlinkBacklog.count < maximumPendingRequests {
            // In order behind the others; the device broker's acknowledgements make room.
            downlinkBacklog.append(send)
        } else {
            if let pendingKey { removeDownlink(pendingKey) }
            metrics.increment("downlink.dropped.too-many-requests")
            answerDitto(envelope, error: BridgeErrors.tooManyPendingRequests(maximumPendingRequests), replyAddress: replyAddress)
        }
    }

    /// ``DownlinkMapper/route(_:)`` with the signal's target kept.
    private func downlinkRoute(_ envelope: Envelope) throws(MappingError) -> DownlinkRoute {
        try downlink.checkRoutable(envelope)
        let signal = DownlinkSignal(envelope)
        if let target = downlinkTargets.value(for: signal) { return downlink.route(envelope, to: target) }
        let target = try downlink.target(envelope)
        if downlinkTargets.keep(target, for: signal) { metrics.increment("downlink.signals-evicted") }
        return downlink.route(envelope, to: target)
    }

    private func sendToDevice(_ send: DownlinkSend) {
        let token = nextDeviceToken
        nextDeviceToken += 1
        deviceSends[token] = send
        let publication = send.publication
        if let error = device.publishNow(to: publication.topic, payload: publication.payload, qos: Mosquitto.QoS(level: publication.qos),
                                         properties: PublishProperties(publication.properties), token: token) {
            deviceSendCompleted(token, .failure(error))
        } else {
            logger.debug("Ditto request sent to device", metadata: [
                "ditto.topic": "\(send.envelope.topic)", "device.topic": "\(publication.topic)", "rule": "\(send.route.ruleName)",
            ])
        }
    }

    private func drainDownlinkBacklog() {
        while device.canPublishNow, let next = downlinkBacklog.popFirst() {
            if !device.isConnected {
                failDownlink(next, BridgeErrors.deviceBrokerUnavailable(), ackStatus: 503)
                continue
            }
            sendToDevice(next)
        }
    }

    private func deviceSendCompleted(_ token: UInt64, _ result: Result<PublishAck, MQTTError>) {
        guard token != Self.answerToken else {
            if case .failure(let error) = result {
                metrics.increment("uplink.request.reply-failed")
                logger.error("answering the device failed", metadata: ["error": "\(error)"])
            }
            return
        }
        guard let send = deviceSends.removeValue(forKey: token) else { return }
        switch result {
        case .success:
            metrics.published(.downlink, rule: send.route.ruleName)
            gauges.latencyDownlink.recordNanoseconds(MonotonicClock.nanoseconds() - send.arrival)
            if let label = send.deliveredAck {
                acknowledge(send.envelope, label: label, status: 200, replyAddress: send.replyAddress)
            }
            if !send.route.expectsReply, send.route.responseRequired, let replyAddress = send.replyAddress {
                // Fire-and-forget rules answer for the device once its broker took the request.
                let response: Envelope = switch send.route.kind {
                case .message: Envelope.messageResponse(to: send.envelope, status: 202, payload: nil)
                case .command(let action, _): Envelope.commandResponse(to: send.envelope, status: action == .create ? 201 : 204)
                }
                publishToDitto(response, topic: replyAddress)
            }
        case .failure(let error):
            metrics.increment("downlink.publish-failed")
            logger.error("publishing to the device failed", metadata: ["device.topic": "\(send.publication.topic)", "error": "\(error)"])
            failDownlink(send, BridgeErrors.deliveryFailed("\(error)"), ackStatus: 503)
        }
    }

    private func failDownlink(_ send: DownlinkSend, _ error: DittoError, ackStatus: Int) {
        if let key = send.pendingKey { removeDownlink(key) }
        answerDitto(send.envelope, error: error, replyAddress: send.replyAddress)
        if let label = send.deliveredAck {
            acknowledge(send.envelope, label: label, status: ackStatus, replyAddress: send.replyAddress)
        }
    }

    /// A Ditto answer to a request a device made.
    private func handleDittoResponse(_ envelope: Envelope, topic: String) {
        // Acks answer nothing a device asked; a message response or an error for the same thing and
        // correlation id that answers the request by Ditto's rules completes it.
        guard envelope.topic.criterion != .acks, let correlationID = envelope.headers.correlationID,
              let thingID = envelope.topic.thingID
        else {
            metrics.increment("ditto.response.unmatched")
            logger.debug("Ditto response matches no device request", metadata: ["mqtt.topic": "\(topic)"])
            return
        }
        let key = PendingKey(thing: thingID.description, correlationID: correlationID)
        guard let pending = uplinkPending[key], envelope.answers(pending.envelope) else {
            metrics.increment("ditto.response.unmatched")
            logger.debug("Ditto response matches no device request", metadata: ["mqtt.topic": "\(topic)"])
            return
        }
        uplinkPending.remove(key)
        let payload: MessagePayload = envelope.topic.criterion == .errors
            ? .json(envelope.value ?? .null)
            : MessagePayload.from(envelopeValue: envelope.value, contentType: envelope.headers.contentType)
        answerDevice(pending.request, status: envelope.status ?? 200, payload: payload, headers: envelope.headers)
        metrics.published(.reply, rule: pending.rule, as: "uplink.request.answered")
    }

    // MARK: answers

    /// A Ditto error response to a request that cannot be served, when its sender waits for one.
    private func answerDitto(_ request: Envelope, error: DittoError, replyAddress: String?) {
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
    private func answerUndecodable(_ message: MQTTPublication, error: DittoError) {
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
        publishToDitto(Envelope.errorResponse(thingID: thingID, channel: .live, error: error, headers: responseHeaders),
                       topic: replyAddress)
        metrics.increment("ditto.error-response")
    }

    private func acknowledge(_ request: Envelope, label: String, status: Int, replyAddress: String?) {
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
    private func answerDevice(_ request: DeviceRequest, status: Int, payload: MessagePayload, headers: DittoHeaders) {
        do {
            publishToDevice(try request.answer(status: status, payload: payload, headers: headers, mapper: headerMapper))
        } catch {
            metrics.increment("uplink.request.reply-failed")
            logger.error("answering the device failed", metadata: ["thing-id": "\(request.thingID)", "error": "\(error)"])
        }
    }

    private func publishToDevice(_ answer: MQTTPublication) {
        if let error = device.publishNow(to: answer.topic, payload: answer.payload, qos: .atLeastOnce,
                                         properties: PublishProperties(answer.properties), token: Self.answerToken) {
            metrics.increment("uplink.request.reply-failed")
            logger.error("answering the device failed", metadata: ["mqtt.topic": "\(answer.topic)", "error": "\(error)"])
        }
    }

    private func publishToDitto(_ envelope: Envelope, topic: String) {
        if let error = ditto.publishNow(to: topic, payload: envelope.encoded(), qos: Mosquitto.QoS(configuration.ditto.qos),
                                        properties: PublishProperties(DittoPublication.properties(for: envelope)),
                                        token: Self.answerToken) {
            metrics.increment("ditto.publish-failed")
            logger.error("publishing to Ditto failed", metadata: ["ditto.topic": "\(envelope.topic)", "error": "\(error)"])
        }
    }

    // MARK: expiry

    private func scheduleExpiry(_ deadline: ContinuousClock.Instant) {
        if let expiryTimer, expiryTimer.deadline <= deadline { return }
        if let expiryTimer { loop.cancel(expiryTimer.id) }
        let id = loop.schedule(at: deadline) { [unowned self] in
            expiryTimer = nil
            expire()
        }
        expiryTimer = (id, deadline)
    }

    private func expire() {
        let now = ContinuousClock.now
        for entry in downlinkPending.expire(now: now) {
            forgetCorrelation(entry.key)
            let pending = entry.value
            metrics.increment("downlink.timeout")
            logger.info("device did not answer in time", metadata: [
                "thing-id": "\(pending.route.thingID)", "correlation-id": "\(pending.request.headers.correlationID ?? "")",
            ])
            if pending.responseRequired {
                answerDitto(pending.request, error: BridgeErrors.deviceTimeout(pending.route.timeout),
                            replyAddress: pending.replyAddress)
            }
            if let label = pending.answeredAck {
                acknowledge(pending.request, label: label, status: 408, replyAddress: pending.replyAddress)
            }
        }
        for entry in uplinkPending.expire(now: now) {
            metrics.increment("uplink.request.timeout")
            answerDevice(entry.value.request, status: 408,
                         payload: .json(BridgeErrors.deviceTimeout(entry.value.request.timeout).errorValue),
                         headers: DittoHeaders())
        }
        let next = [downlinkPending.nextDeadline, uplinkPending.nextDeadline].compactMap { $0 }.min()
        if let next { scheduleExpiry(next) }
    }

    // MARK: state for the service

    var pendingCounts: (downlink: Int, uplink: Int) { (downlinkPending.count, uplinkPending.count) }

    /// Graceful stop, step 1: take no more device messages.
    func stopTakingDeviceMessages() {
        takingDeviceMessages = false
        updateDeviceReading()
    }

    func resumeTakingDeviceMessages() {
        takingDeviceMessages = true
        updateDeviceReading()
        pump()
    }

    /// A reloaded mapping (rules, header policy, devices, acks) takes effect for the next message; requests
    /// already pending keep the rules they were sent with.
    func apply(_ new: BridgeConfiguration) {
        let waiting = downlinkByCorrelation.keys
        if !waiting.isEmpty { retiredDownlinks.append(RetiredDownlink(mapper: downlink, waiting: waiting)) }
        configuration.uplink = new.uplink
        configuration.downlink = new.downlink
        configuration.headers = new.headers
        configuration.deviceStatus = new.deviceStatus
        configuration.acks = new.acks
        configuration.defaults = new.defaults
        configuration.ditto = new.ditto
        uplink = UplinkMapper(configuration: configuration)
        downlink = DownlinkMapper(configuration: configuration)
        headerMapper = HeaderMapper(policy: configuration.headers)
        topics.removeAll()
        downlinkTargets.removeAll()
    }

    /// Moves a side to a new client (new host, credentials or TLS); the old one is closed by the caller.
    func replace(device client: MosquittoClient, connection: BrokerConnection) {
        device = client
        configuration.connections.device = connection
        installDevice()
        if deviceReadingPaused { client.pauseReading() }
    }

    func replace(ditto client: MosquittoClient, connection: BrokerConnection) {
        ditto = client
        configuration.connections.ditto = connection
        installDitto()
        for record in returnedRecords.sorted(by: { $0.sequence > $1.sequence }) { memoryQueue.prepend(record) }
        returnedRecords.removeAll()
        do {
            try spool?.rewindToCursor()
        } catch {
            metrics.increment("spool.read-failed")
            logger.error("spool cannot rewind to its cursor", metadata: ["error": "\(error)"])
        }
    }

    /// Whether everything taken from devices reached Ditto's broker (or, with a spool, is safe on disk while
    /// the Ditto side is down).
    var uplinkDrained: Bool {
        if spool != nil, !ditto.isConnected { return memoryQueue.isEmpty && memoryInFlight == 0 }
        return uplinkWaiting == 0 && ditto.inflightCount == 0
    }

    /// Graceful stop, step 2: requesters still waiting get an answer now instead of a timeout later; the
    /// spool's cursor goes to disk.
    func answerPendingForShutdown() {
        for entry in downlinkPending.removeAll() where entry.value.responseRequired {
            answerDitto(entry.value.request, error: BridgeErrors.shuttingDown(), replyAddress: entry.value.replyAddress)
        }
        downlinkByCorrelation.removeAll()
        retiredDownlinks.removeAll()
        while let send = downlinkBacklog.popFirst() {
            answerDitto(send.envelope, error: BridgeErrors.shuttingDown(), replyAddress: send.replyAddress)
        }
        if case .never = spool?.settings.fsync {
            spool?.persistCursor()
        } else {
            spool?.sync(wait: true)
        }
    }

    /// Graceful stop, last step (both sides closed): counts what was taken from devices and never acknowledged by
    /// Ditto's broker: with a spool it is sent at the next start, without one it is lost.
    func countUnsentAtStop() {
        let left = spool?.unacknowledged ?? memoryQueue.count + memoryInFlight + returnedRecords.count
        if left > 0 { metrics.increment("uplink.unsent-at-stop", by: left) }
    }

    var dittoIdle: Bool { ditto.inflightCount == 0 || !ditto.isConnected }
}

/// The things with a pending downlink request per correlation id. Almost always one: that case is kept without a
/// set of its own (no allocation per request).
struct ThingsByCorrelation {
    private enum Things {
        case one(String)
        case many(Set<String>)
    }

    private var table: [String: Things] = [:]

    /// The first thing waiting under `correlationID` that `matches`.
    func first(for correlationID: String, where matches: (String) -> Bool) -> String? {
        switch table[correlationID] {
        case .one(let thing)?: matches(thing) ? thing : nil
        case .many(let things)?: things.first(where: matches)
        case nil: nil
        }
    }

    mutating func insert(_ thing: String, for correlationID: String) {
        switch table[correlationID] {
        case nil: table[correlationID] = .one(thing)
        case .one(let other)?: table[correlationID] = other == thing ? .one(thing) : .many([other, thing])
        case .many(var things)?:
            things.insert(thing)
            table[correlationID] = .many(things)
        }
    }

    mutating func remove(_ thing: String, for correlationID: String) {
        switch table[correlationID] {
        case .one(let other)? where other == thing: table[correlationID] = nil
        case .many(var things)?:
            things.remove(thing)
            if things.count == 1, let only = things.first {
                table[correlationID] = .one(only)
            } else {
                table[correlationID] = .many(things)
            }
        default: break
        }
    }

    mutating func removeAll() { table.removeAll() }

    /// Every (thing, correlation id) pair in the table.
    var keys: Set<PendingKey> {
        var keys = Set<PendingKey>()
        for (correlationID, things) in table {
            switch things {
            case .one(let thing): keys.insert(PendingKey(thing: thing, correlationID: correlationID))
            case .many(let set): for thing in set { keys.insert(PendingKey(thing: thing, correlationID: correlationID)) }
            }
        }
        return keys
    }
}
