public import BridgeConfig
public import DittoProtocol
public import MQTT

/// A Ditto Protocol message as the bridge publishes it on the Ditto-side broker: topic, envelope and
/// MQTT 5 properties. `run` and `map` both build it here, so `map` prints exactly what `run` sends (`run`
/// writes most events through their topic's template, ``encodedUplink(_:route:mapper:environment:)``: the same
/// bytes, held to it by `EventTemplateTests`).
public struct DittoPublication: Sendable {
    public var rule: String
    public var thingID: ThingID
    /// The Ditto-side MQTT topic (`ditto.publish-topic` rendered for the thing).
    public var topic: String
    public var envelope: Envelope
    /// Set when a device expects Ditto's answer: what the bridge needs to route it back.
    public var request: DeviceRequest?

    /// The MQTT 5 properties of the publish to Ditto.
    public var properties: PublishProperties {
        Self.properties(for: envelope)
    }

    /// The MQTT 5 properties for publishing `envelope` to Ditto's MQTT-5 connection. Its header mapping
    /// (`Config/ditto-connection.json`) fills the headers the envelope lacks from the publish: `correlation-id`
    /// from the correlation data, `content-type` from the content type, `reply-to` from the response topic
    /// (the envelope's own headers win over the mapped ones in Ditto's connectivity). So each property only mirrors the envelope's own header: an MQTT
    /// content type such as `application/vnd.eclipse.ditto+json` on an envelope without `content-type` would
    /// add one and make Ditto read a binary message's base64 value as JSON.
    public static func properties(for envelope: Envelope) -> PublishProperties {
        properties(correlationID: envelope.headers.correlationID, contentType: envelope.headers.contentType,
                   replyTo: envelope.headers.replyTo)
    }

    /// The same, from those three headers of the envelope.
    public static func properties(correlationID: String?, contentType: String?, replyTo: String?) -> PublishProperties {
        var properties = PublishProperties()
        properties.contentType = contentType
        if let correlationID { properties.correlationData = Array(correlationID.utf8) }
        properties.responseTopic = replyTo
        return properties
    }

    /// A device message's publish to Ditto as bytes: topic, envelope encoding and MQTT 5 properties.
    public struct Encoded: Sendable, Hashable {
        public var rule: String
        public var topic: String
        public var payload: [UInt8]
        public var properties: PublishProperties
    }

    /// This publication as bytes.
    public var encoded: Encoded {
        Encoded(rule: rule, topic: topic, payload: envelope.encoded(), properties: properties)
    }

    /// What ``uplink(_:route:mapper:environment:)`` publishes for an event, with the same calls to `environment`,
    /// written into the topic's event template instead of building headers and an envelope: the same topic, bytes
    /// and properties.
    ///
    /// Nil, with nothing drawn from `environment`, where `uplink` must do the work: the topic has no template
    /// (another rule kind, or see `UplinkMapper.eventTemplate`), the message brings MQTT 5 properties that become
    /// headers, its payload is refused or its Ditto-side topic cannot be rendered (`uplink` reports why, in its
    /// order).
    public static func encodedUplink(
        _ message: MQTTMessage, route: Route, mapper: UplinkMapper, environment: UplinkEnvironment
    ) throws(MappingError) -> Encoded? {
        let uplink = route.uplink
        guard case .success(let topic) = route.topic, case .success(let event)? = uplink.event?.shape,
              let template = event.template, case .success(let rules) = event.rules,
              HeaderMapper.takesNoHeaders(fromEvent: message.properties)
        else { return nil }
        let format = uplink.rule.rule.payload
        let value: JSONValue
        let compactText: ArraySlice<UInt8>?
        if let compact = PayloadReader.compactJSON(message.payload, format: format) {
            // The payload's bytes are the value: nothing to build.
            guard rules.admits(compact.kind) else { return nil }
            (value, compactText) = (.null, compact.text)
        } else {
            guard let parsed = try? PayloadReader.jsonValueKeepingText(message.payload, format: format),
                  rules.admits(parsed.value) else { return nil }
            (value, compactText) = parsed
        }
        // `map`'s order: the headers' correlation id, then the revision and the timestamp.
        let correlationID = environment.newCorrelationID()
        let revision = environment.nextRevision(uplink.thingID)
        let timestamp = environment.timestamp()
        guard Envelope.EventTemplate.accepts(correlationID: correlationID) else {
            // An id the template was not checked for (never one the bridge generates): the full mapping with the
            // same values.
            let drawn = UplinkEnvironment(nextRevision: { _ in revision }, timestamp: { timestamp },
                                          newCorrelationID: { correlationID })
            return try Self.uplink(message, route: route, mapper: mapper, environment: drawn).encoded
        }
        return Encoded(
            rule: uplink.rule.rule.name, topic: topic,
            payload: template.encode(thingID: uplink.thingID, correlationID: correlationID, value: value,
                                     compactText: compactText, revision: revision, timestamp: timestamp),
            properties: properties(correlationID: correlationID, contentType: template.contentType,
                                   replyTo: template.replyTo))
    }

    /// What a device topic decides (``UplinkMapper/route(topic:)``) plus the Ditto-side topic of its thing:
    /// everything per message that does not depend on the payload, so the runtime keeps it per topic.
    public struct Route: Sendable {
        public let uplink: UplinkRoute
        /// `ditto.publish-topic` for the thing, or why it cannot be rendered (reported after the mapping). One
        /// word: the topic is written per message from the template all routes share where that gives what
        /// rendering gave; a topic of its own and the rare refusal are boxed.
        private let rendered: Rendered

        fileprivate enum Rendered {
            case shared(ThingTopic)
            case own(OwnTopic)
            case refused(Refusal)
        }

        final class OwnTopic: Sendable {
            let topic: String

            init(_ topic: String) {
                self.topic = topic
            }
        }

        final class Refusal: Sendable {
            let error: MappingError

            init(_ error: MappingError) {
                self.error = error
            }
        }

        /// Everything of a route but its thing: a table that keeps many routes keeps the thing apart, once per
        /// thing, and puts the route together again with ``init(_:thingID:)`` where a message needs it.
        public struct Parts: Sendable {
            fileprivate let rule: UplinkRoute.SharedRule
            fileprivate let variables: [String: String]?
            fileprivate let event: UplinkRoute.EventRoute?
            fileprivate let rendered: Rendered
        }

        public var parts: Parts {
            Parts(rule: uplink.rule, variables: uplink.keptVariables, event: uplink.event, rendered: rendered)
        }

        /// The route whose ``parts`` these are, for the thing it was made for.
        public init(_ parts: Parts, thingID: ThingID) {
            uplink = UplinkRoute(rule: parts.rule, thingID: thingID, variables: parts.variables, event: parts.event)
            rendered = parts.rendered
        }

        var topic: Result<String, MappingError> {
            switch rendered {
            case .shared(let template): .success(template.topic(for: uplink.thingID))
            case .own(let own): .success(own.topic)
            case .refused(let refusal): .failure(refusal.error)
            }
        }

        init(uplink: UplinkRoute, topic: Result<String, MappingError>, shared: ThingTopic?) {
            self.uplink = uplink
            switch topic {
            case .success(let text):
                if let shared, shared.topic(for: uplink.thingID) == text {
                    rendered = .shared(shared)
                } else {
                    rendered = .own(OwnTopic(text))
                }
            case .failure(let error):
                rendered = .refused(Refusal(error))
            }
        }
    }

    /// A Ditto-side topic template rendered once for ``Envelope/EventTemplate/thingSentinel`` and cut where the
    /// thing's namespace and name went: a thing's topic is the pieces with its parts in between. A route uses it
    /// only where that is what ``render(_:for:)`` gives for its thing (not so after a transform such as `|lower`),
    /// so rendering, and its refusals, stay in one place.
    final class ThingTopic: Sendable {
        let template: TopicTemplate
        /// `pieces[i]` comes before `slots[i]`; the last piece after the last slot.
        private let pieces: [String]
        private let slots: [Slot]
        /// The pieces' bytes together.
        private let piecesLength: Int

        private enum Slot {
            case namespace, name
        }

        init?(_ template: TopicTemplate) {
            let thing = Envelope.EventTemplate.thingSentinel
            guard let text = try? DittoPublication.render(template, for: thing) else { return nil }
            let marks = [(Slot.namespace, Array(thing.namespace.utf8)), (.name, Array(thing.name.utf8))]
            let bytes = Array(text.utf8)
            var pieces: [String] = []
            var slots: [Slot] = []
            var start = 0
            var index = 0
            while index < bytes.count {
                if let (slot, mark) = marks.first(where: { bytes[index...].starts(with: $0.1) }) {
                    pieces.append(String(decoding: bytes[start..<index], as: UTF8.self))
                    slots.append(slot)
                    index += mark.count
                    start = index
                } else {
                    index += 1
                }
            }
            pieces.append(String(decoding: bytes[start...], as: UTF8.self))
            self.template = template
            self.pieces = pieces
            self.slots = slots
            piecesLength = pieces.reduce(0) { $0 + $1.utf8.count }
        }

        /// Written per message: sized once, so that the appends never grow the string.
        func topic(for thingID: ThingID) -> String {
            var count = piecesLength
            for slot in slots { count += slot == .namespace ? thingID.namespace.utf8.count : thingID.name.utf8.count }
            var topic = String()
            topic.reserveCapacity(count)
            topic += pieces[0]
            for index in slots.indices {
                topic += slots[index] == .namespace ? thingID.namespace : thingID.name
                topic += pieces[index + 1]
            }
            return topic
        }
    }

    /// The route of a device topic; nil when no uplink rule takes it.
    public static func route(topic: String, mapper: UplinkMapper, ditto: DittoSettings) throws(MappingError) -> Route? {
        guard let uplink = try mapper.route(topic: topic) else { return nil }
        let rendered: Result<String, MappingError>
        do throws(MappingError) {
            rendered = .success(try render(ditto.publishTopic, for: uplink.thingID))
        } catch {
            rendered = .failure(error)
        }
        let shared = mapper.publishTopic.flatMap { $0.template == ditto.publishTopic ? $0 : nil }
        return Route(uplink: uplink, topic: rendered, shared: shared)
    }

    /// Maps one device message (requests get `reply-to` = `ditto.reply-topic` from the mapper).
    public static func uplink(
        _ message: MQTTMessage, mapper: UplinkMapper, ditto: DittoSettings, environment: UplinkEnvironment
    ) throws(MappingError) -> DittoPublication {
        guard let route = try route(topic: message.topic, mapper: mapper, ditto: ditto) else {
            throw UplinkMapper.noRule(message.topic)
        }
        return try uplink(message, route: route, mapper: mapper, environment: environment)
    }

    /// Maps one device message whose topic took `route` (from ``route(topic:mapper:ditto:)`` with this mapper).
    public static func uplink(
        _ message: MQTTMessage, route: Route, mapper: UplinkMapper, environment: UplinkEnvironment
    ) throws(MappingError) -> DittoPublication {
        let result = try mapper.map(message, route: route.uplink, environment: environment)
        return DittoPublication(
            rule: result.rule, thingID: result.thingID, topic: try route.topic.get(),
            envelope: result.envelope, request: result.request)
    }

    public static func uplink(
        _ message: MQTTMessage, configuration: BridgeConfiguration, environment: UplinkEnvironment
    ) throws(MappingError) -> DittoPublication {
        try uplink(message, mapper: UplinkMapper(configuration: configuration), ditto: configuration.ditto,
                   environment: environment)
    }

    /// A Ditto-side topic (`publish-topic`, `reply-topic`) for a thing.
    public static func render(_ template: TopicTemplate, for thingID: ThingID) throws(MappingError) -> String {
        do {
            return try template.render(["thingId": thingID.description, "namespace": thingID.namespace,
                                        "thingName": thingID.name])
        } catch {
            throw MappingError(.template, "cannot render the Ditto-side topic \(template.source) for \(thingID): \(error)")
        }
    }
}
