public import BridgeConfig
public import DittoProtocol
import Foundation
public import MQTT

/// Where a Ditto live message or live command goes, decided by ``DownlinkMapper/route(_:)``.
public struct DownlinkRoute: Sendable {
    public enum Kind: Sendable, Hashable {
        case message(subject: String, featureID: String?)
        case command(action: TopicPath.Action, path: String)
    }

    public var ruleIndex: Int
    public var ruleName: String
    public var thingID: ThingID
    public var kind: Kind
    /// Thing ID captures, `{subject}`, `{feature}`, path captures, `{action}`, `{thingId}`.
    public var variables: [String: String]
    /// Ditto's `response-required` (default true) and a non-zero timeout.
    public var responseRequired: Bool
    /// The requester's `timeout` (default 60 s, at most 60 s).
    public var timeout: Duration
    /// Whether the rule has a way for the device to answer.
    public var expectsReply: Bool
    /// The device topic and the MQTT 5 response topic as the target rendered them (nil: rendered per request).
    public var deviceTopic: String? = nil
    public var responseTopic: String? = nil
}

/// What a ``DownlinkTarget`` depends on: a request's topic and path. Keep targets by it.
public struct DownlinkSignal: Hashable, Sendable {
    public var topic: TopicPath
    public var path: String

    public init(_ envelope: Envelope) {
        topic = envelope.topic
        path = envelope.path
    }
}

/// The rule that serves one signal (thing, message subject or command and path), found by
/// ``DownlinkMapper/target(_:)``; what a ``DownlinkRoute`` takes from the rules rather than from the request.
public struct DownlinkTarget: Sendable {
    public var ruleIndex: Int
    public var ruleName: String
    public var thingID: ThingID
    public var kind: DownlinkRoute.Kind
    /// Thing ID captures, `{subject}`, `{feature}`, path captures, `{action}`, `{thingId}`.
    public var variables: [String: String]
    /// The rule's reply timeout; nil when the device has no way to answer.
    public var replyTimeout: Duration?
    /// The device topic and the reply topic rendered once for the signal, where they name nothing but what the
    /// signal gives (no `{correlationId}`); nil: rendered for each request.
    public var deviceTopic: String?
    public var responseTopic: String?
}

/// An answer a device published on a reply topic.
public struct DeviceReply: Sendable {
    public var ruleIndex: Int
    /// The request's Ditto correlation id, recovered from correlation data, topic or payload.
    public var correlationID: String
    public var status: Int?
    public var payload: [UInt8]
    public var contentType: String?
    public var properties: PublishProperties
    /// Headers that travelled in a 3.1.1 wrapper.
    public var carriedHeaders: [(name: String, value: String)]
    /// What the rule's reply topic captured from the topic the answer came on, and that reply topic as written.
    public var topicValues: [String: String] = [:]
    public var replyTopicSource: String?
}

/// Ditto live messages and live commands -> device topics and payloads; device answers -> Ditto responses.
///
/// Rules are tried in ``BridgeConfiguration/downlinkRulesByPrecedence`` order (`priority`, then file order);
/// the first whose `match` and thing ID pattern fit takes the request.
public struct DownlinkMapper: Sendable {
    /// In the order they are tried.
    private let rules: [Rule]

    /// A rule and where its device answers. The rule sits in a box of its own: a round trip reads its rule four
    /// times, and taking a ``DownlinkRule`` out of an array (even as a `borrowing` argument) copies it whole, a
    /// retain and a release of each of its many strings and arrays. Through the box the hot paths read only the
    /// fields they use (`box.rule.headers`).
    private struct Rule: Sendable {
        let box: RuleBox
        /// ``DownlinkMapper/replyTopic(of:)`` of the rule.
        let replyTopic: TopicTemplate?
    }

    private final class RuleBox: Sendable {
        let rule: DownlinkRule
        init(_ rule: DownlinkRule) { self.rule = rule }
    }

    /// What a Ditto Protocol JSON payload is (Ditto's own MQTT connections use it).
    public static let dittoProtocolContentType = "application/vnd.eclipse.ditto+json"

    /// The placeholder for the request's correlation id in device and reply topics.
    static let correlationIDPlaceholder = "correlationId"

    /// Ditto's default and maximum live timeout.
    public static let maximumTimeout: Duration = .seconds(60)

    public init(configuration: BridgeConfiguration) {
        self.init(rules: configuration.downlinkRulesByPrecedence)
    }

    public init(rules: [DownlinkRule]) {
        self.rules = rules.map { Rule(box: RuleBox($0), replyTopic: Self.replyTopic(of: $0.reply)) }
    }

    /// The MQTT subscriptions the device side needs for answers.
    public var replyFilters: [String] {
        var seen = Set<String>()
        return rules.compactMap { $0.replyTopic?.filter }.filter { seen.insert($0).inserted }
    }

    /// Where a rule's device answers, if they come on a topic of their own.
    static func replyTopic(of reply: ReplySpec) -> TopicTemplate? {
        reply.mode == .none ? nil : reply.topic
    }

    // MARK: Ditto -> device

    public func route(_ envelope: Envelope) throws(MappingError) -> DownlinkRoute {
        try checkRoutable(envelope)
        return route(envelope, to: try target(envelope))
    }

    /// What every request must pass before any rule is looked at: it names a thing, is a live request (not a
    /// response) and keeps Ditto's header limit. ``route(_:)`` checks it; a caller that keeps targets checks it
    /// for every request before ``route(_:to:)``.
    public func checkRoutable(_ envelope: Envelope) throws(MappingError) {
        guard envelope.topic.thingID != nil else { throw Self.addressesNoThing(envelope) }
        // Rule 1: with a `status` it is a response (e.g. Ditto's answer to a device's request), never a request
        // for a device; and twin commands are Ditto's own business, not the device's.
        guard !envelope.isResponse else {
            throw MappingError(.noRule, "\(envelope.topic) with status \(envelope.status ?? 0) is a response, not a request")
        }
        guard envelope.topic.channel == .live else {
            throw MappingError(.noRule, "the bridge takes live signals, not \(envelope.topic.channel.rawValue) \(envelope.topic)")
        }
        // Ditto itself never sends headers over its limit; a request that has them did not come through Ditto.
        do {
            try envelope.headers.checkSize()
        } catch {
            throw MappingError(protocolError: error)
        }
    }

    /// The rule that serves a routable request's signal, and what it captured. It depends on the envelope's
    /// `topic` and `path` only, never on its headers or value, so a caller may keep it per (topic, path) for as
    /// long as these rules hold.
    public func target(_ envelope: Envelope) throws(MappingError) -> DownlinkTarget {
        guard let thingID = envelope.topic.thingID else { throw Self.addressesNoThing(envelope) }
        let kind: DownlinkRoute.Kind
        switch envelope.thingSignal {
        case .message(let messagePath, nil)?:
            kind = .message(subject: messagePath.subject, featureID: messagePath.featureID)
        case .command(let action, let path, nil)?:
            kind = .command(action: action, path: path)
        case nil:
            throw MappingError(.invalidProtocol, "\(envelope.topic) on \(envelope.path) is not a valid thing signal")
        default:
            throw MappingError(.noRule, "the bridge takes live messages and live commands, not \(envelope.topic.criterion)")
        }
        for (index, entry) in rules.enumerated() {
            let rule = entry.box.rule
            // The signal test is cheap and rejects most rules, so it goes before the thing ID's.
            let added: [String: String]?
            switch kind {
            case .message(let subject, let featureID):
                added = rule.matchMessage(subject: subject, feature: featureID)
            case .command(let action, let path):
                added = CommandAction(rawValue: action.rawValue).flatMap { rule.matchCommand(action: $0, path: path) }
            }
            guard let added, var variables = rule.values(for: thingID) else { continue }
            variables.merge(added) { thing, _ in thing }
            // A template that fails to render here is rendered again per request, which reports the failure.
            func rendered(_ template: TopicTemplate?) -> String? {
                guard let template, !template.placeholders.contains(Self.correlationIDPlaceholder) else { return nil }
                return try? template.render(variables)
            }
            return DownlinkTarget(ruleIndex: index, ruleName: rule.name, thingID: thingID, kind: kind, variables: variables,
                                  replyTimeout: rule.reply.mode == .none ? nil : rule.reply.timeout,
                                  deviceTopic: rendered(rule.topic),
                                  responseTopic: rule.reply.mode == .mqtt5 ? rendered(rule.reply.topic) : nil)
        }
        let what: String = switch kind {
        case .message(let subject, let featureID?): "feature \(featureID) message \(subject)"
        case .message(let subject, nil): "message \(subject)"
        case .command(let action, let path): "\(action.rawValue) command on \(path)"
        }
        throw MappingError(.noRule, "no downlink rule serves the \(what) for thing \(thingID)")
    }

    private static func addressesNoThing(_ envelope: Envelope) -> MappingError {
        MappingError(.noRule, "topic \(envelope.topic) does not address a thing")
    }

    /// The route of a routable request (``checkRoutable(_:)``) to its signal's target: the target's rule with the
    /// request's own `response-required` and `timeout`.
    public func route(_ envelope: Envelope, to target: DownlinkTarget) -> DownlinkRoute {
        let timeout = Self.timeout(of: envelope.headers)
        let responseRequired = (envelope.headers.responseRequired ?? true) && timeout > .zero
        return DownlinkRoute(ruleIndex: target.ruleIndex, ruleName: target.ruleName, thingID: target.thingID,
                             kind: target.kind, variables: target.variables, responseRequired: responseRequired,
                             timeout: target.replyTimeout.map { min(timeout, $0) } ?? timeout,
                             expectsReply: target.replyTimeout != nil, deviceTopic: target.deviceTopic,
                             responseTopic: target.responseTopic)
    }

    /// What the bridge publishes to the device for a routed request.
    ///
    /// - Parameter messageExpiry: seconds left before the requester gives up (MQTT 5 message expiry).
    public func devicePublication(for envelope: Envelope, route: DownlinkRoute,
                                  messageExpiry: UInt32?) throws(MappingError) -> MQTTMessage {
        try devicePublication(for: envelope, route: route, box: rules[route.ruleIndex].box, messageExpiry: messageExpiry)
    }

    // The rule is read through its box, here and below (see `Rule`).
    private func devicePublication(for envelope: Envelope, route: DownlinkRoute, box: RuleBox,
                                   messageExpiry: UInt32?) throws(MappingError) -> MQTTMessage {
        let correlationID = envelope.headers.correlationID ?? ""
        // The request's values, made only for a topic its target did not render.
        var requestVariables: [String: String]?
        func variables() -> [String: String] {
            if let requestVariables { return requestVariables }
            var values = route.variables
            values[Self.correlationIDPlaceholder] = TopicToken.encode(correlationID)
            requestVariables = values
            return values
        }

        let topic: String
        if let kept = route.deviceTopic {
            topic = kept
        } else {
            do {
                topic = try box.rule.topic.render(variables())
            } catch {
                throw MappingError(.invalidIdentifier, "cannot render the device topic \(box.rule.topic.source): \(error)")
            }
        }
        let mapper = HeaderMapper(policy: box.rule.headers)
        let wrapper = box.rule.headers.mqtt311 == .wrapper

        let value: JSONValue? = envelope.value
        let contentType = envelope.headers.contentType
        var payload: [UInt8]
        switch box.rule.payload {
        case .value:
            payload = value.map { JSON.serialize($0) } ?? []
        case .text:
            switch value {
            case .string(let text)?: payload = Array(text.utf8)
            case let other?: payload = JSON.serialize(other)
            case nil: payload = []
            }
        case .bytes:
            payload = MessagePayload.from(envelopeValue: value, contentType: contentType).bytes
        case .envelope:
            var forwarded = envelope
            forwarded.headers = deviceHeaders(envelope.headers, mapper: mapper)
            payload = forwarded.encoded()
        }
        // JSON cannot carry raw bytes: in a wrapper they travel as base64, like Ditto's own binary values.
        let inner: JSONValue = switch box.rule.payload {
        case .value: value ?? .null
        case .bytes: .string(Base64.encode(payload))
        case .text, .envelope: .string(String(decoding: payload, as: UTF8.self))
        }
        let correlationInPayload = box.rule.reply.mode == .payload && box.rule.payload != .envelope && !wrapper
        if wrapper, box.rule.payload != .envelope {
            payload = HeaderWrapper.wrap(headers: deviceHeaders(envelope.headers, mapper: mapper).map { ($0.name, $0.value) },
                                         value: inner)
        } else if correlationInPayload {
            payload = JSON.serialize(Self.payloadModeRequest(correlationID: correlationID, value: inner, reply: box.rule.reply))
        }

        var properties = mapper.deviceProperties(headers: envelope.headers, messageExpiry: messageExpiry)
        // The content type describes the payload: for an envelope or a wrapper that is the JSON around the value
        // (the value's own content type travels inside it).
        if box.rule.payload == .envelope {
            properties.contentType = Self.dittoProtocolContentType
        } else if wrapper || correlationInPayload {
            properties.contentType = "application/json"
        }
        // Everything but raw bytes is UTF-8 text (JSON, text, envelope, wrapper).
        properties.payloadFormatIndicator = box.rule.payload == .bytes && !wrapper && !correlationInPayload ? nil : 1
        if box.rule.reply.mode == .mqtt5, route.responseRequired, let replyTopic = box.rule.reply.topic {
            do {
                properties.responseTopic = try route.responseTopic ?? replyTopic.render(variables())
            } catch {
                throw MappingError(.template, "cannot render the response topic \(replyTopic.source): \(error)")
            }
        }
        return MQTTMessage(topic: topic, payload: payload, qos: box.rule.qos, retain: false,
                               properties: properties)
    }

    /// The headers a device sees in a wrapper or an envelope: correlation id, content type, Ditto's request
    /// semantics and the custom headers the rule lets through.
    private func deviceHeaders(_ headers: DittoHeaders, mapper: HeaderMapper) -> DittoHeaders {
        var result = DittoHeaders()
        let carried = [
            ReservedHeaders.correlationID, ReservedHeaders.contentType, ReservedHeaders.responseRequired,
            ReservedHeaders.timeout,
        ]
        for name in carried {
            if let value = headers[name] { result[name] = value }
        }
        for (name, value) in mapper.customHeaders(headers) { result[name] = value }
        return result
    }

    // MARK: device -> Ditto

    /// A rule whose reply topic a device topic is, and what the reply topic captured from it.
    public struct ReplyTopicMatch: Sendable {
        public var ruleIndex: Int
        public var captured: [String: String]
    }

    /// Every rule whose reply topic `topic` is, in rule order; empty when it is no reply topic. It depends on the
    /// topic only, so a caller may keep it per topic for as long as these rules hold.
    public func replyTopicMatches(_ topic: String) -> [ReplyTopicMatch] {
        rules.indices.compactMap { index in
            rules[index].replyTopic?.match(topic).map { ReplyTopicMatch(ruleIndex: index, captured: $0) }
        }
    }

    /// Recognises a device's answer by the reply topics of the rules.
    public func reply(from message: MQTTMessage) -> DeviceReply? {
        reply(from: message, matches: replyTopicMatches(message.topic))
    }

    /// The same with the topic's ``replyTopicMatches(_:)`` at hand.
    public func reply(from message: MQTTMessage, matches: [ReplyTopicMatch]) -> DeviceReply? {
        for match in matches {
            if let reply = reply(from: message, match: match, box: rules[match.ruleIndex].box) { return reply }
        }
        return nil
    }

    private func reply(from message: MQTTMessage, match: ReplyTopicMatch, box: RuleBox) -> DeviceReply? {
        let index = match.ruleIndex
        let captured = match.captured
        let source = box.rule.reply.topic?.source
        switch box.rule.reply.mode {
        case .none:
            return nil
        case .mqtt5:
            guard let data = message.properties.correlationData, !data.isEmpty else { return nil }
            let status = Self.status(
                message.properties.userProperties.last { $0.name.lowercased() == ReservedHeaders.status }?.value)
            var properties = message.properties
            properties.userProperties.removeAll { $0.name.lowercased() == ReservedHeaders.status }
            return DeviceReply(ruleIndex: index, correlationID: CorrelationID.fromCorrelationData(data), status: status,
                               payload: message.payload, contentType: message.properties.contentType,
                               properties: properties, carriedHeaders: [], topicValues: captured,
                               replyTopicSource: source)
        case .topic:
            var payload = message.payload
            var carried: [(name: String, value: String)] = []
            if box.rule.headers.mqtt311 == .wrapper, let unwrapped = try? HeaderWrapper.unwrap(payload) {
                (payload, carried) = (unwrapped.value ?? [], unwrapped.headers)
            }
            let token = captured[Self.correlationIDPlaceholder]
                ?? carried.last { $0.name.lowercased() == ReservedHeaders.correlationID }.map(\.value)
            guard let token else { return nil }
            let status = Self.status(captured["status"])
                ?? Self.status(carried.last { $0.name.lowercased() == ReservedHeaders.status }?.value)
            carried.removeAll { [ReservedHeaders.status, ReservedHeaders.correlationID].contains($0.name.lowercased()) }
            return DeviceReply(ruleIndex: index, correlationID: TopicToken.decode(token), status: status,
                               payload: payload, contentType: message.properties.contentType,
                               properties: message.properties, carriedHeaders: carried, topicValues: captured,
                               replyTopicSource: source)
        case .payload:
            // Any JSON number: a value Ditto cannot read is refused when the response is built, with a reason the
            // requester gets, instead of the answer going unrecognised until the request times out.
            guard let document = try? JSON.parseAnyNumbers(message.payload),
                  let read = Self.payloadModeReply(document, reply: box.rule.reply)
            else { return nil }
            let (correlationID, status, value) = read
            return DeviceReply(ruleIndex: index, correlationID: correlationID, status: status,
                               payload: value.map { JSON.serialize($0) } ?? [],
                               contentType: "application/json", properties: message.properties, carriedHeaders: [],
                               topicValues: captured, replyTopicSource: source)
        }
    }

    /// The Ditto response to a request, built from the device's answer: same topic, correlation id and path,
    /// the device's status (or the action's usual one), its value and content type.
    public func response(to request: Envelope, route: DownlinkRoute, reply: DeviceReply) throws(MappingError) -> Envelope {
        try response(to: request, route: route, reply: reply, box: rules[route.ruleIndex].box)
    }

    private func response(to request: Envelope, route: DownlinkRoute, reply: DeviceReply,
                          box: RuleBox) throws(MappingError) -> Envelope {
        let correlationID = request.headers.correlationID ?? reply.correlationID
        var properties = reply.properties
        properties.correlationData = nil
        properties.contentType = nil
        var headers = try HeaderMapper(policy: box.rule.headers).dittoHeaders(
            properties: properties, carriedHeaders: reply.carriedHeaders, variables: route.variables,
            generateCorrelationID: { correlationID })
        headers[ReservedHeaders.correlationID] = correlationID

        switch route.kind {
        case .message:
            let status = reply.status ?? box.rule.reply.defaultStatus ?? 200
            var payload: MessagePayload?
            if !reply.payload.isEmpty {
                try PayloadReader.checkSize(reply.payload)
                let contentType = reply.contentType
                    ?? Self.guessContentType(reply.payload, payloadFormatIndicator: reply.properties.payloadFormatIndicator)
                payload = MessagePayload.from(bytes: reply.payload, contentType: contentType)
                headers[ReservedHeaders.contentType] = contentType
            }
            return Envelope.messageResponse(to: request, status: status, payload: payload, headers: headers)
        case .command(let action, _):
            let status = reply.status ?? box.rule.reply.defaultStatus ?? ThingCommandResponseStatus.usual(for: action)
            // Spelled out: a bare `nil` next to a JSONValue would become JSON null (JSONValue is nil-literal
            // expressible), and an answer without payload would carry `"value": null`.
            // JSON as JSON, anything else as a string; JSON with a number Ditto cannot read is not turned into a
            // string (that would change what the device said): the requester learns why it gets no value.
            var value: JSONValue? = Optional.none
            if !reply.payload.isEmpty {
                if let document = try? JSON.parseAnyNumbers(reply.payload) {
                    if let number = document.numberDittoCannotRead {
                        return Envelope.errorResponse(
                            to: request,
                            error: BridgeErrors.deviceReplyInvalid(JSONNumber.rangeRefusal(literal: number.literal)
                                ?? "The device's answer holds the number \(number.literal), which Ditto cannot read."),
                            headers: headers)
                    }
                    value = document
                } else {
                    value = .string(String(decoding: reply.payload, as: UTF8.self))
                }
            }
            if status >= 400 {
                return Envelope.errorResponse(to: request, error: Self.deviceError(status: status, value: value), headers: headers)
            }
            let success = ThingCommandResponseStatus.success(for: action, deviceStatus: status)
            if action == .retrieve, value == nil {
                return Envelope.errorResponse(
                    to: request, error: BridgeErrors.deviceReplyInvalid("The device answered the retrieve command without a value."),
                    headers: headers)
            }
            // A created resource is what the command asked for when the device does not echo it.
            let responseValue: JSONValue? = success == 204 ? Optional.none
                : (value ?? Self.requested(request, thingID: route.thingID))
            let response = Envelope.commandResponse(to: request, status: success, value: responseValue, headers: headers)
            if let invalid = Self.unfitAnswer(response, thingID: route.thingID) {
                return Envelope.errorResponse(to: request, error: invalid, headers: headers)
            }
            return response
        }
    }

    /// What a command asked to create or modify, as the created resource: a thing created at `/` without a
    /// `thingId` in the command is the topic's thing (Ditto's `CreateThing` takes it from there), and its create
    /// response must name it.
    static func requested(_ request: Envelope, thingID: ThingID) -> JSONValue? {
        guard request.topic.action == .create, request.valueThingID == nil, case .object(var thing)? = request.value
        else { return request.value }
        thing["thingId"] = .string(thingID.description)
        return .object(thing)
    }

    /// Why a response built from a device's answer is not one Ditto would take for the request (nil: it is):
    /// the answer's value is not the resource the command's path names (a feature that is not an object, a
    /// thing without its `thingId` in a create response), or it is another thing than the request's. Ditto
    /// would refuse it, or route it to another thing, and the requester would only see its timeout.
    static func unfitAnswer(_ response: Envelope, thingID: ThingID) -> DittoError? {
        do {
            try response.validate()
        } catch {
            return BridgeErrors.deviceReplyInvalid(
                "The device's answer does not fit the \(response.topic.action?.rawValue ?? "") command on '\(response.path)': \(error.message)",
                dittoError: error)
        }
        if let named = response.valueThingID, !named.utf8.elementsEqual(thingID.description.utf8) {
            return BridgeErrors.deviceReplyInvalid(
                "The device answered with thing '\(named)' for a command to thing '\(thingID)'.")
        }
        return nil
    }

    // MARK: helpers

    /// A device's status if it is an HTTP status Ditto knows (100-599). Anything else is ignored: an envelope
    /// with an unknown status would lose it in Ditto and turn from a response into a new request (rule 1).
    static func status(_ text: String?) -> Int? {
        guard let text, let status = Int(text.trimmingCharacters(in: .whitespaces)), (100...599).contains(status)
        else { return nil }
        return status
    }

    static func timeout(of headers: DittoHeaders) -> Duration {
        guard let timeout = headers.timeout?.duration else { return maximumTimeout }
        return min(timeout, maximumTimeout)
    }

    static func deviceError(status: Int, value: JSONValue?) -> DittoError {
        var code = "bridge:device.error"
        var message = "The device answered with status \(status)."
        var description: String? = nil
        if case .object(let object)? = value {
            if case .string(let text)? = object["error"] { code = text }
            if case .string(let text)? = object["message"] { message = text }
            if case .string(let text)? = object["description"] { description = text }
        } else if case .string(let text)? = value, !text.isEmpty {
            message = text
        }
        return DittoError(status: status, error: code, message: message, description: description)
    }

    /// The content type of a reply that names none. An explicit MQTT 5 payload format indicator 0 ("unspecified
    /// bytes") keeps the bytes as they are even when they happen to be valid UTF-8.
    static func guessContentType(_ payload: [UInt8], payloadFormatIndicator: UInt8? = nil) -> String {
        if payload.isEmpty { return "application/json" }
        if payloadFormatIndicator == 0 { return "application/octet-stream" }
        if (try? JSON.parse(payload)) != nil { return "application/json" }
        if String(validating: payload, as: UTF8.self) != nil { return MessagePayload.textContentType }
        return "application/octet-stream"
    }

    /// `reply.mode: payload`: the request the device gets is one new object holding the correlation id at
    /// `correlation-pointer` and the value Ditto sent, untouched, at the value pointer (default `/value`);
    /// `check` makes sure the two never overlap. `{"id": "<correlation-id>", "value": {...}}`.
    public static func payloadModeRequest(correlationID: String, value: JSONValue, reply: ReplySpec) -> JSONValue {
        var document = JSONValue.object(JSONObject())
        if let pointer = reply.effectiveValuePointer {
            document = pointer.setting(value, in: document)
        }
        if let pointer = reply.correlationPointer {
            document = pointer.setting(.string(correlationID), in: document)
        }
        return document
    }

    /// `reply.mode: payload`: the correlation id (a string or number at `correlation-pointer`), the status (at
    /// `status-pointer`) and the value (at the value pointer) of a device's JSON reply; nil without an id.
    public static func payloadModeReply(_ document: JSONValue, reply: ReplySpec)
        -> (correlationID: String, status: Int?, value: JSONValue?)?
    {
        guard let id = reply.correlationPointer?.evaluate(in: document) else { return nil }
        let correlationID: String
        switch id {
        case .string(let text): correlationID = text
        case .number(let number): correlationID = number.description
        default: return nil
        }
        var status: Int?
        switch reply.statusPointer?.evaluate(in: document) {
        case .number(let number)?: status = Self.status(number.description)
        case .string(let text)?: status = Self.status(text)
        default: break
        }
        let value: JSONValue? = if let valuePointer = reply.effectiveValuePointer {
            valuePointer.evaluate(in: document)
        } else {
            document
        }
        return (correlationID, status, value)
    }
}

extension DownlinkMapper {
    /// Whether `topic` is where the device a request was routed to answers: the request's rule's reply topic
    /// with the same values for every placeholder the route captured (a device answering on another device's
    /// reply topic is not answering this request).
    public func isReplyTopic(_ topic: String, of route: DownlinkRoute) -> Bool {
        guard rules.indices.contains(route.ruleIndex), let template = rules[route.ruleIndex].replyTopic,
              let captured = template.match(topic)
        else { return false }
        return Self.agree(captured, route)
    }

    /// The same for an answer ``reply(from:)`` recognised on `topic`: when the route's rule has the reply topic that
    /// recognised it, the topic's values are at hand and the topic is not matched again. (The answer may have been
    /// recognised by other rules than the request was routed by: after a reload, or by a rule before it.)
    public func isAnswer(_ reply: DeviceReply, on topic: String, to route: DownlinkRoute) -> Bool {
        if let source = reply.replyTopicSource, rules.indices.contains(route.ruleIndex),
           rules[route.ruleIndex].replyTopic?.source == source {
            return Self.agree(reply.topicValues, route)
        }
        return isReplyTopic(topic, of: route)
    }

    private static func agree(_ captured: [String: String], _ route: DownlinkRoute) -> Bool {
        for (name, value) in captured where name != correlationIDPlaceholder && name != "status" {
            if let expected = route.variables[name], expected != value { return false }
        }
        return true
    }
}
