import BridgeConfig
import BridgeMapping
import DittoProtocol
import Foundation
import MQTT
import Testing

/// Device MQTT -> Ditto live events and live messages (issue 3), from YAML to re-decoded envelopes.
@Suite struct UplinkMapperTests {
    static let yaml = """
        defaults: { namespace: org.example, request-timeout: 10s }
        uplink:
          - name: telemetry
            topic: "devices/{deviceId}/telemetry/{sensor}"
            thing-id: "{namespace}:{deviceId|lower}"
            event: { action: modified, path: "/features/{sensor}/properties/value" }
            payload: { format: json, pointer: /value }
          - name: state
            topic: "devices/{deviceId}/state"
            thing-id: "{namespace}:{deviceId}"
            event: { action: merged, path: "/features/state/properties" }
            payload: json
          - name: environment
            topic: "devices/{deviceId}/env"
            thing-id: "{namespace}:{deviceId}"
            event: { action: created, path: "/features/env/properties" }
            payload: { format: json, fields: { temperature: /t, humidity: /h/value } }
          - name: number
            topic: "devices/{deviceId}/number/{sensor}"
            thing-id: "{namespace}:{deviceId}"
            event: { path: "/features/{sensor}/properties/value" }
            payload: number
          - name: boolean
            topic: "devices/{deviceId}/switch/{sensor}"
            thing-id: "{namespace}:{deviceId}"
            event: { path: "/features/{sensor}/properties/on" }
            payload: boolean
          - name: label
            topic: "devices/{deviceId}/label"
            thing-id: "{namespace}:{deviceId}"
            event: { path: "/attributes/label" }
            payload: text
          - name: frame
            topic: "devices/{deviceId}/frame"
            thing-id: "{namespace}:{deviceId}"
            event: { path: "/attributes/frame" }
            payload: bytes
          - name: thing-message
            topic: "devices/{deviceId}/events/{subject}"
            thing-id: "{namespace}:{deviceId}"
            message: { subject: "{subject}" }
            payload: json
          - name: feature-message
            topic: "devices/{deviceId}/features/{feature}/events/{kind}"
            thing-id: "{namespace}:{deviceId}"
            message: { feature: "{feature}", subject: "alarm-{kind}" }
            payload: text
          - name: number-message
            topic: "devices/{deviceId}/reading"
            thing-id: "{namespace}:{deviceId}"
            message: { subject: reading }
            payload: number
          - name: binary-message
            topic: "devices/{deviceId}/blob"
            thing-id: "{namespace}:{deviceId}"
            message: { subject: blob, content-type: image/png }
            payload: bytes
          - name: ask
            topic: "devices/{deviceId}/ask/{subject}"
            thing-id: "{namespace}:{deviceId}"
            message: { subject: "{subject}", response: true, timeout: 15s }
            payload: json
          - name: native
            topic: "devices/{deviceId}/ditto"
            thing-id: "{namespace}:{deviceId}"
            passthrough: true
        """

    /// Maps and checks that Ditto would accept the envelope.
    func map(_ topic: String, _ payload: String, properties: PublishProperties = .init(),
             environment: UplinkEnvironment = fixedEnvironment) throws -> UplinkResult {
        let result = try UplinkMapper(configuration: try configuration(Self.yaml))
            .map(publication(topic, payload, properties: properties), environment: environment)
        try redecoded(result.envelope)
        return result
    }

    func mapBytes(_ topic: String, _ payload: [UInt8]) throws -> UplinkResult {
        let result = try UplinkMapper(configuration: try configuration(Self.yaml))
            .map(MQTTMessage(topic: topic, payload: payload), environment: fixedEnvironment)
        try redecoded(result.envelope)
        return result
    }

    func error(_ topic: String, _ payload: [UInt8], yaml: String = yaml) throws -> MappingError? {
        let mapper = UplinkMapper(configuration: try configuration(yaml))
        return mappingError { _ = try mapper.map(MQTTMessage(topic: topic, payload: payload), environment: fixedEnvironment) }
    }

    // MARK: events

    @Test func eventCarriesRevisionTimestampPathAndValue() throws {
        let result = try map("devices/Sensor-1/telemetry/temperature", #"{"value": 21.5, "unit": "C"}"#)
        #expect(result.rule == "telemetry")
        #expect(result.thingID.description == "org.example:sensor-1")
        let event = try redecoded(result.envelope)
        #expect(event.topic.description == "org.example/sensor-1/things/live/events/modified")
        #expect(event.path == "/features/temperature/properties/value")
        #expect(event.value == 21.5)
        #expect(event.revision == 42)
        #expect(event.timestamp == "2026-11-23T10:00:00.000Z")
        #expect(event.headers.correlationID == "generated-id")
        #expect(event.status == nil)
        #expect(result.request == nil)
    }

    /// The runtime keeps a topic's route and maps later messages on it without matching again: that must give
    /// byte for byte what a fresh match gives, for every kind of rule and for each message's own payload.
    @Test(arguments: [
        ("devices/Sensor-1/telemetry/temperature", [#"{"value": 21.5}"#, #"{"value": "x"}"#, "not json"]),
        ("devices/d/state", [#"{"a": 1}"#, "[1]"]),
        ("devices/d/env", [#"{"t": 1, "h": {"value": 2}}"#, "{}"]),
        ("devices/d/number/t", ["1", "x"]),
        ("devices/d/label", ["hello", "world"]),
        ("devices/d/events/alarm", [#"{"level": 3}"#, "{"]),
        ("devices/d/features/motor/events/hot", ["too hot"]),
        ("devices/d/ask/status", ["{}"]),
        ("devices/d/ditto", [#"{"topic":"org.example/d/things/live/messages/hi","headers":{},"path":"/outbox/messages/hi","value":1}"#]),
    ])
    func aKeptRouteMapsLikeAFreshMatch(topic: String, payloads: [String]) throws {
        let configuration = try configuration(Self.yaml)
        let mapper = UplinkMapper(configuration: configuration)
        let route = try #require(try DittoPublication.route(topic: topic, mapper: mapper, ditto: configuration.ditto))
        #expect(["d", "sensor-1"].contains(route.uplink.thingID.name))
        for payload in payloads {
            let message = publication(topic, payload)
            let fresh = Result { () throws(MappingError) in
                try DittoPublication.uplink(message, mapper: mapper, ditto: configuration.ditto, environment: fixedEnvironment)
            }
            let kept = Result { () throws(MappingError) in
                try DittoPublication.uplink(message, route: route, mapper: mapper, environment: fixedEnvironment)
            }
            switch (fresh, kept) {
            case (.success(let a), .success(let b)):
                #expect(a.topic == b.topic && a.rule == b.rule && a.request == b.request)
                #expect(a.envelope.encoded() == b.envelope.encoded())
            case (.failure(let a), .failure(let b)):
                #expect(a.kind == b.kind && a.reason == b.reason)
            default:
                Issue.record("\(topic) \(payload): fresh \(fresh), kept \(kept)")
            }
        }
    }

    @Test func aTopicNoRuleTakesHasNoRoute() throws {
        let configuration = try configuration(Self.yaml)
        let mapper = UplinkMapper(configuration: configuration)
        #expect(try DittoPublication.route(topic: "elsewhere/d", mapper: mapper, ditto: configuration.ditto) == nil)
        #expect(try error("elsewhere/d", [])?.kind == .noRule)
    }

    /// A topic whose values cannot make the event's path still has a route: each message on it is refused
    /// with the same error as before, after its payload was read.
    @Test func aRouteWhosePathCannotBeRenderedRefusesEachMessage() throws {
        let configuration = try configuration(Self.yaml)
        let mapper = UplinkMapper(configuration: configuration)
        let topic = "devices/d/telemetry/t\u{01}"
        let route = try #require(try DittoPublication.route(topic: topic, mapper: mapper, ditto: configuration.ditto))
        for _ in 0..<2 {
            let error = mappingError {
                _ = try DittoPublication.uplink(publication(topic, #"{"value": 1}"#), route: route, mapper: mapper,
                                                environment: fixedEnvironment)
            }
            #expect(error?.kind == .invalidIdentifier)
        }
    }

    @Test func revisionComesFromTheEnvironmentPerThing() throws {
        let environment = UplinkEnvironment(
            nextRevision: { $0.name == "a" ? 7 : 900 }, timestamp: { "2026-01-01T00:00:00Z" }, newCorrelationID: { "x" })
        #expect(try redecoded(try map("devices/a/number/t", "1", environment: environment).envelope).revision == 7)
        #expect(try redecoded(try map("devices/b/number/t", "1", environment: environment).envelope).revision == 900)
    }

    /// The arithmetic formatter against Foundation's, across leap years, century rules and month ends.
    @Test func isoTimestampsMatchFoundation() {
        var generator = SystemRandomNumberGenerator()
        let fixed: [Int64] = [0, 999, 1_000, 951_782_400_000, 951_868_799_999, 4_107_542_399_999, 1_709_164_800_123,
                              253_402_300_799_999, 1_700_000_000_250]
        for milliseconds in fixed + (0..<5_000).map({ _ in Int64.random(in: 0..<253_402_300_800_000, using: &generator) }) {
            let date = Date(timeIntervalSince1970: Double(milliseconds) / 1_000)
            let foundation = date.formatted(
                .iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
            let ours = UplinkEnvironment.isoTimestamp(millisecondsSince1970: milliseconds)
            // Foundation goes through a Double and may print 0.999 s as .998: its milliseconds are not compared.
            let millis = String(1_000 + milliseconds % 1_000).dropFirst()
            guard ours.prefix(20) == foundation.prefix(20), ours.dropFirst(20) == millis + "Z" else {
                Issue.record("\(milliseconds): \(ours), Foundation \(foundation)")
                return
            }
        }
    }

    @Test func isoTimestampsAreAcceptedByDitto() throws {
        let text = UplinkEnvironment.isoTimestamp(Date(timeIntervalSince1970: 1_700_000_000.25))
        #expect(text == "2023-11-14T22:13:20.250Z")
        let environment = UplinkEnvironment(
            nextRevision: { _ in 1 }, timestamp: { UplinkEnvironment.isoTimestamp(Date()) }, newCorrelationID: { "x" })
        try redecoded(try map("devices/a/number/t", "1", environment: environment).envelope)
    }

    @Test func wholeDocumentFieldsAndPointer() throws {
        let whole = try redecoded(try map("devices/d/state", #"{"mode": "eco", "level": [1, 2]}"#).envelope)
        #expect(whole.topic.action == .merged)
        #expect(whole.value == ["mode": "eco", "level": [1, 2]])

        let fields = try redecoded(try map("devices/d/env", #"{"t": 20, "h": {"value": 55}, "x": 1}"#).envelope)
        #expect(fields.topic.action == .created)
        #expect(fields.value == ["temperature": 20, "humidity": 55])
    }

    /// A whole JSON payload already in compact form goes into the event as the device's bytes; any other form is
    /// written from the parsed value. Either way the event is byte for byte the same.
    @Test(arguments: [
        #"{"mode":"eco","level":[1,2.50,-0e1],"name":"ü名😀","n":null}"#,
        #" {"mode": "eco", "level": [1, 2.50, -0e1], "name": "\u00fc名😀", "n": null} "#,
        #"{"mode":"eco","mode":"x","level":[1,2.50,-0e1],"name":"ü名😀","n":null}"#,
    ])
    func aCompactPayloadIsCopiedAsItIs(payload: String) throws {
        let envelope = try map("devices/d/state", payload).envelope
        var rebuilt = envelope
        rebuilt.value = envelope.value
        #expect(rebuilt.valueText == nil)
        #expect(envelope.encoded() == rebuilt.encoded())
        let compact = !payload.hasPrefix(" ") && !payload.contains(#""mode":"x""#)
        #expect((envelope.valueText != nil) == compact)
        if let text = envelope.valueText { #expect(Array(text) == Array(payload.utf8)) }
    }

    @Test func numberBooleanTextAndBytes() throws {
        #expect(try redecoded(try map("devices/d/number/t", " -3.25e2\n").envelope).value == .number(try #require(JSONNumber(literal: "-3.25e2"))))
        #expect(try redecoded(try map("devices/d/switch/s", "true").envelope).value == true)
        #expect(try redecoded(try map("devices/d/switch/s", "OFF").envelope).value == false)
        #expect(try redecoded(try map("devices/d/switch/s", "0").envelope).value == false)
        #expect(try redecoded(try map("devices/d/label", "Küche \"1\"").envelope).value == "Küche \"1\"")
        let frame: [UInt8] = [0x00, 0xFF, 0x10, 0x80]
        #expect(try redecoded(try mapBytes("devices/d/frame", frame).envelope).value == .string(Base64.encode(frame)))
    }

    // MARK: live messages

    @Test func thingLevelMessage() throws {
        let result = try map("devices/d/events/overheat", #"{"t": 99}"#)
        let message = try redecoded(result.envelope)
        #expect(message.topic.description == "org.example/d/things/live/messages/overheat")
        #expect(message.path == "/outbox/messages/overheat")
        #expect(message.headers.contentType == "application/json")
        #expect(message.headers.responseRequired == false)
        #expect(message.value == ["t": 99])
        #expect(result.request == nil)
    }

    @Test func featureLevelMessageWithSubjectTemplate() throws {
        let message = try redecoded(try map("devices/d/features/door/events/open", "Tür offen").envelope)
        #expect(message.topic.subject == "alarm-open")
        #expect(message.path == "/features/door/outbox/messages/alarm-open")
        #expect(message.messagePath?.subject == message.topic.subject)
        #expect(message.messagePath?.featureID == "door")
        #expect(ContentTypeStrategy(contentType: message.headers.contentType) == .text)
        #expect(message.value == "Tür offen")
    }

    @Test func contentTypePerFormat() throws {
        let number = try redecoded(try map("devices/d/reading", "17").envelope)
        #expect(number.headers.contentType == "application/json")
        #expect(number.value == 17)
        let blob: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x00]
        let binary = try redecoded(try mapBytes("devices/d/blob", blob).envelope)
        #expect(binary.headers.contentType == "image/png")
        #expect(MessagePayload.from(envelopeValue: binary.value, contentType: binary.headers.contentType) == .binary(blob))
    }

    @Test func aDeviceContentTypeOfTheWrongKindDoesNotBreakTheValue() throws {
        // The rule reads JSON; a device saying text/plain must not make Ditto read the JSON object as text.
        let result = try map("devices/d/events/x", #"{"a": 1}"#, properties: PublishProperties(contentType: "text/plain"))
        let message = try redecoded(result.envelope)
        #expect(ContentTypeStrategy(contentType: message.headers.contentType) == .json)
        #expect(MessagePayload.from(envelopeValue: message.value, contentType: message.headers.contentType) == .json(["a": 1]))
        // A device content type of the same kind is kept.
        let vendor = try map("devices/d/events/x", #"{"a": 1}"#,
                             properties: PublishProperties(contentType: "application/vnd.acme+json"))
        #expect(try redecoded(vendor.envelope).headers.contentType == "application/vnd.acme+json")
    }

    // MARK: device-initiated requests

    @Test func mqtt5ResponseTopicMakesARequest() throws {
        let properties = PublishProperties(messageExpiryInterval: 20, responseTopic: "devices/d/answers",
                                        correlationData: bytes("q-1"))
        let result = try map("devices/d/events/question", #"{"q": 1}"#, properties: properties)
        let request = try #require(result.request)
        #expect(request.correlationID == "q-1")
        #expect(request.thingID.description == "org.example:d")
        #expect(request.timeout == .seconds(20))
        #expect(request.reply == .responseTopic("devices/d/answers", correlationData: bytes("q-1")))
        let message = try redecoded(result.envelope)
        #expect(message.headers.responseRequired == true)
        #expect(message.headers.timeout?.duration == .seconds(20))
        #expect(message.headers.correlationID == "q-1")
        // Ditto answers on ditto.reply-topic (default ditto/out/{thingId}/reply), not on the device's topic.
        #expect(message.headers.replyTo == "ditto/out/org.example:d/reply")
    }

    @Test func messagesThatAskNothingHaveNoReplyTo() throws {
        let message = try redecoded(try map("devices/d/events/x", "{}").envelope)
        #expect(message.headers.replyTo == nil)
        #expect(message.headers.responseRequired == false)
    }

    @Test func configuredReplyTopicIsTheReplyTo() throws {
        let yaml = """
            defaults: { namespace: org.example }
            ditto: { subscribe-filter: "cloud/out/#", publish-topic: "cloud/in/{thingId}", reply-topic: "cloud/out/{namespace}/{thingName}/answers" }
            uplink:
              - name: ask
                topic: "devices/{deviceId}/ask/{subject}"
                thing-id: "{namespace}:{deviceId}"
                message: { subject: "{subject}", response: true }
            """
        let mapper = UplinkMapper(configuration: try configuration(yaml))
        let result = try mapper.map(publication("devices/d/ask/q", "{}", properties: PublishProperties(responseTopic: "devices/d/a")),
                                    environment: fixedEnvironment)
        #expect(try redecoded(result.envelope).headers.replyTo == "cloud/out/org.example/d/answers")
    }

    @Test func requestWithoutExpiryUsesTheRuleTimeout() throws {
        let properties = PublishProperties(responseTopic: "devices/d/answers", correlationData: bytes("q-2"))
        let result = try map("devices/d/ask/config", "{}", properties: properties)
        #expect(result.request?.timeout == .seconds(15))
        #expect(try redecoded(result.envelope).headers.timeout?.duration == .seconds(15))
    }

    @Test func aTimeoutUserPropertyAndZeroExpiry() throws {
        let asked = try map("devices/d/ask/config", "{}", properties: PublishProperties(
            messageExpiryInterval: 0, responseTopic: "devices/d/answers", correlationData: bytes("q-3"),
            userProperties: userProperties([("timeout", "2500ms")])))
        #expect(asked.request?.timeout == .milliseconds(2500))
        let zero = try map("devices/d/ask/config", "{}", properties: PublishProperties(
            messageExpiryInterval: 0, responseTopic: "devices/d/answers", correlationData: bytes("q-4")))
        #expect(zero.request?.timeout == .seconds(15))
    }

    static let mqtt311RequestYAML = """
        connections: { device: { host: 127.0.0.1, mqtt-version: "3.1.1" } }
        defaults: { namespace: org.example }
        headers: { mqtt311: topic }
        uplink:
          - name: ask
            topic: "devices/{deviceId}/req/{correlationId}/{subject}"
            thing-id: "{namespace}:{deviceId}"
            message:
              subject: "{subject}"
              response: true
              timeout: 5s
              reply-topic: "devices/{deviceId}/res/{correlationId}/{status}"
        """

    @Test func mqtt311RequestPattern() throws {
        let mapper = UplinkMapper(configuration: try configuration(Self.mqtt311RequestYAML))
        let id = "a/b+c#d"
        let token = TopicToken.encode(id)
        let result = try mapper.map(publication("devices/d/req/\(token)/config", #"{"want": "all"}"#),
                                    environment: fixedEnvironment)
        let message = try redecoded(result.envelope)
        #expect(message.headers.correlationID == id)
        #expect(message.headers.responseRequired == true)
        #expect(message.headers.timeout?.duration == .seconds(5))
        let request = try #require(result.request)
        #expect(request.correlationID == id)
        #expect(request.timeout == .seconds(5))
        guard case .topicTemplate(let template, var variables) = request.reply else {
            Issue.record("expected a topic template reply, got \(request.reply)")
            return
        }
        variables["status"] = "200"
        #expect(try template.render(variables) == "devices/d/res/\(token)/200")
        #expect(mapper.subscriptionFilters == ["devices/+/req/+/+"])
    }

    // MARK: pass-through

    @Test func passThroughOfTheDevicesOwnThing() throws {
        let json = #"{"topic":"org.example/d/things/live/events/modified","headers":{"correlation-id":"p-1","x-a":"1","ditto-originator":"forged","channel":"twin"},"path":"/attributes/a","value":1,"revision":3}"#
        let result = try map("devices/d/ditto", json)
        let event = try redecoded(result.envelope)
        #expect(event.revision == 3)
        #expect(event.headers.correlationID == "p-1")
        #expect(event.headers["x-a"] == "1")
        #expect(event.headers["ditto-originator"] == nil)
        #expect(event.headers["channel"] == nil)
    }

    @Test func passThroughForAnotherThingIsRefused() throws {
        let json = #"{"topic":"org.example/other/things/live/events/modified","path":"/attributes/a","value":1,"revision":3}"#
        let error = try error("devices/d/ditto", bytes(json))
        #expect(error?.kind == .thingMismatch)
        let otherNamespace = #"{"topic":"com.evil/d/things/live/events/modified","path":"/attributes/a","value":1,"revision":3}"#
        #expect(try self.error("devices/d/ditto", bytes(otherNamespace))?.kind == .thingMismatch)
    }

    @Test func passThroughOfInvalidProtocol() throws {
        #expect(try error("devices/d/ditto", bytes(#"{"topic":"org.example/d/things/live/events/modified","path":"/attributes/a","value":1}"#))?.kind == .invalidProtocol)
        #expect(try error("devices/d/ditto", bytes("not json"))?.kind == .invalidProtocol)
    }

    // MARK: bad device input (issue 3)

    @Test func invalidJSON() throws {
        #expect(try error("devices/d/telemetry/t", bytes(#"{"value": 21.5"#))?.kind == .invalidPayload)
    }

    @Test func stringWhereANumberIsExpected() throws {
        #expect(try error("devices/d/number/t", bytes("twenty"))?.kind == .invalidPayload)
        #expect(try error("devices/d/number/t", bytes("\"21.5\""))?.kind == .invalidPayload)
        #expect(try error("devices/d/switch/s", bytes("maybe"))?.kind == .invalidPayload)
    }

    @Test func missingPointer() throws {
        #expect(try error("devices/d/telemetry/t", bytes(#"{"other": 1}"#))?.kind == .invalidPayload)
        #expect(try error("devices/d/env", bytes(#"{"t": 1, "h": 2}"#))?.kind == .invalidPayload)
    }

    @Test func payloadOver250kB() throws {
        let big = #"{"value": ""# + String(repeating: "a", count: 256_000) + #""}"#
        let error = try error("devices/d/telemetry/t", bytes(big))
        #expect(error?.kind == .payloadTooLarge)
        #expect(error?.dittoError.status == 413)
        #expect(try self.error("devices/d/blob", [UInt8](repeating: 1, count: 250 * 1024 + 1))?.kind == .payloadTooLarge)
        // Exactly at the limit is fine.
        #expect(try mapBytes("devices/d/blob", [UInt8](repeating: 1, count: 250 * 1024)).rule == "binary-message")
    }

    @Test func invalidUTF8ForText() throws {
        #expect(try error("devices/d/label", [0x66, 0xC3, 0x28])?.kind == .invalidPayload)
        #expect(try error("devices/d/features/f/events/x", [0xFF])?.kind == .invalidPayload)
    }

    @Test func topicSegmentMakingAnInvalidThingID() throws {
        let umlaut = try error("devices/tür/state", bytes("{}"))
        #expect(umlaut?.kind == .invalidIdentifier)
        #expect(umlaut?.dittoError.status == 400)
        // An empty level captures nothing, so no rule takes the topic.
        #expect(try error("devices//state", bytes("{}"))?.kind == .noRule)
    }

    @Test func topicSegmentMakingAnInvalidFeatureOrSubject() throws {
        #expect(try error("devices/d/features/fé/events/x", bytes("a"))?.kind == .invalidIdentifier)
        let event = try error("devices/d/number/fé", bytes("1"))
        #expect(event?.kind == .invalidIdentifier)
        #expect(event?.dittoError.status == 400)
        // '~' is an ordinary key character for Ditto; its pointers write it as '~0'.
        #expect(try redecoded(try map("devices/d/number/a~b", "1").envelope).path == "/features/a~0b/properties/value")
        // CJK and emoji are valid in Ditto keys.
        #expect(try redecoded(try map("devices/d/number/温度", "1").envelope).path == "/features/温度/properties/value")
    }

    @Test func noRuleForTheTopic() throws {
        let error = try error("elsewhere/d", bytes("1"))
        #expect(error?.kind == .noRule)
        #expect(error?.dittoError.status == 404)
    }

    // MARK: precedence

    static let precedenceYAML = """
        defaults: { namespace: org.example }
        uplink:
          - name: catch-all
            topic: "devices/{deviceId}/#"
            thing-id: "{namespace}:{deviceId}"
            event: { path: "/attributes/catchall" }
            payload: number
          - name: first-equal
            topic: "devices/{deviceId}/x/{a}"
            thing-id: "{namespace}:{deviceId}"
            event: { path: "/attributes/first" }
            payload: number
          - name: second-equal
            topic: "devices/{deviceId}/x/{b}"
            thing-id: "{namespace}:{deviceId}"
            event: { path: "/attributes/second" }
            payload: number
          - name: specific
            topic: "devices/{deviceId}/x/literal"
            thing-id: "{namespace}:{deviceId}"
            event: { path: "/attributes/specific" }
            payload: number
          - name: urgent
            topic: "devices/{deviceId}/+/alarm"
            thing-id: "{namespace}:{deviceId}"
            event: { path: "/attributes/urgent" }
            payload: number
            priority: 10
        """

    @Test(arguments: [
        ("devices/d/x/literal", "specific"),
        ("devices/d/x/other", "first-equal"),
        ("devices/d/x/alarm", "urgent"),
        ("devices/d/y/z/w", "catch-all"),
    ])
    func rulePrecedence(_ topic: String, _ winner: String) throws {
        let mapper = UplinkMapper(configuration: try configuration(Self.precedenceYAML))
        let result = try mapper.map(publication(topic, "1"), environment: fixedEnvironment)
        #expect(result.rule == winner)
        try redecoded(result.envelope)
    }

    @Test func subscriptionFiltersAreDistinct() throws {
        let mapper = UplinkMapper(configuration: try configuration(Self.precedenceYAML))
        #expect(Set(mapper.subscriptionFilters) == ["devices/+/#", "devices/+/x/+", "devices/+/x/literal", "devices/+/+/alarm"])
        #expect(mapper.subscriptionFilters.count == 4)
    }

    @Test func aRuleThatCannotMapDoesNotFallThrough() throws {
        // "specific" wins and fails; the catch-all must not take the message instead.
        #expect(try error("devices/d/x/literal", bytes("nan"), yaml: Self.precedenceYAML)?.kind == .invalidPayload)
    }

    // MARK: MQTT 3.1.1 wrapper

    static let wrapperYAML = """
        connections: { device: { host: 127.0.0.1, mqtt-version: "3.1.1" } }
        defaults: { namespace: org.example }
        headers: { mqtt311: wrapper, allow: ["x-*"] }
        uplink:
          - name: wrapped
            topic: "devices/{deviceId}/telemetry/{sensor}"
            thing-id: "{namespace}:{deviceId}"
            event: { path: "/features/{sensor}/properties/value" }
            payload: number
          - name: wrapped-ask
            topic: "devices/{deviceId}/ask/{subject}"
            thing-id: "{namespace}:{deviceId}"
            message: { subject: "{subject}", response: true, reply-topic: "devices/{deviceId}/answers" }
        """

    @Test func wrapperCarriesHeadersAndValue() throws {
        let mapper = UplinkMapper(configuration: try configuration(Self.wrapperYAML))
        let payload = #"{"headers": {"correlation-id": "w-1", "x-a": "1", "x-n": 5, "ditto-originator": "forged", "y": "no"}, "value": 21.5}"#
        let event = try redecoded(try mapper.map(publication("devices/d/telemetry/t", payload), environment: fixedEnvironment).envelope)
        #expect(event.value == 21.5)
        #expect(event.headers.correlationID == "w-1")
        #expect(event.headers["x-a"] == "1")
        #expect(event.headers["x-n"] == "5")
        #expect(event.headers["ditto-originator"] == nil)
        #expect(event.headers["y"] == nil)
    }

    @Test func wrapperRequestKeepsItsCorrelationID() throws {
        let mapper = UplinkMapper(configuration: try configuration(Self.wrapperYAML))
        let result = try mapper.map(publication("devices/d/ask/time", #"{"headers": {"correlation-id": "w-2"}, "value": {"tz": "UTC"}}"#),
                                    environment: fixedEnvironment)
        let request = try #require(result.request)
        #expect(request.correlationID == "w-2")
        #expect(request.headerWrapper)
        let message = try redecoded(result.envelope)
        #expect(message.value == ["tz": "UTC"])
        #expect(message.headers.responseRequired == true)
    }

    @Test func wrapperThatIsNotAnObject() throws {
        let mapper = UplinkMapper(configuration: try configuration(Self.wrapperYAML))
        let error = mappingError { _ = try mapper.map(publication("devices/d/telemetry/t", "21.5"), environment: fixedEnvironment) }
        #expect(error?.kind == .invalidPayload)
    }
}
