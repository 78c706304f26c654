import BridgeConfig
import BridgeMapping
import DittoProtocol
import Foundation
import MQTT
import Testing

/// Ditto live messages and commands -> device publications; device answers -> Ditto responses (issue 4).
@Suite struct DownlinkMapperTests {
    static let yaml = """
        defaults: { namespace: org.example, request-timeout: 30s }
        downlink:
          - name: feature-set
            match: { messages: { subject: "set-*", feature: "*" } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/features/{feature}/inbox/{subject}"
            payload: text
            reply: { mode: mqtt5, topic: "devices/{deviceId}/reply" }
          - name: inbox
            match: { messages: { subject: "*" } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/inbox/{subject}"
            reply: { mode: mqtt5, topic: "devices/{deviceId}/reply" }
          - name: properties
            match:
              commands:
                actions: [modify, retrieve, create, delete]
                path: "/features/{feature}/properties/{property...}"
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/set/{feature}/{property}"
            reply: { mode: mqtt5, topic: "devices/{deviceId}/reply" }
          - name: firmware
            match: { messages: { subject: firmware } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/firmware"
            payload: bytes
            reply: { mode: none }
            priority: 5
          - name: things
            match: { commands: { actions: [create], path: "/" } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/create"
            reply: { mode: mqtt5, topic: "devices/{deviceId}/reply" }
          - name: native
            match: { commands: { actions: [merge] } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/ditto"
            payload: envelope
          - name: attributes
            match: { commands: { actions: [modify], path: "/attributes/{attr}" } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/attributes/{attr}"
            reply:
              mode: payload
              topic: "devices/{deviceId}/attr-reply"
              correlation-pointer: /id
              status-pointer: /code
              value-pointer: /value
        """

    static let message = #"{"topic":"org.example/dev-1/things/live/messages/reboot","headers":{"correlation-id":"c-1","content-type":"application/json","timeout":"5s","x-user":"u","ditto-originator":"nginx:ditto","channel":"live"},"path":"/inbox/messages/reboot","value":{"delay":1}}"#
    static let featureMessage = #"{"topic":"org.example/dev-1/things/live/messages/set-point","headers":{"correlation-id":"c-2","content-type":"text/plain"},"path":"/features/thermostat/inbox/messages/set-point","value":"21"}"#
    static let modify = #"{"topic":"org.example/dev-1/things/live/commands/modify","headers":{"correlation-id":"c-3"},"path":"/features/temp/properties/target","value":22}"#
    static let retrieve = #"{"topic":"org.example/dev-1/things/live/commands/retrieve","headers":{"correlation-id":"c-4","response-required":true},"path":"/features/temp/properties/a/b"}"#
    static let create = #"{"topic":"org.example/dev-1/things/live/commands/create","headers":{"correlation-id":"c-5"},"path":"/","value":{"attributes":{"a":1}}}"#

    /// Whether the envelope has a `value` field at all (JSON null counts: JSONValue is nil-literal expressible,
    /// so `value == nil` would not tell).
    static func hasValue(_ envelope: Envelope) -> Bool {
        if case .none = envelope.value { return false }
        return true
    }

    func hasValue(_ envelope: Envelope) -> Bool { Self.hasValue(envelope) }

    func mapper(_ yaml: String = yaml) throws -> DownlinkMapper {
        DownlinkMapper(configuration: try configuration(yaml))
    }

    func routed(_ json: String, yaml: String = yaml) throws -> (DownlinkMapper, Envelope, DownlinkRoute) {
        let mapper = try mapper(yaml)
        let request = try envelope(json)
        return (mapper, request, try mapper.route(request))
    }

    // MARK: routing

    @Test func thingLevelMessage() throws {
        let (_, _, route) = try routed(Self.message)
        #expect(route.ruleName == "inbox")
        #expect(route.kind == .message(subject: "reboot", featureID: nil))
        #expect(route.variables["deviceId"] == "dev-1")
        #expect(route.variables["subject"] == "reboot")
        #expect(route.variables["thingId"] == "org.example:dev-1")
        #expect(route.responseRequired)
        #expect(route.expectsReply)
        #expect(route.timeout == .seconds(5))
    }

    @Test func featureLevelMessageBySubjectGlob() throws {
        let (_, _, route) = try routed(Self.featureMessage)
        #expect(route.ruleName == "feature-set")
        #expect(route.kind == .message(subject: "set-point", featureID: "thermostat"))
        #expect(route.variables["feature"] == "thermostat")
        #expect(route.timeout == .seconds(30))
    }

    @Test func featureMessageNoRuleTakesIs404() throws {
        let mapper = try mapper()
        let request = try envelope(#"{"topic":"org.example/dev-1/things/live/messages/reboot","headers":{"correlation-id":"c"},"path":"/features/f/inbox/messages/reboot"}"#)
        let error = mappingError { _ = try mapper.route(request) }
        #expect(error?.kind == .noRule)
        #expect(error?.dittoError.status == 404)
    }

    @Test func priorityWinsOverFileOrder() throws {
        let (_, _, route) = try routed(#"{"topic":"org.example/dev-1/things/live/messages/firmware","headers":{"correlation-id":"c"},"path":"/inbox/messages/firmware"}"#)
        #expect(route.ruleName == "firmware")
        #expect(!route.expectsReply)
    }

    @Test func commandsByActionAndPathPattern() throws {
        let (_, _, modify) = try routed(Self.modify)
        #expect(modify.ruleName == "properties")
        #expect(modify.kind == .command(action: .modify, path: "/features/temp/properties/target"))
        #expect(modify.variables["feature"] == "temp")
        #expect(modify.variables["property"] == "target")
        #expect(modify.variables["action"] == "modify")

        let (_, _, retrieve) = try routed(Self.retrieve)
        #expect(retrieve.variables["property"] == "a/b")

        let (_, _, merge) = try routed(#"{"topic":"org.example/dev-1/things/live/commands/merge","headers":{"correlation-id":"c","content-type":"application/merge-patch+json"},"path":"/attributes","value":{"a":1}}"#)
        #expect(merge.ruleName == "native")
    }

    @Test(arguments: [
        #"{"topic":"org.example/dev-1/things/live/commands/delete","headers":{"correlation-id":"c"},"path":"/attributes/x"}"#,
        #"{"topic":"org.example/dev-1/things/live/commands/retrieve","headers":{"correlation-id":"c"},"path":"/attributes/x"}"#,
        #"{"topic":"org.example/dev-1/things/live/events/modified","headers":{"correlation-id":"c"},"path":"/attributes/x","value":1,"revision":1}"#,
        #"{"topic":"com.other/dev-1/things/live/messages/reboot","headers":{"correlation-id":"c"},"path":"/inbox/messages/reboot"}"#,
        // Ditto's answer to a device's request is a response (status), not a message for the device.
        #"{"topic":"org.example/dev-1/things/live/messages/reboot","headers":{"correlation-id":"c"},"path":"/outbox/messages/reboot","status":200,"value":1}"#,
        // Twin commands are not the device's business.
        #"{"topic":"org.example/dev-1/things/twin/commands/modify","headers":{"correlation-id":"c"},"path":"/features/temp/properties/target","value":1}"#,
    ])
    func unroutedSignalsAre404(_ json: String) throws {
        let mapper = try mapper()
        let request = try envelope(json)
        let error = mappingError { _ = try mapper.route(request) }
        #expect(error?.kind == .noRule)
        #expect(error?.dittoError.status == 404)
        // The error answer Ditto gets is valid Ditto Protocol.
        if let error {
            let answer = try redecoded(Envelope.errorResponse(to: request, error: error.dittoError))
            #expect(answer.headers.correlationID == "c")
            #expect(answer.status == 404)
        }
    }

    @Test func timeoutAndResponseRequired() throws {
        let (_, _, noAnswer) = try routed(#"{"topic":"org.example/dev-1/things/live/messages/reboot","headers":{"correlation-id":"c","response-required":false},"path":"/inbox/messages/reboot"}"#)
        #expect(!noAnswer.responseRequired)
        let (_, _, zero) = try routed(#"{"topic":"org.example/dev-1/things/live/messages/reboot","headers":{"correlation-id":"c","timeout":"0"},"path":"/inbox/messages/reboot"}"#)
        #expect(!zero.responseRequired)
        let (_, _, long) = try routed(#"{"topic":"org.example/dev-1/things/live/messages/reboot","headers":{"correlation-id":"c","timeout":"2m"},"path":"/inbox/messages/reboot"}"#)
        #expect(long.timeout == .seconds(30))
        #expect(long.responseRequired)
    }

    @Test func fileOrderDecidesBetweenEqualPriorities() throws {
        let yaml = """
            defaults: { namespace: org.example }
            downlink:
              - name: first
                match: { messages: { subject: "*" } }
                thing-id: "{namespace}:{deviceId}"
                topic: "devices/{deviceId}/a/{subject}"
              - name: second
                match: { messages: { subject: "*" } }
                thing-id: "{namespace}:{deviceId}"
                topic: "devices/{deviceId}/b/{subject}"
              - name: only-sensors
                match: { messages: { subject: "*" } }
                thing-id: "{namespace}:sensor-{deviceId}"
                topic: "sensors/{deviceId}/{subject}"
                priority: 1
            """
        let (_, _, route) = try routed(#"{"topic":"org.example/dev-1/things/live/messages/x","headers":{"correlation-id":"c"},"path":"/inbox/messages/x"}"#, yaml: yaml)
        #expect(route.ruleName == "first")
        // The thing ID pattern is part of the match: the higher-priority rule only takes sensor-* things.
        let (mapper, request, sensor) = try routed(#"{"topic":"org.example/sensor-7/things/live/messages/x","headers":{"correlation-id":"c"},"path":"/inbox/messages/x"}"#, yaml: yaml)
        #expect(sensor.ruleName == "only-sensors")
        #expect(sensor.variables["deviceId"] == "7")
        #expect(try mapper.devicePublication(for: request, route: sensor, messageExpiry: nil).topic == "sensors/7/x")
    }

    @Test func staticHeadersGoToDittoNotToTheDevice() throws {
        let yaml = """
            defaults: { namespace: org.example }
            headers: { static: { x-gateway: "gw-1", x-thing: "{thingId}" } }
            downlink:
              - name: inbox
                match: { messages: { subject: "*" } }
                thing-id: "{namespace}:{deviceId}"
                topic: "devices/{deviceId}/inbox/{subject}"
                reply: { mode: mqtt5, topic: "devices/{deviceId}/reply" }
            """
        let (mapper, request, route) = try routed(Self.message, yaml: yaml)
        let published = try mapper.devicePublication(for: request, route: route, messageExpiry: nil)
        #expect(published.properties.userProperties == userProperties([("x-user", "u")]))
        let reply = try #require(mapper.reply(from: mqtt5Reply("{}", correlation: "c-1")))
        let response = try redecoded(try mapper.response(to: request, route: route, reply: reply))
        #expect(response.headers["x-gateway"] == "gw-1")
        #expect(response.headers["x-thing"] == "org.example:dev-1")
    }

    // MARK: device publication

    @Test func messageToAnMQTT5Device() throws {
        let (mapper, request, route) = try routed(Self.message)
        let published = try mapper.devicePublication(for: request, route: route, messageExpiry: 5)
        #expect(published.topic == "devices/dev-1/inbox/reboot")
        #expect(try JSON.parse(published.payload) == ["delay": 1])
        #expect(published.properties.messageExpiryInterval == 5)
        #expect(published.properties.responseTopic == "devices/dev-1/reply")
        #expect(published.properties.correlationData == bytes("c-1"))
        #expect(published.properties.contentType == "application/json")
        #expect(published.properties.payloadFormatIndicator == 1)
        #expect(published.properties.userProperties == userProperties([("x-user", "u")]))
        #expect(published.qos == .atLeastOnce)
        #expect(!published.retain)
    }

    @Test func textPayload() throws {
        let (mapper, request, route) = try routed(Self.featureMessage)
        let published = try mapper.devicePublication(for: request, route: route, messageExpiry: nil)
        #expect(published.topic == "devices/dev-1/features/thermostat/inbox/set-point")
        #expect(text(published.payload) == "21")
        #expect(published.properties.messageExpiryInterval == nil)
    }

    @Test func multiLevelPathCaptureSpansTopicLevels() throws {
        let (mapper, request, route) = try routed(Self.retrieve)
        let published = try mapper.devicePublication(for: request, route: route, messageExpiry: 60)
        #expect(published.topic == "devices/dev-1/set/temp/a/b")
        #expect(published.payload.isEmpty)
    }

    @Test func bytesPayload() throws {
        let frame: [UInt8] = [0x00, 0xFF, 0x7F, 0x80]
        let json = #"{"topic":"org.example/dev-1/things/live/messages/firmware","headers":{"correlation-id":"c","content-type":"application/octet-stream"},"path":"/inbox/messages/firmware","value":"\#(Base64.encode(frame))"}"#
        let (mapper, request, route) = try routed(json)
        let published = try mapper.devicePublication(for: request, route: route, messageExpiry: nil)
        #expect(published.topic == "devices/dev-1/firmware")
        #expect(published.payload == frame)
        #expect(published.properties.payloadFormatIndicator == nil)
        #expect(published.properties.responseTopic == nil)
    }

    @Test func envelopePayloadForDittoNativeDevices() throws {
        let json = #"{"topic":"org.example/dev-1/things/live/commands/merge","headers":{"correlation-id":"c-9","content-type":"application/merge-patch+json","ditto-originator":"nginx:ditto","channel":"live","x-a":"1","timeout":"10s"},"path":"/attributes","value":{"a":1}}"#
        let (mapper, request, route) = try routed(json)
        let published = try mapper.devicePublication(for: request, route: route, messageExpiry: 10)
        let forwarded = try Envelope.decode(published.payload)
        #expect(forwarded.topic == request.topic)
        #expect(forwarded.path == "/attributes")
        #expect(forwarded.value == ["a": 1])
        #expect(forwarded.headers.correlationID == "c-9")
        #expect(forwarded.headers["x-a"] == "1")
        #expect(forwarded.headers["ditto-originator"] == nil)
        #expect(forwarded.headers["channel"] == nil)
        #expect(published.properties.contentType == "application/vnd.eclipse.ditto+json")
    }

    @Test func correlationIDInjectedIntoThePayload() throws {
        let (mapper, request, route) = try routed(#"{"topic":"org.example/dev-1/things/live/commands/modify","headers":{"correlation-id":"c-7"},"path":"/attributes/mode","value":{"m":"eco"}}"#)
        let published = try mapper.devicePublication(for: request, route: route, messageExpiry: nil)
        #expect(published.topic == "devices/dev-1/attributes/mode")
        // The value Ditto sent stays intact next to the id: a user's own `id` is not overwritten (issue 10, item 3).
        #expect(try JSON.parse(published.payload) == ["value": ["m": "eco"], "id": "c-7"])
        #expect(published.properties.contentType == "application/json")

        let (_, ownID, ownRoute) = try routed(#"{"topic":"org.example/dev-1/things/live/commands/modify","headers":{"correlation-id":"c-9"},"path":"/attributes/mode","value":{"id":"user-schedule-7","level":1}}"#)
        let own = try mapper.devicePublication(for: ownID, route: ownRoute, messageExpiry: nil)
        #expect(try JSON.parse(own.payload) == ["value": ["id": "user-schedule-7", "level": 1], "id": "c-9"])

        let (_, scalarRequest, scalarRoute) = try routed(#"{"topic":"org.example/dev-1/things/live/commands/modify","headers":{"correlation-id":"c-8"},"path":"/attributes/level","value":3}"#)
        let scalar = try mapper.devicePublication(for: scalarRequest, route: scalarRoute, messageExpiry: nil)
        #expect(try JSON.parse(scalar.payload) == ["id": "c-8", "value": 3])
    }

    @Test func replyFiltersAreDistinct() throws {
        // `native` has no reply block: MQTT 5 devices then answer on the bridge's default reply topic.
        #expect(Set(try mapper().replyFilters) == ["devices/+/reply", "devices/+/attr-reply", "ditto-bridge/reply/+"])
        #expect(try mapper().replyFilters.count == 3)
    }

    // MARK: device replies and Ditto responses (Ditto's response rules)

    func mqtt5Reply(_ payload: String, correlation: String, status: String? = nil, contentType: String? = nil,
                    extra: [(String, String)] = []) -> MQTTMessage {
        var pairs = extra
        if let status { pairs.append(("status", status)) }
        return publication("devices/dev-1/reply", payload, properties: PublishProperties(
            contentType: contentType, correlationData: bytes(correlation), userProperties: userProperties(pairs)))
    }

    /// An answer is the request's when it came on the reply topic of the request's rule with the route's values;
    /// the topic's captures are reused only when that same reply topic recognised the answer.
    @Test func answerBelongsToTheRequestOnlyOnItsRulesReplyTopic() throws {
        // The feature message's rule is the first with this reply topic, so it is the one that recognises answers.
        let (mapper, _, route) = try routed(Self.featureMessage)
        let reply = try #require(mapper.reply(from: mqtt5Reply("{}", correlation: "c-1")))
        #expect(reply.ruleIndex == route.ruleIndex)
        #expect(mapper.isAnswer(reply, on: "devices/dev-1/reply", to: route))
        // Another device's reply topic, the same correlation id: not this request's answer.
        let other = try #require(mapper.reply(from: publication("devices/dev-2/reply", "{}", properties: PublishProperties(correlationData: bytes("c-1")))))
        #expect(!mapper.isAnswer(other, on: "devices/dev-2/reply", to: route))
        // After a reload the same rule number may mean another rule: the request's rule is asked, not the number.
        let reloaded = try self.mapper(Self.yaml.replacingOccurrences(of: "devices/{deviceId}/reply", with: "devices/{deviceId}/answers"))
        let answer = try #require(reloaded.reply(from: publication("devices/dev-1/answers", "{}", properties: PublishProperties(correlationData: bytes("c-1")))))
        #expect(answer.ruleIndex == reply.ruleIndex)
        #expect(!mapper.isAnswer(answer, on: "devices/dev-1/answers", to: route))
        #expect(reloaded.isAnswer(answer, on: "devices/dev-1/answers", to: route))
    }

    @Test func messageResponseSatisfiesDittosRules() throws {
        let (mapper, request, route) = try routed(Self.message)
        let reply = try #require(mapper.reply(from: mqtt5Reply(#"{"ok":true}"#, correlation: "c-1", contentType: "application/json",
                                                               extra: [("x-answer", "1"), ("ditto-originator", "forged")])))
        #expect(reply.correlationID == "c-1")
        let response = try redecoded(try mapper.response(to: request, route: route, reply: reply))
        #expect(response.status == 200)                                // rule 1
        #expect(response.isResponse)
        #expect(response.headers.correlationID == "c-1")               // rule 3
        #expect(response.topic == request.topic)                       // rule 3
        #expect(response.path == request.path)                         // rule 5
        #expect(response.messagePath?.subject == response.topic.subject)
        #expect(response.value == ["ok": true])
        #expect(response.headers.contentType == "application/json")
        #expect(response.headers["x-answer"] == "1")
        #expect(response.headers["ditto-originator"] == nil)
    }

    @Test func featureMessageResponseKeepsTheFeaturePath() throws {
        let (mapper, request, route) = try routed(Self.featureMessage)
        let reply = try #require(mapper.reply(from: mqtt5Reply("done", correlation: "c-2", status: "202")))
        let response = try redecoded(try mapper.response(to: request, route: route, reply: reply))
        #expect(response.status == 202)
        #expect(response.path == "/features/thermostat/inbox/messages/set-point")
        #expect(response.headers.correlationID == "c-2")
        #expect(response.headers["status"] == nil)
        #expect(response.value == "done")
    }

    @Test func binaryReplyWithPayloadFormatIndicatorZero() throws {
        let (mapper, request, route) = try routed(Self.message)
        var message = mqtt5Reply("", correlation: "c-1")
        message.payload = Array("plain".utf8)
        message.properties.payloadFormatIndicator = 0
        let reply = try #require(mapper.reply(from: message))
        let response = try redecoded(try mapper.response(to: request, route: route, reply: reply))
        #expect(MessagePayload.from(envelopeValue: response.value, contentType: response.headers.contentType) == .binary(Array("plain".utf8)))
        message.properties.payloadFormatIndicator = 1
        let textReply = try #require(mapper.reply(from: message))
        let textResponse = try redecoded(try mapper.response(to: request, route: route, reply: textReply))
        #expect(textResponse.value == "plain")
    }

    @Test func replyWithoutCorrelationDataIsNotAReply() throws {
        let mapper = try mapper()
        #expect(mapper.reply(from: publication("devices/dev-1/reply", "{}")) == nil)
        #expect(mapper.reply(from: publication("devices/dev-1/other", "{}", properties: PublishProperties(correlationData: bytes("c")))) == nil)
    }

    @Test func commandResponsesWithDefaultStatuses() throws {
        let (mapper, modifyRequest, modifyRoute) = try routed(Self.modify)
        let modifyReply = try #require(mapper.reply(from: mqtt5Reply("22", correlation: "c-3")))
        let modified = try redecoded(try mapper.response(to: modifyRequest, route: modifyRoute, reply: modifyReply))
        #expect(modified.status == 204)
        #expect(!hasValue(modified))
        #expect(modified.topic == modifyRequest.topic)                 // rule 4: same signal and thing
        #expect(modified.path == modifyRequest.path)                   // rule 4: same path
        #expect(modified.headers.correlationID == "c-3")

        let (_, retrieveRequest, retrieveRoute) = try routed(Self.retrieve)
        let retrieveReply = try #require(mapper.reply(from: mqtt5Reply(#"{"x":1}"#, correlation: "c-4")))
        let retrieved = try redecoded(try mapper.response(to: retrieveRequest, route: retrieveRoute, reply: retrieveReply))
        #expect(retrieved.status == 200)
        #expect(retrieved.value == ["x": 1])
        #expect(retrieved.path == "/features/temp/properties/a/b")

        let (_, createRequest, createRoute) = try routed(Self.create)
        let createReply = try #require(mapper.reply(from: mqtt5Reply("", correlation: "c-5")))
        #expect(createRoute.ruleName == "things")
        let created = try redecoded(try mapper.response(to: createRequest, route: createRoute, reply: createReply))
        #expect(created.status == 201)
        #expect(created.path == "/")
    }

    static let delete = #"{"topic":"org.example/dev-1/things/live/commands/delete","headers":{"correlation-id":"c-6"},"path":"/features/temp/properties/old"}"#

    /// Ditto accepts only each response type's own success statuses.
    @Test(arguments: [
        (modify, "200", "{}", 204, false), (modify, "201", "", 201, true), (modify, "202", "", 204, false),
        (retrieve, "202", "1", 200, true), (retrieve, "204", "1", 200, true), (create, "200", "", 201, true),
        (delete, "200", "", 204, false), (delete, "201", "x", 204, false),
    ])
    func commandSuccessStatusesAreTheOnesDittoAccepts(_ json: String, _ status: String, _ payload: String,
                                                        _ expected: Int, _ hasValue: Bool) throws {
        let (mapper, request, route) = try routed(json)
        let correlationID = try #require(request.headers.correlationID)
        let reply = try #require(mapper.reply(from: mqtt5Reply(payload, correlation: correlationID, status: status)))
        let response = try redecoded(try mapper.response(to: request, route: route, reply: reply))
        #expect(response.status == expected)
        #expect(DownlinkMapperTests.hasValue(response) == hasValue)
        #expect(response.topic == request.topic)
        #expect(response.path == request.path)
    }

    @Test func createdWithoutEchoCarriesTheRequestedValue() throws {
        let (mapper, request, route) = try routed(Self.modify)
        let reply = try #require(mapper.reply(from: mqtt5Reply("", correlation: "c-3", status: "201")))
        #expect(try redecoded(try mapper.response(to: request, route: route, reply: reply)).value == 22)
    }

    @Test func retrieveWithoutAValueIsAnError() throws {
        let (mapper, request, route) = try routed(Self.retrieve)
        let reply = try #require(mapper.reply(from: mqtt5Reply("", correlation: "c-4")))
        let response = try redecoded(try mapper.response(to: request, route: route, reply: reply))
        #expect(response.topic.description == "org.example/dev-1/things/live/errors")
        #expect(response.status == 502)
        #expect(response.headers.correlationID == "c-4")
    }

    @Test func commandErrorStatusBecomesALiveErrorResponse() throws {
        let (mapper, request, route) = try routed(Self.modify)
        let reply = try #require(mapper.reply(from: mqtt5Reply(#"{"error":"device:busy","message":"Try later."}"#,
                                                               correlation: "c-3", status: "409")))
        let response = try redecoded(try mapper.response(to: request, route: route, reply: reply))
        #expect(response.topic.description == "org.example/dev-1/things/live/errors")
        #expect(response.path == "/")
        #expect(response.status == 409)
        #expect(response.headers.correlationID == "c-3")
        #expect(response.value?["status"] == 409)
        #expect(response.value?["error"] == "device:busy")
        #expect(response.value?["message"] == "Try later.")
        #expect(response.error?.status == 409)

        let plain = try #require(mapper.reply(from: mqtt5Reply("", correlation: "c-3", status: "500")))
        let plainResponse = try redecoded(try mapper.response(to: request, route: route, reply: plain))
        #expect(plainResponse.value?["status"] == 500)
        #expect(plainResponse.value?["error"]?.stringValue?.isEmpty == false)
        #expect(plainResponse.value?["message"]?.stringValue?.isEmpty == false)
    }

    @Test(arguments: ["999", "42", "0", "-1", "abc", ""])
    func statusesDittoDoesNotKnowAreIgnored(_ status: String) throws {
        let (mapper, request, route) = try routed(Self.message)
        let reply = try #require(mapper.reply(from: mqtt5Reply("{}", correlation: "c-1", status: status)))
        #expect(reply.status == nil)
        let response = try redecoded(try mapper.response(to: request, route: route, reply: reply))
        #expect(response.status == 200)
        #expect(response.isResponse)
    }

    @Test func payloadModeStatusAsText() throws {
        let mapper = try mapper()
        let reply = try #require(mapper.reply(from: publication("devices/dev-1/attr-reply", #"{"id":"c-7","code":"201"}"#)))
        #expect(reply.status == 201)
        let invalid = try #require(mapper.reply(from: publication("devices/dev-1/attr-reply", #"{"id":"c-7","code":1000}"#)))
        #expect(invalid.status == nil)
    }

    @Test func payloadModeReply() throws {
        let (mapper, request, route) = try routed(#"{"topic":"org.example/dev-1/things/live/commands/modify","headers":{"correlation-id":"c-7"},"path":"/attributes/mode","value":"eco"}"#)
        let reply = try #require(mapper.reply(from: publication("devices/dev-1/attr-reply", #"{"id":"c-7","code":201,"value":"eco"}"#)))
        #expect(reply.correlationID == "c-7")
        #expect(reply.status == 201)
        let response = try redecoded(try mapper.response(to: request, route: route, reply: reply))
        #expect(response.status == 201)
        #expect(response.value == "eco")
        #expect(response.headers.correlationID == "c-7")
        #expect(mapper.reply(from: publication("devices/dev-1/attr-reply", #"{"code":200}"#)) == nil)
        #expect(mapper.reply(from: publication("devices/dev-1/attr-reply", "not json")) == nil)
    }

    @Test func nestedCorrelationPointer() throws {
        let yaml = """
            defaults: { namespace: org.example }
            downlink:
              - name: attributes
                match: { commands: { actions: [modify] } }
                thing-id: "{namespace}:{deviceId}"
                topic: "devices/{deviceId}/cmd"
                reply:
                  mode: payload
                  topic: "devices/{deviceId}/cmd-reply"
                  correlation-pointer: /meta/id
                  status-pointer: /meta/code
                  value-pointer: /data/value
            """
        let (mapper, request, route) = try routed(#"{"topic":"org.example/dev-1/things/live/commands/modify","headers":{"correlation-id":"n-1"},"path":"/attributes/mode","value":{"m":"eco","meta":{"keep":true}}}"#, yaml: yaml)
        let published = try mapper.devicePublication(for: request, route: route, messageExpiry: nil)
        #expect(try JSON.parse(published.payload) == ["data": ["value": ["m": "eco", "meta": ["keep": true]]], "meta": ["id": "n-1"]])

        let (_, scalarRequest, scalarRoute) = try routed(#"{"topic":"org.example/dev-1/things/live/commands/modify","headers":{"correlation-id":"n-2"},"path":"/attributes/level","value":3}"#, yaml: yaml)
        let scalar = try mapper.devicePublication(for: scalarRequest, route: scalarRoute, messageExpiry: nil)
        #expect(try JSON.parse(scalar.payload) == ["data": ["value": 3], "meta": ["id": "n-2"]])

        let reply = try #require(mapper.reply(from: publication("devices/dev-1/cmd-reply", #"{"meta":{"id":"n-2","code":201},"data":{"value":3}}"#)))
        #expect(reply.correlationID == "n-2")
        #expect(reply.status == 201)
        let response = try redecoded(try mapper.response(to: scalarRequest, route: scalarRoute, reply: reply))
        #expect(response.status == 201)
        #expect(response.value == 3)
    }

    /// A signal's target renders the device and reply topics once where they name nothing the request brings;
    /// what the device gets is the same as when they are rendered per request.
    @Test(arguments: [Self.message, Self.featureMessage, Self.modify, Self.retrieve, Self.create])
    func topicsRenderedOncePerSignalAreTheTopicsOfEachRequest(_ json: String) throws {
        let (mapper, request, route) = try routed(json)
        #expect(route.deviceTopic != nil)
        var perRequest = route
        perRequest.deviceTopic = nil
        perRequest.responseTopic = nil
        let kept = try mapper.devicePublication(for: request, route: route, messageExpiry: 5)
        #expect(kept == (try mapper.devicePublication(for: request, route: perRequest, messageExpiry: 5)))
        #expect(kept.properties.responseTopic == (route.expectsReply ? "devices/dev-1/reply" : nil))
        // Without a response required the kept response topic is not sent.
        var silent = route
        silent.responseRequired = false
        #expect(try mapper.devicePublication(for: request, route: silent, messageExpiry: 5).properties.responseTopic == nil)
        // A topic with `{correlationId}` is the request's own.
        let legacy = try self.mapper(Self.topicModeYAML)
        let target = try legacy.target(try envelope(Self.message))
        #expect(target.deviceTopic == nil && target.responseTopic == nil)
    }

    // MARK: MQTT 3.1.1: topic mode and wrapper mode

    static let topicModeYAML = """
        connections: { device: { host: 127.0.0.1, mqtt-version: "3.1.1" } }
        defaults: { namespace: org.example }
        headers: { mqtt311: topic }
        downlink:
          - name: inbox
            match: { messages: { subject: "*" } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/req/{correlationId}/{subject}"
            reply: { mode: topic, topic: "devices/{deviceId}/res/{correlationId}/{status}" }
        """

    @Test(arguments: ["plain-id", "a/b", "x+y", "#z", "mixed/+/#", "b64-looks-encoded", "Grüße"])
    func correlationIDInTopicLevelsRoundTrips(_ id: String) throws {
        let json = #"{"topic":"org.example/dev-1/things/live/messages/reboot","headers":{"correlation-id":"\#(id)"},"path":"/inbox/messages/reboot","value":1}"#
        let (mapper, request, route) = try routed(json, yaml: Self.topicModeYAML)
        let published = try mapper.devicePublication(for: request, route: route, messageExpiry: nil)
        #expect(MQTTTopic.isValidTopicName(published.topic))
        let levels = published.topic.split(separator: "/", omittingEmptySubsequences: false)
        #expect(levels.count == 5)
        let token = String(levels[3])
        #expect(TopicToken.decode(token) == id)
        #expect(published.properties.responseTopic == nil)

        let reply = try #require(mapper.reply(from: publication("devices/dev-1/res/\(token)/201", #"{"done":true}"#)))
        #expect(reply.correlationID == id)
        #expect(reply.status == 201)
        let response = try redecoded(try mapper.response(to: request, route: route, reply: reply))
        #expect(response.headers.correlationID == id)
        #expect(response.status == 201)
        #expect(response.path == request.path)
    }

    static let wrapperYAML = """
        connections: { device: { host: 127.0.0.1, mqtt-version: "3.1.1" } }
        defaults: { namespace: org.example }
        headers: { mqtt311: wrapper }
        downlink:
          - name: inbox
            match: { messages: { subject: "*" } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/inbox/{subject}"
            reply: { mode: topic, topic: "devices/{deviceId}/res/{correlationId}" }
          - name: firmware
            match: { messages: { subject: firmware } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/firmware"
            payload: bytes
            priority: 1
        """

    @Test func wrapperCarriesHeadersToTheDeviceAndBack() throws {
        let json = #"{"topic":"org.example/dev-1/things/live/messages/reboot","headers":{"correlation-id":"w-1","content-type":"application/json","x-a":"1","ditto-originator":"nginx:ditto","channel":"live"},"path":"/inbox/messages/reboot","value":{"delay":1}}"#
        let (mapper, request, route) = try routed(json, yaml: Self.wrapperYAML)
        let published = try mapper.devicePublication(for: request, route: route, messageExpiry: nil)
        let wrapper = try JSON.parse(published.payload)
        #expect(wrapper["value"] == ["delay": 1])
        #expect(wrapper["headers"]?["correlation-id"] == "w-1")
        #expect(wrapper["headers"]?["x-a"] == "1")
        #expect(wrapper["headers"]?["ditto-originator"] == nil)
        #expect(wrapper["headers"]?["channel"] == nil)

        let answer = #"{"headers":{"status":"201","x-b":"2","reply-to":"forged"},"value":{"rebooting":true}}"#
        let reply = try #require(mapper.reply(from: publication("devices/dev-1/res/\(TopicToken.encode("w-1"))", answer)))
        #expect(reply.status == 201)
        let response = try redecoded(try mapper.response(to: request, route: route, reply: reply))
        #expect(response.status == 201)
        #expect(response.headers.correlationID == "w-1")
        #expect(response.headers["x-b"] == "2")
        #expect(response.headers["reply-to"] == nil)
        #expect(response.value == ["rebooting": true])
    }

    @Test func wrapperWithBytesKeepsEveryByte() throws {
        let frame: [UInt8] = [0xFF, 0xFE, 0x00, 0x41]
        let json = #"{"topic":"org.example/dev-1/things/live/messages/firmware","headers":{"correlation-id":"w-2","content-type":"application/octet-stream"},"path":"/inbox/messages/firmware","value":"\#(Base64.encode(frame))"}"#
        let (mapper, request, route) = try routed(json, yaml: Self.wrapperYAML)
        let published = try mapper.devicePublication(for: request, route: route, messageExpiry: nil)
        let wrapper = try JSON.parse(published.payload)
        let value = try #require(wrapper["value"]?.stringValue)
        #expect(Base64.decode(value) == frame)
    }
}
