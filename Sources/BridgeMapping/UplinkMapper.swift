public import BridgeConfig
public import DittoProtocol
public import MQTT
#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

/// What the mapper needs from outside that a pure function cannot make up itself.
public struct UplinkEnvironment: Sendable {
    /// The next live event revision for a thing (per thing, increasing).
    public var nextRevision: @Sendable (ThingID) -> Int64
    /// The event timestamp (ISO-8601, UTC, `Z`).
    public var timestamp: @Sendable () -> String
    /// A fresh correlation id for messages that bring none.
    public var newCorrelationID: @Sendable () -> String

    public init(nextRevision: @escaping @Sendable (ThingID) -> Int64,
                timestamp: @escaping @Sendable () -> String,
                newCorrelationID: @escaping @Sendable () -> String) {
        self.nextRevision = nextRevision
        self.timestamp = timestamp
        self.newCorrelationID = newCorrelationID
    }

    /// ISO-8601 with milliseconds, as Ditto writes timestamps.
    public static func isoTimestamp(_ date: Date) -> String {
        isoTimestamp(millisecondsSince1970: Int64((date.timeIntervalSince1970 * 1_000).rounded(.down)))
    }

    /// `yyyy-MM-ddTHH:mm:ss.SSSZ` (UTC) by arithmetic: at a low message rate every event has a new millisecond, and
    /// Foundation's formatter cost more than the rest of the mapping. Years 0...9999.
    public static func isoTimestamp(millisecondsSince1970 milliseconds: Int64) -> String {
        let (seconds, millis) = floorDivision(milliseconds, 1_000)
        let (days, secondOfDay) = floorDivision(seconds, 86_400)
        // Civil date from days since 1970-01-01 (H. Hinnant, "chrono-compatible low-level date algorithms").
        let z = days + 719_468
        let era = floorDivision(z, 146_097).quotient
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return String(unsafeUninitializedCapacity: 24) { buffer in
            func put(_ value: Int64, digits: Int, at offset: Int) {
                var rest = value
                for index in stride(from: offset + digits - 1, through: offset, by: -1) {
                    buffer[index] = UInt8(ascii: "0") + UInt8(rest % 10)
                    rest /= 10
                }
            }
            put(year, digits: 4, at: 0)
            put(month, digits: 2, at: 5)
            put(day, digits: 2, at: 8)
            put(secondOfDay / 3_600, digits: 2, at: 11)
            put(secondOfDay / 60 % 60, digits: 2, at: 14)
            put(secondOfDay % 60, digits: 2, at: 17)
            put(millis, digits: 3, at: 20)
            for (offset, byte) in [(4, "-"), (7, "-"), (10, "T"), (13, ":"), (16, ":"), (19, "."), (23, "Z")] as [(Int, Unicode.Scalar)] {
                buffer[offset] = UInt8(ascii: byte)
            }
            return 24
        }
    }

    private static func floorDivision(_ value: Int64, _ divisor: Int64) -> (quotient: Int64, remainder: Int64) {
        let quotient = value / divisor - (value % divisor < 0 ? 1 : 0)
        return (quotient, value - quotient * divisor)
    }
}

/// A device message that expects Ditto's answer: what the bridge needs to route that answer back.
public struct DeviceRequest: Sendable, Hashable {
    public enum Reply: Sendable, Hashable {
        /// MQTT 5: publish to the device's response topic with its correlation data.
        case responseTopic(String, correlationData: [UInt8]?)
        /// MQTT 3.1.1: publish to a topic rendered from these variables plus `{status}`.
        case topicTemplate(TopicTemplate, variables: [String: String])
    }

    public var correlationID: String
    public var thingID: ThingID
    public var reply: Reply
    public var timeout: Duration
    /// Answer in the `{"headers": ..., "value": ...}` wrapper.
    public var headerWrapper: Bool
}

extension DeviceRequest {
    /// What the bridge publishes to the device that asked: Ditto's answer (or the bridge's own error) with the
    /// status, on the device's response topic with its correlation data (MQTT 5), or on its reply topic
    /// template with `{correlationId}` and `{status}` (MQTT 3.1.1, optionally in the header wrapper).
    public func answer(status: Int, payload: MessagePayload, headers: DittoHeaders,
                       mapper: HeaderMapper) throws(MappingError) -> MQTTMessage {
        switch reply {
        case .responseTopic(let responseTopic, let correlationData):
            var properties = mapper.deviceProperties(headers: headers)
            properties.correlationData = correlationData
            properties.userProperties.append(UserProperty(name: ReservedHeaders.status, value: "\(status)"))
            return MQTTMessage(topic: responseTopic, payload: payload.bytes, properties: properties)
        case .topicTemplate(let template, var variables):
            variables["status"] = "\(status)"
            variables["correlationId"] = TopicToken.encode(correlationID)
            let topic: String
            do {
                topic = try template.render(variables)
            } catch {
                throw MappingError(.template, "cannot render the reply topic \(template.source): \(error)")
            }
            var properties = PublishProperties()
            properties.contentType = headers.contentType
            guard headerWrapper else {
                return MQTTMessage(topic: topic, payload: payload.bytes, properties: properties)
            }
            let wrapped = [(ReservedHeaders.correlationID, correlationID), (ReservedHeaders.status, "\(status)")] + mapper.customHeaders(headers)
            return MQTTMessage(topic: topic, payload: HeaderWrapper.wrap(headers: wrapped, value: payload.envelopeValue),
                                   properties: properties)
        }
    }
}

/// What a device topic decides before its payload is read: see ``UplinkMapper/route(topic:)``. Kept per device
/// topic, by the hundred thousand on a gateway with a topic per point, so it holds only what differs per topic
/// (the thing) and references to what the topics of a rule share (the rule; an event rule's path, Ditto's rules
/// for it and its template, where they do not depend on the topic: `bridge-bench mapping` prints the bytes per
/// route). A struct, stored in the runtime's table itself: no object per topic.
public struct UplinkRoute: Sendable {
    /// The rule, shared with the mapper (a reference: no copy per kept topic, no copy per message).
    let rule: SharedRule
    /// The thing the device speaks for.
    public let thingID: ThingID
    /// The topic's values (``UplinkMapper/variables(topic:thingID:rule:)``) where the rule's messages need them
    /// often enough to keep them; nil where the topics share their event (``variables(topic:)`` makes them then).
    let keptVariables: [String: String]?
    /// An event rule's path, Ditto's rules for events there and their template, or why the topic's values
    /// cannot make a path (reported per message).
    let event: EventRoute?

    /// What an event rule's topic decides for its events. One per rule where the path and headers are the same
    /// for every topic, one per topic otherwise.
    final class EventRoute: Sendable {
        let shape: Result<EventShape, MappingError>

        init(_ shape: Result<EventShape, MappingError>) {
            self.shape = shape
        }
    }

    struct EventShape: Sendable {
        var path: String
        /// Why Ditto would refuse every event here (reported per message, where a refused value is), or the
        /// rules that remain per event.
        var rules: Result<Envelope.EventRules, DittoError>
        /// The encoding of the events of messages that bring no headers (``DittoPublication/encodedUplink(_:route:mapper:environment:)``),
        /// where the rule and the topic fix all of their headers but the correlation id.
        var template: Envelope.EventTemplate?
    }

    final class SharedRule: Sendable {
        let rule: UplinkRule
        /// The event route of every topic of an event rule whose path, headers and Ditto's rules for them do not
        /// depend on the topic; nil for other rules, whose topics make their own.
        let event: EventRoute?

        init(_ rule: UplinkRule) {
            self.rule = rule
            event = UplinkMapper.sharedEventRoute(rule)
        }
    }

    /// The name of the rule that takes the topic (for logs).
    public var ruleName: String { rule.rule.name }

    /// What the rule's templates see for this route's `topic`: its captures, `namespace`, `thingId`, `thingName`
    /// and `topic`.
    public func variables(topic: String) -> [String: String] {
        keptVariables ?? UplinkMapper.variables(topic: topic, thingID: thingID, rule: rule.rule)
    }

    init(rule: SharedRule, thingID: ThingID, variables: [String: String]?, event: EventRoute?) {
        self.rule = rule
        self.thingID = thingID
        keptVariables = variables
        self.event = event
    }
}

/// The outcome of mapping one device message.
public struct UplinkResult: Sendable {
    public var rule: String
    public var thingID: ThingID
    public var envelope: Envelope
    public var request: DeviceRequest?
}

/// Device MQTT -> Ditto Protocol: the first matching rule decides.
///
/// Rules are tried in ``BridgeConfiguration/uplinkRulesByPrecedence`` order: `priority` (higher first), then
/// topic specificity, then their order in the file. The first whose topic matches maps the message; a message
/// that the chosen rule cannot map is dropped, it does not fall through to the next rule.
///
/// A class, not a struct: the runtime passes it with every device message, and a class is passed with one
/// reference count instead of one per array and string it holds. Immutable, hence `Sendable`.
public final class UplinkMapper: Sendable {
    /// In the order they are tried.
    public let rules: [UplinkRule]
    /// The same rules, for routes to refer to.
    private let sharedRules: [UplinkRoute.SharedRule]
    /// `ditto.reply-topic`: the `reply-to` of device-initiated requests, where Ditto publishes the answer.
    public let replyTopic: TopicTemplate?
    /// The acknowledgement labels the bridge's Ditto connection declares (`acks`); Ditto refuses any other
    /// label the connection sends, so a pass-through acknowledgement must use one of them.
    public let declaredAcks: [String]
    /// `ditto.connection-id`, for `{{connection:id}}` in declared labels.
    public let connectionID: String

    /// `ditto.publish-topic` cut for any thing, for the routes of ``DittoPublication/route(topic:mapper:ditto:)``
    /// to share.
    let publishTopic: DittoPublication.ThingTopic?

    public convenience init(configuration: BridgeConfiguration) {
        self.init(rules: configuration.uplinkRulesByPrecedence, replyTopic: configuration.ditto.replyTopic,
                  declaredAcks: configuration.acks.all, connectionID: configuration.ditto.connectionID,
                  publishTopic: configuration.ditto.publishTopic)
    }

    public init(rules: [UplinkRule], replyTopic: TopicTemplate? = nil, declaredAcks: [String] = [],
                connectionID: String = "", publishTopic: TopicTemplate? = nil) {
        self.rules = rules
        sharedRules = rules.map(UplinkRoute.SharedRule.init)
        self.publishTopic = publishTopic.flatMap(DittoPublication.ThingTopic.init)
        self.replyTopic = replyTopic
        self.declaredAcks = declaredAcks
        self.connectionID = connectionID
    }

    /// The MQTT subscriptions the device side needs, one per distinct filter.
    public var subscriptionFilters: [String] {
        var seen = Set<String>()
        return rules.map(\.topic.filter).filter { seen.insert($0).inserted }
    }

    public func map(_ message: MQTTMessage, environment: UplinkEnvironment) throws(MappingError) -> UplinkResult {
        guard let route = try route(topic: message.topic) else { throw Self.noRule(message.topic) }
        return try map(message, route: route, environment: environment)
    }

    /// The drop of a device message no rule takes.
    public static func noRule(_ topic: String) -> MappingError {
        MappingError(.noRule, "no uplink rule matches topic \(topic)")
    }

    /// What the topic alone decides (the first rule that matches it, its thing, an event's path); nil when no
    /// rule matches. A pure function of the topic, so the runtime keeps it per topic instead of matching and
    /// rendering on every message.
    public func route(topic: String) throws(MappingError) -> UplinkRoute? {
        for (index, rule) in rules.enumerated() {
            let matched: UplinkMatch?
            do {
                matched = try rule.match(topic: topic)
            } catch {
                throw MappingError(.invalidIdentifier, "rule \(rule.name): \(error)")
            }
            guard let matched else { continue }
            let shared = sharedRules[index]
            // Events written through the shared template need no values of their topic; other messages of the
            // rule keep them, to be rendered on every message.
            if let event = shared.event, case .success(let shape) = event.shape, shape.template != nil {
                return UplinkRoute(rule: shared, thingID: matched.thingID, variables: nil, event: event)
            }
            let variables = Self.variables(topic: topic, values: matched.values)
            var event = shared.event
            if event == nil, case .event(let spec) = rule.action {
                event = UplinkRoute.EventRoute(Self.eventShape(rule: rule, spec: spec, thingID: matched.thingID,
                                                               variables: variables))
            }
            // Kept per topic: no spare capacity.
            var compact = [String: String](minimumCapacity: variables.count)
            for (name, value) in variables { compact[name] = value }
            return UplinkRoute(rule: shared, thingID: matched.thingID, variables: compact, event: event)
        }
        return nil
    }

    /// What the rule's templates see for a topic it matched with `values` (``UplinkRule/match(topic:)``).
    private static func variables(topic: String, values: [String: String]) -> [String: String] {
        var variables = values
        variables["topic"] = topic
        return variables
    }

    /// The same for a topic the rule matched for `thingID`, without rendering and checking the ID again.
    static func variables(topic: String, thingID: ThingID, rule: UplinkRule) -> [String: String] {
        variables(topic: topic, values: rule.values(topic: topic, thingID: thingID))
    }

    /// An event rule's path, Ditto's rules for events there and the events' template, for a topic of `thingID`
    /// with `variables`.
    private static func eventShape(rule: UplinkRule, spec: EventSpec, thingID: ThingID,
                                   variables: [String: String]) -> Result<UplinkRoute.EventShape, MappingError> {
        Result { () throws(MappingError) in
            let path = try renderPointer(spec.path, variables).description
            let action = TopicPath.Action(spec.action)
            let probe = Envelope.liveEvent(thingID: thingID, action: action, path: path, value: nil, revision: 0)
            let rules = Result { () throws(DittoError) in try Envelope.EventRules(validating: probe) }
            let template = (try? rules.get()).flatMap { _ in
                eventTemplate(rule: rule, thingID: thingID, action: action, path: path, variables: variables)
            }
            return UplinkRoute.EventShape(path: path, rules: rules, template: template)
        }
    }

    /// The event route all topics of `rule` share: where its path and static headers have no placeholders, the
    /// topic can change nothing but the thing, which the template writes per message. Nil where the topic can
    /// change more (a placeholder; a `{correlationId}` level, which takes the template away), or where Ditto's
    /// rules refuse the path (their error names the thing, so each topic reports its own).
    static func sharedEventRoute(_ rule: UplinkRule) -> UplinkRoute.EventRoute? {
        guard case .event(let spec) = rule.action, spec.path.isConstant,
              rule.headers.staticHeaders.allSatisfy({ $0.value.isConstant }),
              !rule.topic.placeholders.contains("correlationId"),
              case .success(let shape) = eventShape(rule: rule, spec: spec, thingID: Envelope.EventTemplate.thingSentinel,
                                                    variables: [:]),
              case .success = shape.rules
        else { return nil }
        return UplinkRoute.EventRoute(.success(shape))
    }

    /// The template of an event rule's events of `thingID` on one path (of any thing for
    /// ``Envelope/EventTemplate/thingSentinel``), or nil when their headers can differ in more than the
    /// correlation id: a 3.1.1 header wrapper or a `{correlationId}` topic level carries headers per message,
    /// and a static header that names a header (`{header:...}`) may follow one.
    private static func eventTemplate(rule: UplinkRule, thingID: ThingID, action: TopicPath.Action, path: String,
                                      variables: [String: String]) -> Envelope.EventTemplate? {
        guard rule.headers.mqtt311 != .wrapper, variables["correlationId"] == nil,
              !rule.headers.staticHeaders.contains(where: HeaderMapper.namesHeaders)
        else { return nil }
        // What `map` builds for a message without properties, with the sentinels for what changes.
        guard let headers = try? HeaderMapper(policy: rule.headers).dittoHeaders(
            properties: PublishProperties(), variables: variables,
            generateCorrelationID: { Envelope.EventTemplate.correlationIDSentinel })
        else { return nil }
        return Envelope.EventTemplate(probe: Envelope.liveEvent(
            thingID: thingID, action: action, path: path,
            value: Envelope.EventTemplate.valueSentinel, revision: Envelope.EventTemplate.revisionSentinel,
            timestamp: Envelope.EventTemplate.timestampSentinel, headers: headers))
    }

    /// Maps a message whose topic took `route` (from ``route(topic:)`` of this mapper).
    public func map(_ message: MQTTMessage, route: UplinkRoute,
                    environment: UplinkEnvironment) throws(MappingError) -> UplinkResult {
        let rule = route.rule.rule
        let thingID = route.thingID
        let variables = route.variables(topic: message.topic)
        let mapper = HeaderMapper(policy: rule.headers)
        // Before anything else is read: a refused request is refused whatever else is wrong with it.
        if !rule.action.isEvent {
            try Self.requireAdmittedResponseTopic(message, rule: rule, variables: variables)
        }

        var payload = message.payload
        var carried: [(name: String, value: String)] = []
        if rule.headers.mqtt311 == .wrapper, !rule.action.isPassthrough {
            let unwrapped = try HeaderWrapper.unwrap(payload)
            (payload, carried) = (unwrapped.value ?? JSON.serialize(.null), unwrapped.headers)
        }
        if let id = variables["correlationId"] {
            carried.append((ReservedHeaders.correlationID, TopicToken.decode(id)))
        }

        switch rule.action {
        case .event(let spec):
            guard let event = try route.event?.shape.get() else {
                preconditionFailure("a route of an event rule has its path")
            }
            let (value, compactText) = try PayloadReader.jsonValueKeepingText(payload, format: rule.payload)
            let headers = try mapper.dittoHeaders(
                properties: message.properties, carriedHeaders: carried, variables: variables,
                generateCorrelationID: environment.newCorrelationID)
            var envelope = Envelope.liveEvent(
                thingID: thingID, action: TopicPath.Action(spec.action), path: event.path, value: value,
                revision: environment.nextRevision(thingID), timestamp: environment.timestamp(), headers: headers)
            envelope.setValue(value, compactText: compactText)
            do throws(DittoError) {
                // Ditto's rules for the event (e.g. an object for `/attributes`); `check` proved the rule can
                // satisfy them, this payload may still not. What the topic alone decides was checked once.
                try event.rules.get().validate(envelope)
            } catch {
                throw MappingError(.invalidPayload, "Ditto would refuse the event: \(error.message)", dittoError: error)
            }
            return UplinkResult(rule: rule.name, thingID: thingID, envelope: envelope, request: nil)

        case .message(let spec):
            let subject = try Self.render(spec.subject, variables, what: "subject")
            let featureID = try spec.feature.map { template throws(MappingError) in
                try Self.render(template, variables, what: "feature")
            }
            let contentType = spec.contentType ?? message.properties.contentType.map(ContentType.init)
            let read = try PayloadReader.messagePayload(payload, format: rule.payload, contentType: contentType)
            let reply = replyRoute(for: message, spec: spec, variables: variables)
            var headers = try mapper.dittoHeaders(
                properties: message.properties, carriedHeaders: carried, variables: variables,
                request: reply != nil, generateCorrelationID: environment.newCorrelationID)
            headers[ReservedHeaders.contentType] = read.contentType
            var request: DeviceRequest?
            if let reply {
                let timeout = requestTimeout(headers: headers, configured: spec.timeout)
                headers[ReservedHeaders.responseRequired] = "true"
                headers[ReservedHeaders.timeout] = DittoDuration(milliseconds: Int64(timeout / .milliseconds(1))).description
                // In the envelope, so that Ditto's reply target finds it whether or not the MQTT publish carries a
                // response topic, and so that `map` prints exactly what `run` sends.
                if let replyTopic {
                    headers[ReservedHeaders.replyTo] = try DittoPublication.render(replyTopic, for: thingID)
                }
                do {
                    try headers.checkSize()
                } catch {
                    throw MappingError(protocolError: error)
                }
                request = DeviceRequest(
                    correlationID: headers.correlationID ?? environment.newCorrelationID(),
                    thingID: thingID, reply: reply, timeout: timeout, headerWrapper: rule.headers.mqtt311 == .wrapper)
            } else {
                headers[ReservedHeaders.responseRequired] = "false"
            }
            let envelope: Envelope
            do {
                envelope = try Envelope.liveMessage(
                    thingID: thingID, featureID: featureID, direction: .outbox, subject: subject,
                    payload: read.payload, headers: headers)
            } catch {
                throw MappingError(.invalidIdentifier, "cannot build the live message: \(error.message)", dittoError: error)
            }
            return UplinkResult(rule: rule.name, thingID: thingID, envelope: envelope, request: request)

        case .passthrough(let spec):
            try PayloadReader.checkSize(payload)
            var envelope: Envelope
            do {
                envelope = try Envelope.decode(payload)
            } catch {
                throw MappingError(.invalidProtocol, "Ditto would refuse it (\(error.error)): \(error.message)", dittoError: error)
            }
            guard let claimed = envelope.topic.thingID, claimed == thingID else {
                let claimedText = envelope.topic.thingID?.description ?? envelope.topic.description
                throw MappingError(.thingMismatch, "device on \(message.topic) may speak for \(thingID), not for \(claimedText)")
            }
            // A thing value at `/` names its thing; for a created/modified event and a create response Ditto acts
            // on that one, not on the topic's (`Envelope.takesThingFromValue`), so it must be the device's too.
            if let named = envelope.valueThingID, !named.utf8.elementsEqual(thingID.description.utf8) {
                throw MappingError(.thingMismatch, "device on \(message.topic) may speak for \(thingID), not for \(named) (value.thingId)",
                                   dittoError: DittoError.thingIDNotSettable())
            }
            try Self.requireAdmitted(envelope, spec: spec, rule: rule.name)
            do {
                try AcknowledgementLabel.requireDeclared(envelope, declared: declaredAcks, connectionID: connectionID)
            } catch {
                throw MappingError(.invalidProtocol, "Ditto would refuse it (\(error.error)): \(error.message)", dittoError: error)
            }
            envelope.headers = try mapper.passthroughHeaders(
                envelope.headers, properties: message.properties, variables: variables,
                generateCorrelationID: environment.newCorrelationID)
            return UplinkResult(rule: rule.name, thingID: thingID, envelope: envelope, request: nil)
        }
    }

    /// What a device that asked for an answer gets when its message is refused (`error` from ``map(_:environment:)``):
    /// for a request of a `message` rule (an MQTT 5 response topic, or the rule's reply topic) the Ditto error
    /// as its answer, with the error's status, on the route a successful answer would take; for a pass-through
    /// request with an MQTT 5 response topic, the Ditto error response envelope Ditto would have sent. Nil when the
    /// device asked for nothing or no rule takes the topic.
    ///
    /// - Parameter route: the message topic's route when the caller holds it (the runtime keeps one per topic);
    ///   without it the rules are matched again.
    public func errorAnswer(to message: MQTTMessage, error: MappingError, route: UplinkRoute? = nil) -> MQTTMessage? {
        if let route {
            return errorAnswer(to: message, error: error, rule: route.rule.rule, thingID: route.thingID,
                               variables: route.variables(topic: message.topic))
        }
        for rule in rules {
            guard let matched = try? rule.match(topic: message.topic) else { continue }
            return errorAnswer(to: message, error: error, rule: rule, thingID: matched.thingID,
                               variables: Self.variables(topic: message.topic, values: matched.values))
        }
        return nil
    }

    /// The answer for a message the first matching `rule` took, with the topic's `variables` (its captures and
    /// `topic`).
    private func errorAnswer(to message: MQTTMessage, error: MappingError, rule: UplinkRule, thingID: ThingID,
                             variables: [String: String]) -> MQTTMessage? {
        switch rule.action {
        case .event:
            return nil
        case .message(let spec):
            // Never on a response topic the rule does not admit: that is someone else's topic.
            guard Self.admitsResponseTopic(message, rule: rule, variables: variables),
                  let reply = replyRoute(for: message, spec: spec, variables: variables)
            else { return nil }
            var correlationID = variables["correlationId"].map(TopicToken.decode)
            if let data = message.properties.correlationData, !data.isEmpty {
                correlationID = CorrelationID.fromCorrelationData(data)
            } else if rule.headers.mqtt311 == .wrapper, let unwrapped = try? HeaderWrapper.unwrap(message.payload) {
                correlationID = unwrapped.headers.last { $0.name.lowercased() == ReservedHeaders.correlationID }?.value
                    ?? correlationID
            }
            let request = DeviceRequest(
                correlationID: correlationID ?? "", thingID: thingID, reply: reply, timeout: spec.timeout,
                headerWrapper: rule.headers.mqtt311 == .wrapper)
            var headers = DittoHeaders()
            headers.contentType = "application/json"
            return try? request.answer(
                status: error.dittoError.status, payload: .json(error.dittoError.errorValue), headers: headers,
                mapper: HeaderMapper(policy: rule.headers))
        case .passthrough:
            guard let responseTopic = message.properties.responseTopic, !responseTopic.isEmpty,
                  Self.admitsResponseTopic(message, rule: rule, variables: variables)
            else { return nil }
            // (Ditto's header limit concerns what reaches Ditto; this answer goes to the device.)
            let response: Envelope
            if let json = try? JSON.parse(message.payload), let request = try? Envelope.decodeFields(json: json) {
                guard !request.isResponse else { return nil }
                response = Envelope.errorResponse(to: request, error: error.dittoError)
            } else {
                response = Envelope.errorResponse(thingID: thingID, error: error.dittoError)
            }
            var properties = PublishProperties()
            properties.correlationData = message.properties.correlationData
            properties.contentType = DownlinkMapper.dittoProtocolContentType
            return MQTTMessage(topic: responseTopic, payload: response.encoded(), properties: properties)
        }
    }

    /// The bridge is a live-channel bridge: a pass-through admits live signals, and twin commands or events only
    /// when the rule names their action in `allow-twin`. Twin responses, errors and acknowledgements never pass:
    /// the bridge forwards no twin requests that a device could answer.
    static func requireAdmitted(_ envelope: Envelope, spec: PassthroughSpec, rule: String) throws(MappingError) {
        let topic = envelope.topic
        guard topic.group == .things, topic.channel != .live else { return }
        let admitted: Bool = switch envelope.thingSignal {
        case .command(let action, _, nil)?, .event(let action, _)?: spec.allowTwin.contains(action.rawValue)
        default: false
        }
        guard admitted else {
            let reason = "pass-through rule \(rule) admits live signals only, not \(topic)"
                + (spec.allowTwin.isEmpty ? "" : " (allow-twin: \(spec.allowTwin.sorted().joined(separator: ", ")))")
            throw MappingError(.invalidProtocol, reason, dittoError: DittoError(
                status: 403, error: "bridge:signal.notallowed", message: reason,
                description: "The bridge forwards live signals; a rule admits twin commands and events only when it names them in passthrough.allow-twin."))
        }
    }

    /// A device that names an MQTT 5 response topic has the bridge publish there for it; the topic must be one the
    /// rule admits (``UplinkRule/responseTopics``), or the request is refused: not forwarded to Ditto, and not
    /// answered, since the only topic the device named is not its own.
    static func requireAdmittedResponseTopic(_ message: MQTTMessage, rule: UplinkRule,
                                             variables: [String: String]) throws(MappingError) {
        guard !admitsResponseTopic(message, rule: rule, variables: variables),
              let responseTopic = message.properties.responseTopic
        else { return }
        throw MappingError(
            .responseTopicRefused,
            "response topic \(responseTopic) is outside what rule \(rule.name) admits (\(rule.responseTopics))")
    }

    /// Whether the message names no response topic, or one its rule admits.
    static func admitsResponseTopic(_ message: MQTTMessage, rule: UplinkRule, variables: [String: String]) -> Bool {
        guard let responseTopic = message.properties.responseTopic, !responseTopic.isEmpty else { return true }
        return rule.responseTopics.admits(responseTopic, requestTopic: message.topic, variables: variables)
    }

    /// Where Ditto's answer goes, if the device asked for one.
    private func replyRoute(for message: MQTTMessage, spec: MessageSpec,
                            variables: [String: String]) -> DeviceRequest.Reply? {
        if let responseTopic = message.properties.responseTopic, !responseTopic.isEmpty {
            return .responseTopic(responseTopic, correlationData: message.properties.correlationData)
        }
        if let replyTopic = spec.replyTopic, spec.expectsResponse || variables["correlationId"] != nil {
            return .topicTemplate(replyTopic, variables: variables)
        }
        return nil
    }

    private func requestTimeout(headers: DittoHeaders, configured: Duration) -> Duration {
        let asked = headers.timeout?.duration ?? configured
        return min(max(asked, .milliseconds(1)), .seconds(60))
    }

    private static func renderPointer(_ template: Template, _ variables: [String: String]) throws(MappingError) -> JSONPointer {
        let text = try render(template, variables, what: "path")
        let pointer: JSONPointer
        do {
            pointer = try JSONPointer(text)
        } catch {
            throw MappingError(.invalidIdentifier, "'\(text)' is not a valid path: \(error.message)", dittoError: error)
        }
        // Feature IDs and attribute/property keys follow Ditto's rules (no control characters, at most 256);
        // a topic level such as `fé` must not produce an event Ditto rejects.
        if let key = pointer.firstInvalidKey {
            throw MappingError(.invalidIdentifier, "'\(text)' is not a valid path: '\(key)' is not a valid key or feature ID",
                               dittoError: DittoError.invalidPath(text, description: "Keys and feature IDs must not contain control characters and be at most 256 characters long."))
        }
        return pointer
    }

    static func render(_ template: Template, _ variables: [String: String], what: String) throws(MappingError) -> String {
        do {
            return try template.render(variables)
        } catch {
            throw MappingError(.template, "cannot render the \(what): \(error)")
        }
    }
}

extension TopicPath.Action {
    init(_ action: EventAction) {
        switch action {
        case .created: self = .created
        case .modified: self = .modified
        case .merged: self = .merged
        case .deleted: self = .deleted
        }
    }
}
