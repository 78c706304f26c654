import BridgeConfig
import BridgeMapping
import DittoProtocol
import Foundation
import MQTT
import Testing

/// Pass-through (issue 10, items 1, 2 and 8): forwards exactly what Ditto accepts from the bridge's connection,
/// live signals only, with the headers the device wrote.
@Suite struct PassthroughTests {
    static let yaml = """
        connections: { device: { host: 127.0.0.1, mqtt-version: 5 } }
        ditto: { connection-id: edge-bridge }
        uplink:
          - name: native
            topic: "edge/{ns}/{name}/ditto"
            thing-id: "{ns}:{name}"
            passthrough: {}
          - name: twin-ok
            topic: "twin/{ns}/{name}/ditto"
            thing-id: "{ns}:{name}"
            passthrough: { allow-twin: [modify, modified] }
        """

    static let mapper: UplinkMapper = {
        // The YAML is fixed and valid; a failure shows up in `configIsValid`.
        (try? BridgeConfiguration.parse(yaml: yaml, fileName: "test.yaml", environment: [:]))
            .map { UplinkMapper(configuration: $0) } ?? UplinkMapper(rules: [])
    }()

    @Test func configIsValid() throws {
        let config = try configuration(Self.yaml)
        #expect(config.warnings.contains { $0.message.contains("twin modified, modify") })
        #expect(config.warnings.filter { $0.message.contains("twin") }.count == 1)
    }

    func map(_ json: String, topic: String = "edge/org.example/d/ditto", contentType: String? = nil)
        throws -> UplinkResult
    {
        var properties = PublishProperties()
        properties.contentType = contentType
        return try Self.mapper.map(publication(topic, json, properties: properties), environment: fixedEnvironment)
    }

    func refusal(_ json: String, topic: String = "edge/org.example/d/ditto",
                 sourceLocation: Testing.SourceLocation = #_sourceLocation) -> MappingError? {
        mappingError(sourceLocation: sourceLocation) { _ = try map(json, topic: topic) }
    }

    // MARK: item 1: what Ditto refuses is refused with Ditto's error code

    static let refusedByDitto: [(String, String)] = [
        (#"{"topic":"org.example/d/things/live/events/modified","path":"/features//properties/value","value":1,"revision":1}"#,
         "json.pointer.invalid"),
        (#"{"topic":"org.example/d/things/live/commands/modify","path":"/attributes//a","value":1}"#, "json.pointer.invalid"),
        (#"{"topic":"org.example/d/things/live/events/modified","path":"/attributes","value":"s","revision":1}"#, "json.format.invalid"),
        (#"{"topic":"org.example/d/things/live/events/modified","path":"/features/flow","value":5,"revision":1}"#, "json.format.invalid"),
        (#"{"topic":"org.example/d/things/live/events/modified","path":"/features/flow/properties","value":5,"revision":1}"#,
         "json.format.invalid"),
        (#"{"topic":"org.example/d/things/live/events/created","path":"/features/flow/desiredProperties","value":[1],"revision":1}"#,
         "json.format.invalid"),
        (#"{"topic":"org.example/d/things/live/events/modified","path":"/features","value":"x","revision":1}"#, "json.format.invalid"),
        (#"{"topic":"org.example/d/things/live/events/created","path":"/","value":true,"revision":1}"#, "json.format.invalid"),
        (#"{"topic":"org.example/d/things/live/commands/modify","path":"/policyId","value":5}"#, "json.format.invalid"),
        (#"{"topic":"org.example/d/things/live/commands/modify","path":"/definition","value":{"a":1}}"#, "json.format.invalid"),
        (#"{"topic":"org.example/d/things/live/commands/modify","path":"/features/f/definition","value":"x"}"#, "json.format.invalid"),
        (#"{"topic":"org.example/d/things/live/commands/modify","path":"/attributes","value":5}"#, "json.format.invalid"),
        (#"{"topic":"org.example/d/things/live/commands/retrieve","path":"/features/f","value":5,"status":200}"#, "protocoladapter:illegal.adaptable"),
        (#"{"topic":"org.example/d/things/live/commands/modify","path":"/features/f/properties","value":"x","status":201}"#,
         "protocoladapter:illegal.adaptable"),
        (#"{"topic":"org.example/d/things/live/errors","path":"/","value":{"status":400,"error":"x","message":"m"}}"#,
         "protocoladapter:unknown.topicpath"),
        (#"{"topic":"org.example/d/things/live/acks/someone-else:done","path":"/","status":200}"#,
         "acknowledgement:label.not.declared"),
        (#"{"topic":"org.example/d/things/live/acks/edge-bridge:other","path":"/","status":200}"#,
         "acknowledgement:label.not.declared"),
        (#"{"topic":"org.example/d/things/live/acks","path":"/","status":200,"value":{"edge-bridge:delivered":{"status":200},"x:y":{"status":200}}}"#,
         "acknowledgement:label.not.declared"),
        (#"{"topic":"org.example/d/things/live/acks/live-response","path":"/","status":200}"#,
         "acknowledgement:ditto.acklabel.forbidden"),
        (#"{"topic":"org.example/d/things/live/messages/ask","headers":{"correlation-id":"\#(String(repeating: "c", count: 10_000))"},"path":"/outbox/messages/ask","value":1}"#,
         "headers.too.large"),
    ]

    @Test(arguments: refusedByDitto)
    func refusedWithDittosErrorCode(_ json: String, _ code: String) throws {
        let error = try #require(refusal(json))
        #expect(error.kind == .invalidProtocol, "\(error)")
        #expect(error.dittoError.error == code, "\(error)")
        // And Ditto's protocol adapter (the decoder that models it) agrees, except for the rules of the connection
        // (declared labels) and of the transport (header size).
        if code != "acknowledgement:label.not.declared" && code != "headers.too.large" {
            #expect(throws: DittoError.self) { try Envelope.decode(Array(json.utf8)) }
        }
    }

    static let acceptedByDitto: [String] = [
        #"{"topic":"org.example/d/things/live/events/modified","path":"/attributes/a","value":"s","revision":1}"#,
        #"{"topic":"org.example/d/things/live/events/modified","path":"/features/flow/properties/x","value":[5],"revision":1}"#,
        #"{"topic":"org.example/d/things/live/events/modified","path":"/features/flow/properties","value":{"x":5},"revision":1}"#,
        #"{"topic":"org.example/d/things/live/events/merged","path":"/features/flow","value":null,"revision":1}"#,
        #"{"topic":"org.example/d/things/live/events/deleted","path":"/features/flow","revision":1}"#,
        #"{"topic":"org.example/d/things/live/commands/modify","path":"/policyId","value":"org.example:p"}"#,
        #"{"topic":"org.example/d/things/live/commands/modify","path":"/features/f/definition","value":["a:b:1"]}"#,
        #"{"topic":"org.example/d/things/live/commands/modify","path":"/attributes","value":null,"status":204}"#,
        #"{"topic":"org.example/d/things/live/errors","path":"/","status":400,"value":{"status":400,"error":"x","message":"m"}}"#,
        #"{"topic":"org.example/d/things/live/acks/edge-bridge:delivered","path":"/","status":200}"#,
        #"{"topic":"org.example/d/things/live/acks","path":"/","status":200,"value":{"edge-bridge:answered":{"status":200}}}"#,
    ]

    @Test(arguments: acceptedByDitto)
    func acceptedAsSent(_ json: String) throws {
        let result = try map(json)
        var expected = try #require(try JSON.parse(Array(json.utf8)).objectValue)
        var headers = expected["headers"]?.objectValue ?? JSONObject()
        headers["correlation-id"] = "generated-id"
        expected["headers"] = .object(headers)
        #expect(result.envelope.json == .object(expected))
    }

    // MARK: item 8: live signals only, named twin actions when the rule opts in

    @Test func twinSignalsAreRefusedUnlessNamed() throws {
        let twinModify = #"{"topic":"org.example/d/things/twin/commands/modify","path":"/policyId","value":"org.example:mine"}"#
        let twinDelete = #"{"topic":"org.example/d/things/twin/commands/delete","path":"/"}"#
        let twinEvent = #"{"topic":"org.example/d/things/twin/events/modified","path":"/attributes/a","value":1,"revision":1}"#
        let twinResponse = #"{"topic":"org.example/d/things/twin/commands/modify","path":"/attributes/a","status":204}"#
        let twinError = #"{"topic":"org.example/d/things/twin/errors","path":"/","status":400,"value":{"status":400,"error":"x","message":"m"}}"#
        for json in [twinModify, twinDelete, twinEvent, twinResponse, twinError] {
            let error = try #require(refusal(json))
            #expect(error.kind == .invalidProtocol)
            #expect(error.dittoError.status == 403)
            #expect(error.reason.contains("live signals only"))
        }
        let opted = "twin/org.example/d/ditto"
        #expect(try map(twinModify, topic: opted).envelope.topic.channel == .twin)
        #expect(try map(twinEvent, topic: opted).envelope.topic.channel == .twin)
        for json in [twinDelete, twinResponse, twinError] {
            #expect(refusal(json, topic: opted)?.dittoError.status == 403)
        }
    }

    @Test func allowTwinTakesOnlyDittosTwinActions() throws {
        let yaml = """
            uplink:
              - name: native
                topic: "edge/{ns}/{name}/ditto"
                thing-id: "{ns}:{name}"
                passthrough: { allow-twin: [modify, messages] }
            """
        #expect(throws: ConfigErrors.self) {
            try BridgeConfiguration.parse(yaml: yaml, fileName: "t.yaml", environment: [:])
        }
    }

    // MARK: item 2: headers as the device wrote them; MQTT content type changes nothing

    static let mqttContentTypes: [String?] = [
        nil, "application/vnd.eclipse.ditto+json", "application/json", "text/plain", "application/octet-stream",
    ]

    @Test(arguments: [
        Optional("text/plain"), "application/json", "application/octet-stream", "application/merge-patch+json", nil,
    ])
    func envelopeContentTypeIsNeverReplacedOrAdded(_ envelopeContentType: String?) throws {
        var headers = #""correlation-id":"c-1""#
        if let envelopeContentType { headers += #","content-type":"\#(envelopeContentType)""# }
        let json = #"{"topic":"org.example/d/things/live/messages/blob","headers":{\#(headers)},"path":"/outbox/messages/blob","value":"AAEC"}"#
        for mqttContentType in Self.mqttContentTypes {
            let envelope = try map(json, contentType: mqttContentType).envelope
            #expect(envelope.headers.contentType == envelopeContentType, "MQTT content type \(mqttContentType ?? "none")")
            #expect(envelope.json == (try JSON.parse(Array(json.utf8))))
            // The publish to Ditto must not add one through the connection's header mapping either.
            #expect(DittoPublication.properties(for: envelope).contentType == envelopeContentType)
        }
    }

    @Test func jsonHeaderValuesAndOrderStay() throws {
        let json = #"{"topic":"org.example/d/things/live/messages/m","headers":{"x-b":"2","version":1,"correlation-id":"c","response-required":false,"requested-acks":["edge-bridge:delivered"],"x-a":{"k":true}},"path":"/outbox/messages/m","value":1}"#
        let envelope = try map(json, contentType: "application/vnd.eclipse.ditto+json").envelope
        #expect(envelope.headers.names == ["x-b", "version", "correlation-id", "response-required", "requested-acks", "x-a"])
        #expect(envelope.json == (try JSON.parse(Array(json.utf8))))
    }

    @Test func correlationDataFillsOnlyAMissingCorrelationID() throws {
        var properties = PublishProperties()
        properties.correlationData = Array("from-mqtt".utf8)
        let with = #"{"topic":"org.example/d/things/live/messages/m","headers":{"correlation-id":"own"},"path":"/outbox/messages/m"}"#
        let without = #"{"topic":"org.example/d/things/live/messages/m","path":"/outbox/messages/m"}"#
        let mapper = Self.mapper
        let a = try mapper.map(publication("edge/org.example/d/ditto", with, properties: properties), environment: fixedEnvironment)
        let b = try mapper.map(publication("edge/org.example/d/ditto", without, properties: properties), environment: fixedEnvironment)
        #expect(a.envelope.headers.correlationID == "own")
        #expect(b.envelope.headers.correlationID == "from-mqtt")
    }

    @Test func bridgePublishesCarryNoContentTypeOfTheirOwn() throws {
        let event = Envelope.liveEvent(
            thingID: try ThingID("org.example:d"), action: .modified, path: "/attributes/a", value: 1, revision: 1)
        #expect(event.headers.contentType == nil)
        #expect(DittoPublication.properties(for: event).contentType == nil)
    }

    // MARK: every documentation example a device may send

    /// The Ditto documentation examples (`Tests/DittoProtocolTests/Resources/examples`, see its NOTICE).
    static let examples: [(name: String, bytes: [UInt8])] = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("DittoProtocolTests/Resources/examples")
        let manager = FileManager.default
        var result: [(String, [UInt8])] = []
        for group in ((try? manager.contentsOfDirectory(atPath: root.path)) ?? []).sorted() {
            let directory = root.appendingPathComponent(group)
            for file in ((try? manager.contentsOfDirectory(atPath: directory.path)) ?? []).sorted()
            where file.hasSuffix(".json") {
                if let data = manager.contents(atPath: directory.appendingPathComponent(file).path) {
                    result.append(("\(group)/\(file)", [UInt8](data)))
                }
            }
        }
        return result
    }()

    @Test(arguments: [false, true])
    func everyExampleADeviceMaySendPassesUnchanged(allowTwin: Bool) throws {
        #expect(Self.examples.count == 351)
        let yaml = """
            connections: { device: { host: 127.0.0.1, mqtt-version: 5 } }
            uplink:
              - name: native
                topic: "edge/{ns}/{name}/ditto"
                thing-id: "{ns}:{name}"
                passthrough: \(allowTwin ? "{ allow-twin: [\(PassthroughSpec.twinActions.joined(separator: ", "))] }" : "{}")
            """
        let mapper = UplinkMapper(configuration: try configuration(yaml))
        var passed = 0
        var otherThings = 0
        for example in Self.examples {
            // A device may send what Ditto accepts on the live channel for one thing (and, where the rule names
            // them, twin commands and events); acknowledgements only with the labels its connection declares,
            // which the examples' labels are not.
            guard let envelope = try? Envelope.decode(example.bytes), let thingID = envelope.thingID,
                envelope.topic.criterion != .acks
            else { continue }
            let admitted = envelope.topic.channel == .live
                || (allowTwin && !envelope.isResponse && [.commands, .events].contains(envelope.topic.criterion))
            guard admitted, !envelope.topic.isWildcard else { continue }
            // Three twin events (created, modified, merged) carry thing `fancy-thing_53` on the topic of
            // `fancy-thing`: Ditto takes the thing of the first two from the value, so a device on fancy-thing's
            // topic may send none of them.
            if let named = envelope.valueThingID, named != thingID.description {
                let topic = "edge/\(thingID.namespace)/\(thingID.name)/ditto"
                let refused = mappingError {
                    _ = try mapper.map(MQTTMessage(topic: topic, payload: example.bytes), environment: fixedEnvironment)
                }
                #expect(refused?.kind == .thingMismatch, "\(example.name)")
                #expect(refused?.dittoError.error == "things:id.notsettable", "\(example.name)")
                otherThings += 1
                continue
            }
            let original = try JSON.parse(example.bytes)
            for contentType in Self.mqttContentTypes {
                var properties = PublishProperties()
                properties.contentType = contentType
                let topic = "edge/\(thingID.namespace)/\(thingID.name)/ditto"
                let result: UplinkResult
                do {
                    result = try mapper.map(MQTTMessage(topic: topic, payload: example.bytes, properties: properties),
                                            environment: fixedEnvironment)
                } catch {
                    Issue.record("\(example.name) refused: \(error)")
                    continue
                }
                var expected = try #require(original.objectValue)
                var headers = expected["headers"]?.objectValue ?? JSONObject()
                if headers["correlation-id"] == nil { headers["correlation-id"] = "generated-id" }
                // Ditto drops these from outside anyway; the bridge's header policy never forwards them. The
                // envelope's own request headers are the device's to give.
                for name in headers.keys where ReservedHeaders.isReserved(name)
                    && !ReservedHeaders.envelopeOwnNames.contains(name.lowercased()) {
                    headers[name] = nil
                }
                expected["headers"] = .object(headers)
                #expect(result.envelope.json == .object(expected), "\(example.name) with MQTT content type \(contentType ?? "none")")
                #expect(try JSON.parse(result.envelope.encoded()) == result.envelope.json, "\(example.name)")
            }
            passed += 1
        }
        // The 8 live examples; with allow-twin also the 118 twin commands and events for one thing (of 122: a
        // modified thing without `thingId` Ditto refuses, and three events of another thing).
        #expect(passed == (allowTwin ? 126 : 8))
        #expect(otherThings == (allowTwin ? 3 : 0))
        print("pass-through: \(passed) documentation examples forwarded unchanged (allow-twin: \(allowTwin))")
    }
}
