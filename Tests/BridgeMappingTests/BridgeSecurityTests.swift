import BridgeConfig
import BridgeMapping
import DittoProtocol
import Foundation
import MQTT
import Testing

/// A device names only response topics of its own (issue 21, item 1): a request naming another device's topic
/// is refused, and no answer, not even an error answer, is published there.
@Suite struct ResponseTopicConfinementTests {
    var mapper: UplinkMapper {
        get throws { UplinkMapper(configuration: try configuration(UplinkMapperTests.yaml)) }
    }

    func request(_ topic: String, responseTopic: String, payload: String = "{}", correlation: String = "q-1") -> MQTTMessage {
        publication(topic, payload, properties: PublishProperties(responseTopic: responseTopic, correlationData: bytes(correlation)))
    }

    @Test("asker names victim's command topic: refused, not mapped, not answered")
    func anotherDevicesTopicIsRefused() throws {
        let mapper = try mapper
        let attack = request("devices/asker/ask/config", responseTopic: "devices/victim/inbox/pwned")
        let error = try #require(mappingError { _ = try mapper.map(attack, environment: fixedEnvironment) })
        #expect(error.kind == .responseTopicRefused)
        #expect(error.kind.rawValue == "response-topic-refused")
        #expect(error.reason.contains("devices/victim/inbox/pwned"))
        #expect(error.reason.contains("rule ask"))
        #expect(error.reason.contains("devices/{deviceId}/#"))
        #expect(error.dittoError.status == 403)
        #expect(mapper.errorAnswer(to: attack, error: error) == nil)
        // Nor with the route at hand, as the runtime calls it.
        let route = try #require(try mapper.route(topic: attack.topic))
        #expect(route.ruleName == "ask")
        #expect(mapper.errorAnswer(to: attack, error: error, route: route) == nil)
    }

    @Test func theDevicesOwnTopicIsAnswered() throws {
        let result = try mapper.map(request("devices/asker/ask/config", responseTopic: "devices/asker/answers"),
                                    environment: fixedEnvironment)
        #expect(result.request?.reply == .responseTopic("devices/asker/answers", correlationData: bytes("q-1")))
    }

    @Test("Any other refusal's error answer never goes to a topic the rule does not admit")
    func errorAnswersStayInTheDevicesSpace() throws {
        let mapper = try mapper
        // Invalid payloads: with the device's own response topic the error answer goes there; with another's,
        // the response topic is refused first, and no error answer goes there either.
        for (topic, payload) in [("devices/asker/ask/config", "{"), ("devices/asker/ditto", "not ditto")] {
            let own = request(topic, responseTopic: "devices/asker/answers", payload: payload)
            let ownError = try #require(mappingError { _ = try mapper.map(own, environment: fixedEnvironment) })
            #expect(mapper.errorAnswer(to: own, error: ownError)?.topic == "devices/asker/answers")
            let foreign = request(topic, responseTopic: "devices/victim/inbox/pwned", payload: payload)
            let foreignError = try #require(mappingError { _ = try mapper.map(foreign, environment: fixedEnvironment) })
            #expect(foreignError.kind == .responseTopicRefused)
            #expect(mapper.errorAnswer(to: foreign, error: foreignError) == nil)
            #expect(mapper.errorAnswer(to: foreign, error: ownError) == nil)
        }
    }

    @Test func aPassThroughRequestIsConfinedToo() throws {
        let json = #"{"topic":"org.example/asker/things/live/messages/hi","headers":{"correlation-id":"p-1"},"path":"/outbox/messages/hi","value":1}"#
        let mapper = try mapper
        #expect(throws: Never.self) {
            _ = try mapper.map(request("devices/asker/ditto", responseTopic: "devices/asker/r", payload: json),
                               environment: fixedEnvironment)
        }
        let error = mappingError {
            _ = try mapper.map(request("devices/asker/ditto", responseTopic: "devices/victim/inbox/x", payload: json),
                               environment: fixedEnvironment)
        }
        #expect(error?.kind == .responseTopicRefused)
    }

    @Test("The 3.1.1 reply topic is the config's: unaffected")
    func mqtt311ReplyTopicStillWorks() throws {
        let mapper = UplinkMapper(configuration: try configuration(UplinkMapperTests.mqtt311RequestYAML))
        let result = try mapper.map(publication("devices/d/req/c-9/time", "{}"), environment: fixedEnvironment)
        guard case .topicTemplate? = result.request?.reply else {
            Issue.record("expected the reply topic template, got \(String(describing: result.request?.reply))")
            return
        }
    }

    @Test func configuredResponseTopicsReplaceTheDefault() throws {
        let yaml = """
            defaults: { namespace: org.example }
            uplink:
              - name: ask
                topic: "devices/{deviceId}/ask/{subject}"
                thing-id: "{namespace}:{deviceId}"
                message: { subject: "{subject}", response: true }
                response-topics: ["answers/{deviceId}"]
            """
        let mapper = UplinkMapper(configuration: try configuration(yaml))
        #expect(throws: Never.self) {
            _ = try mapper.map(request("devices/d/ask/x", responseTopic: "answers/d"), environment: fixedEnvironment)
        }
        for refused in ["devices/d/answers", "answers/e", "answers/d/x"] {
            let error = mappingError {
                _ = try mapper.map(request("devices/d/ask/x", responseTopic: refused), environment: fixedEnvironment)
            }
            #expect(error?.kind == .responseTopicRefused, "\(refused)")
        }
    }
}

/// `x-ditto-*` headers cross in neither direction unless the policy names them exactly (issue 21, item 2).
@Suite struct DittoExtensionHeaderTests {
    static func yaml(allow: String) -> String {
        """
        defaults: { namespace: org.example }
        headers: { allow: \(allow) }
        uplink:
          - name: messages
            topic: "devices/{deviceId}/messages/{subject}"
            thing-id: "{namespace}:{deviceId}"
            message: { subject: "{subject}" }
          - name: native
            topic: "devices/{deviceId}/ditto"
            thing-id: "{namespace}:{deviceId}"
            passthrough: true
        downlink:
          - name: inbox
            match: { messages: { subject: "*" } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/inbox/{subject}"
          - name: native-inbox
            priority: 1
            match: { messages: { subject: "native-*" } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/native/{subject}"
            payload: envelope
        """
    }

    static let globs = [#"["*"]"#, #"["x-*"]"#, #"["x-ditto-*"]"#, #"["X-*", "*-authenticated"]"#]

    func uplink(_ yaml: String, _ properties: [(String, String)]) throws -> DittoHeaders {
        let mapper = UplinkMapper(configuration: try configuration(yaml))
        let message = publication("devices/d/messages/hi", "{}", properties: PublishProperties(userProperties: userProperties(properties)))
        return try mapper.map(message, environment: fixedEnvironment).envelope.headers
    }

    func downlink(_ yaml: String, _ headers: [(String, String)], subject: String = "hello") throws -> MQTTMessage {
        let mapper = DownlinkMapper(configuration: try configuration(yaml))
        var object = JSONObject()
        for (name, value) in headers { object[name] = .string(value) }
        let request = Envelope(topic: .liveMessage(thingID: try ThingID("org.example:d"), subject: subject),
                               headers: DittoHeaders(json: object), path: "/inbox/messages/\(subject)", value: .string("hi"))
        return try mapper.devicePublication(for: request, route: try mapper.route(request), messageExpiry: nil)
    }

    @Test(arguments: globs)
    func aGlobNeverLetsOneReachDitto(_ allow: String) throws {
        let headers = try uplink(Self.yaml(allow: allow), [
            ("x-ditto-pre-authenticated", "nginx:admin"), ("X-Ditto-Foo", "1"), ("x-other", "kept"),
        ])
        #expect(headers["x-ditto-pre-authenticated"] == nil)
        #expect(headers["x-ditto-foo"] == nil)
        #expect(headers.names.allSatisfy { !$0.lowercased().hasPrefix("x-ditto-") })
        if allow != #"["x-ditto-*"]"# { #expect(headers["x-other"] == "kept") }
    }

    @Test(arguments: globs)
    func aGlobNeverLetsOneReachTheDevice(_ allow: String) throws {
        let published = try downlink(Self.yaml(allow: allow), [("x-ditto-foo", "secret"), ("X-Ditto-Pre-Authenticated", "a"), ("x-other", "kept")])
        let names = published.properties.userProperties.map { $0.name.lowercased() }
        #expect(!names.contains { $0.hasPrefix("x-ditto-") }, "\(names)")
        if allow != #"["x-ditto-*"]"# { #expect(names.contains("x-other")) }
        // Nor inside an envelope for a Ditto-native device.
        let envelope = try Envelope.decode(try downlink(Self.yaml(allow: allow), [("x-ditto-foo", "secret")], subject: "native-1").payload)
        #expect(envelope.headers["x-ditto-foo"] == nil)
    }

    @Test func aPassThroughEnvelopeLosesThemToo() throws {
        let mapper = UplinkMapper(configuration: try configuration(Self.yaml(allow: #"["*"]"#)))
        let json = #"{"topic":"org.example/d/things/live/messages/hi","headers":{"x-ditto-pre-authenticated":"nginx:admin","x-other":"1"},"path":"/outbox/messages/hi","value":1}"#
        let headers = try mapper.map(publication("devices/d/ditto", json), environment: fixedEnvironment).envelope.headers
        #expect(headers["x-ditto-pre-authenticated"] == nil)
        #expect(headers["x-other"] == "1")
    }

    @Test func anExactNameLetsItCrossBothWays() throws {
        let yaml = Self.yaml(allow: #"["*", "X-Ditto-Foo"]"#)
        let headers = try uplink(yaml, [("x-ditto-foo", "1"), ("x-ditto-pre-authenticated", "nginx:admin")])
        #expect(headers["x-ditto-foo"] == "1")
        #expect(headers["x-ditto-pre-authenticated"] == nil)
        let published = try downlink(yaml, [("x-ditto-foo", "2"), ("x-ditto-bar", "3")])
        let properties = published.properties.userProperties
        #expect(properties.contains(UserProperty(name: "x-ditto-foo", value: "2")))
        #expect(!properties.contains { $0.name == "x-ditto-bar" })
    }

    @Test func aRenameOntoOneNeedsItsExactName() throws {
        let renamed = Self.yaml(allow: #"["*"]"#).replacingOccurrences(
            of: #"headers: { allow: ["*"] }"#, with: #"headers: { allow: ["*"], rename: { x-user: x-ditto-pre-authenticated } }"#)
        #expect(try uplink(renamed, [("x-user", "nginx:admin")])["x-ditto-pre-authenticated"] == nil)
        #expect(try downlink(renamed, [("x-user", "a")]).properties.userProperties.allSatisfy { $0.name != "x-ditto-pre-authenticated" })
        let named = renamed.replacingOccurrences(of: #"allow: ["*"]"#, with: #"allow: ["*", "x-ditto-pre-authenticated"]"#)
        #expect(try uplink(named, [("x-user", "nginx:admin")])["x-ditto-pre-authenticated"] == "nginx:admin")
    }

    @Test func anXDittoPatternInAllowIsAWarning() throws {
        let loaded = try configuration(Self.yaml(allow: #"["*", "X-Ditto-*"]"#))
        #expect(loaded.warnings.map(\.keyPath) == ["headers.allow[1]"])
        #expect(loaded.warnings.first?.message.contains("only by their exact name") == true)
        #expect(try configuration(Self.yaml(allow: #"["*", "x-ditto-foo"]"#)).warnings.isEmpty)
    }

    @Test func thePolicyRuleIsCaseInsensitive() throws {
        let policy = try configuration(Self.yaml(allow: #"["*", "x-ditto-foo"]"#)).uplink[0].headers
        #expect(policy.allows("X-DITTO-FOO"))
        #expect(!policy.allows("X-DITTO-BAR"))
        #expect(!policy.allows("x-Ditto-pre-authenticated"))
        #expect(policy.allows("x-dittoish"))  // not the x-ditto- prefix
        #expect(HeaderPolicy.isDittoExtension(lowercased: "x-ditto-"))
        #expect(!HeaderPolicy.isDittoExtension(lowercased: "x-ditt"))
    }
}
