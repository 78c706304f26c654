import BridgeConfig
import Foundation
import Testing

/// Each broken file gives exactly one clear error naming file, line and key path.
struct BrokenConfigTests {
    static let telemetry = """
        defaults:
          namespace: org.example
        uplink:
          - name: telemetry
            topic: "devices/{deviceId}/telemetry/{sensor}"
            thing-id: "{namespace}:{deviceId}"
            event:
              path: "/features/{sensor}/properties/value"
            payload: { format: json, pointer: /value }
        """

    /// The telemetry rule with line `line` (1-based) replaced.
    static func telemetry(replacing line: Int, with text: String) -> String {
        var lines = telemetry.components(separatedBy: "\n")
        lines[line - 1] = text
        return lines.joined(separator: "\n")
    }

    @Test func theBaseFixtureIsValid() throws {
        let c = try Fixture.load(Self.telemetry)
        #expect(c.uplink.count == 1)
        #expect(c.warnings.isEmpty)
    }

    @Test func unknownKeySuggestsTheClosestKnownKey() {
        expectSingleError(
            Self.telemetry(replacing: 6, with: "    thing_id: \"{namespace}:{deviceId}\""),
            line: 6, column: 5, keyPath: "uplink[0].thing_id", message: "unknown key 'thing_id'",
            hint: "did you mean 'thing-id'?")
    }

    @Test func unknownTopLevelKey() {
        expectSingleError(
            "defualts:\n  namespace: org.example\nuplink: []", line: 1, column: 1, keyPath: "defualts",
            message: "unknown key 'defualts'", hint: "did you mean 'defaults'?")
    }

    @Test func quotedNumberIsTheWrongType() {
        expectSingleError(
            "connections:\n  device:\n    host: localhost\n    port: \"1883\"\nuplink: []", line: 4, column: 11,
            keyPath: "connections.device.port", message: "expected a whole number from 1 to 65535, found the string '1883'",
            hint: "remove the quotes")
    }

    @Test func mappingWhereAListBelongs() {
        expectSingleError(
            "uplink:\n  name: telemetry\n", line: 2, keyPath: "uplink", message: "expected a list (uplink rules), found a mapping")
    }

    @Test func unclosedPlaceholder() {
        expectSingleError(
            Self.telemetry(replacing: 6, with: "    thing-id: \"{namespace}:{deviceId\""), line: 6, column: 28,
            keyPath: "uplink[0].thing-id", message: "'{' without a matching '}'")
    }

    @Test func unknownPlaceholderNamesTheKnownOnes() {
        let yaml = Self.telemetry(replacing: 6, with: "    thing-id: \"{namespace}:{device}\"")
        expectSingleError(
            yaml, line: 6, column: 28, keyPath: "uplink[0].thing-id",
            message: "unknown placeholder {device}; known here: {deviceId}, {sensor}, {namespace}",
            hint: "did you mean {deviceId}?")
        let (errors, _) = Fixture.diagnose(yaml)
        #expect(
            errors.first?.description
                == "test.yaml:6:28: uplink[0].thing-id: unknown placeholder {device}; known here: {deviceId}, {sensor}, {namespace}; did you mean {deviceId}?"
        )
    }

    @Test func unknownTransform() {
        expectSingleError(
            Self.telemetry(replacing: 6, with: "    thing-id: \"{namespace}:{deviceId|lowercase}\""), line: 6,
            keyPath: "uplink[0].thing-id", message: "unknown transform 'lowercase'; did you mean 'lower'?")
    }

    @Test func dittoPlaceholderSyntaxIsExplained() {
        expectSingleError(
            Self.telemetry(replacing: 6, with: "    thing-id: \"{{ thing:id }}\""), line: 6, column: 16,
            keyPath: "uplink[0].thing-id", message: "Ditto's '{{ ... }}' placeholder syntax is not used in this file",
            hint: "write {thingId} instead of {{ thing:id }}")
    }

    @Test func thingIDWithoutNamespace() {
        expectSingleError(
            Self.telemetry(replacing: 6, with: "    thing-id: \"{deviceId}\""), line: 6, keyPath: "uplink[0].thing-id",
            message: "does not make a valid Ditto thing ID (with sample values: 'device1'): it has no ':'",
            hint: "write namespace:name")
    }

    @Test func thingIDWithAnInvalidLiteralNamespace() {
        expectSingleError(
            Self.telemetry(replacing: 6, with: "    thing-id: \"my plant:{deviceId}\""), line: 6,
            keyPath: "uplink[0].thing-id", message: "namespace 'my plant' is invalid")
    }

    @Test func namespacePlaceholderNeedsADefault() {
        let yaml = Self.telemetry.replacingOccurrences(of: "defaults:\n  namespace: org.example\n", with: "")
        expectSingleError(
            yaml, line: 4, column: 16, keyPath: "uplink[0].thing-id", message: "{namespace} needs defaults.namespace")
    }

    @Test func multiLevelWildcardInTheMiddle() {
        expectSingleError(
            Self.telemetry(replacing: 5, with: "    topic: \"devices/#/telemetry\""), line: 5, column: 21,
            keyPath: "uplink[0].topic", message: "'#' must be the last level")
    }

    @Test func wildcardMixedIntoALevel() {
        expectSingleError(
            Self.telemetry(replacing: 5, with: "    topic: \"devices/+x/telemetry/{sensor}\""), line: 5,
            keyPath: "uplink[0].topic", message: "a wildcard must fill a whole level")
    }

    @Test func durationWithoutUnit() {
        expectSingleError(
            "connections:\n  device:\n    host: localhost\n    keepalive: 30\nuplink: []", line: 4, column: 16,
            keyPath: "connections.device.keepalive", message: "invalid duration '30'", hint: "durations need a unit, e.g. 30s")
    }

    @Test func durationWithAWordForUnit() {
        expectSingleError(
            "defaults:\n  request-timeout: 10 seconds\nuplink: []", line: 2, keyPath: "defaults.request-timeout",
            message: "invalid duration '10 seconds'")
    }

    @Test func requestTimeoutAboveDittosMaximum() {
        expectSingleError(
            "defaults:\n  request-timeout: 2m\nuplink: []", line: 2, keyPath: "defaults.request-timeout",
            message: "2m is out of range; allowed: 1ms to 1m")
    }

    @Test func qosOutOfRange() {
        expectSingleError(
            "defaults:\n  qos: 3\nuplink: []", line: 2, keyPath: "defaults.qos", message: "3 is out of range; allowed: 0 to 2")
    }

    @Test func brokerBlockWithPortButNoHost() {
        expectSingleError(
            "connections:\n  device:\n    port: 1884\nuplink: []", line: 3, keyPath: "connections.device.host",
            message: "missing required key 'host'", hint: "applies only when the whole 'device' block is left out")
    }

    @Test func unknownMQTTVersion() {
        expectSingleError(
            "connections:\n  ditto:\n    host: localhost\n    mqtt-version: 3.1\nuplink: []", line: 4,
            keyPath: "connections.ditto.mqtt-version", message: "'3.1' is not one of: 5, 3.1.1")
    }

    @Test func unreadablePasswordFile() {
        expectSingleError(
            "connections:\n  device:\n    host: localhost\n    username: bridge\n    password-file: /nonexistent/device.pass\nuplink: []",
            line: 5, keyPath: "connections.device.password-file",
            message: "password file '/nonexistent/device.pass' does not exist")
    }

    @Test func passwordFileThatIsADirectory() {
        expectSingleError(
            "connections:\n  device:\n    host: localhost\n    username: bridge\n    password-file: /tmp\nuplink: []",
            line: 5, keyPath: "connections.device.password-file", message: "password file '/tmp' is not readable")
    }

    @Test func unsetPasswordEnvironmentVariable() {
        expectSingleError(
            "connections:\n  device:\n    host: localhost\n    username: bridge\n    password-env: DEVICE_PASS\nuplink: []",
            line: 5, keyPath: "connections.device.password-env", message: "environment variable DEVICE_PASS is not set",
            environment: ["OTHER": "x"])
    }

    @Test func unsetHostVariableWithoutDefault() {
        expectSingleError(
            "connections:\n  device:\n    host: \"${GATEWAY_BROKER}\"\nuplink: []", line: 3,
            keyPath: "connections.device.host", message: "environment variable GATEWAY_BROKER is not set",
            hint: "${GATEWAY_BROKER:-value}")
    }

    @Test func passwordWithoutUsername() {
        expectSingleError(
            "connections:\n  device:\n    host: localhost\n    password-env: P\nuplink: []", line: 4,
            keyPath: "connections.device.password-env", message: "a password needs a username", environment: ["P": "secret"])
    }

    @Test func sessionExpiryWithMQTT311() {
        expectSingleError(
            "connections:\n  device:\n    host: localhost\n    mqtt-version: 3.1.1\n    session-expiry: 1h\nuplink: []",
            line: 5, keyPath: "connections.device.session-expiry", message: "session-expiry needs mqtt-version 5")
    }

    @Test func duplicateRuleNames() {
        let yaml = Self.telemetry + """

              - name: telemetry
                topic: "devices/{deviceId}/other"
                thing-id: "{namespace}:{deviceId}"
                event: { path: /features/other/properties/value }
            """
        expectSingleError(
            yaml, line: 10, column: 11, keyPath: "uplink[1].name",
            message: "duplicate rule name 'telemetry' (also used at line 4, uplink[0].name)")
    }

    @Test func headerBothAllowedAndDenied() {
        expectSingleError(
            "headers:\n  allow: [x-trace, x-user]\n  deny: [\"x-u*\"]\nuplink: []", line: 2, column: 20,
            keyPath: "headers.allow[1]", message: "'x-user' is both allowed and denied (deny 'x-u*')")
    }

    @Test func renameOntoAnInternalHeader() {
        expectSingleError(
            "headers:\n  rename:\n    x-origin: ditto-origin\nuplink: []", line: 3, keyPath: "headers.rename.x-origin",
            message: "cannot rename 'x-origin' onto 'ditto-origin', which is one of Ditto's internal headers")
    }

    @Test func renameOntoABridgeManagedHeader() {
        expectSingleError(
            "headers:\n  rename:\n    x-id: correlation-id\nuplink: []", line: 3, keyPath: "headers.rename.x-id",
            message: "which is set by the bridge itself")
    }

    @Test func staticHeaderWithAReservedName() {
        expectSingleError(
            Self.telemetry + "\n    headers:\n      static: { channel: live }", line: 11, keyPath: "uplink[0].headers.static.channel",
            message: "'channel' is managed by Ditto or the bridge")
    }

    @Test func eventAndMessageInOneRule() {
        expectSingleError(
            Self.telemetry + "\n    message: { subject: alarm }", line: 10, column: 5, keyPath: "uplink[0].message",
            message: "'event' and 'message' cannot both be given", hint: "exactly one of event, message, passthrough")
    }

    @Test func misspelledActionIsOneError() {
        expectSingleError(
            Self.telemetry(replacing: 7, with: "    evnt:"), line: 7, keyPath: "uplink[0].evnt",
            message: "unknown key 'evnt'", hint: "did you mean 'event'?")
    }

    @Test func ruleWithoutAction() {
        let yaml = Self.telemetry.replacingOccurrences(
            of: "    event:\n      path: \"/features/{sensor}/properties/value\"\n", with: "")
        expectSingleError(yaml, line: 4, keyPath: "uplink[0]", message: "the rule emits nothing")
    }

    @Test func reservedAckLabel() {
        expectSingleError(
            "acks:\n  delivered: twin-persisted\nuplink: []", line: 2, keyPath: "acks.delivered",
            message: "'twin-persisted' is reserved for Ditto itself")
    }

    @Test func ackLabelWithoutTheConnectionPrefix() {
        expectSingleError(
            "acks:\n  answered: answered\nuplink: []", line: 2, keyPath: "acks.answered",
            message: "Ditto accepts only labels that start with the connection id", hint: "'{connectionId}:answered'")
    }

    @Test func ackLabelWithInvalidCharacters() {
        expectSingleError(
            "acks:\n  answered: \"{connectionId}:answered!\"\nuplink: []", line: 2, keyPath: "acks.answered",
            message: "invalid acknowledgement label 'edge-bridge:answered!'")
    }

    @Test func missingRequiredTopic() {
        let yaml = Self.telemetry(replacing: 5, with: "")
        expectSingleError(yaml, line: 4, keyPath: "uplink[0].topic", message: "missing required key 'topic'")
    }

    @Test func yamlSyntaxError() {
        expectSingleError(
            "uplink:\n  - name: a\n   topic: b\n", line: 3, keyPath: "", message: "YAML syntax error")
    }

    @Test func duplicateYAMLKey() {
        expectSingleError(
            "defaults:\n  qos: 1\n  qos: 2\nuplink: []", line: 2, keyPath: "", message: "duplicate key 'qos'")
    }

    @Test func mqtt5ReplyModeForAnMQTT311Device() {
        let yaml = """
            connections:
              device: { host: localhost, mqtt-version: 3.1.1 }
            defaults: { namespace: org.example }
            downlink:
              - name: inbox
                match: { messages: { subject: "*" } }
                thing-id: "{namespace}:{deviceId}"
                topic: "devices/{deviceId}/inbox/{subject}"
                reply: { mode: mqtt5 }
            """
        expectSingleError(
            yaml, line: 9, keyPath: "downlink[0].reply.mode", message: "mode mqtt5 needs connections.device.mqtt-version 5")
    }

    @Test func topicReplyModeWithoutCorrelationID() {
        let yaml = """
            defaults: { namespace: org.example }
            downlink:
              - name: inbox
                match: { messages: {} }
                thing-id: "{namespace}:{deviceId}"
                topic: "devices/{deviceId}/req/{correlationId}/{subject}"
                reply:
                  mode: topic
                  topic: "devices/{deviceId}/res/{status}"
            """
        expectSingleError(
            yaml, line: 9, keyPath: "downlink[0].reply.topic", message: "must contain {correlationId}")
    }

    @Test func uplinkTopicThatWouldReadDittosTraffic() {
        expectSingleError(
            Self.telemetry(replacing: 5, with: "    topic: \"{kind}/{deviceId}/{sensor}/#\""), line: 5, column: 12,
            keyPath: "uplink[0].topic",
            message: "'{kind}/{deviceId}/{sensor}/#' also matches the Ditto-side topic ditto.publish-topic 'ditto/in/{thingId}' on the same broker")
    }

    @Test func uplinkTopicOnADifferentBrokerMayLookLikeDittos() throws {
        let yaml = "connections:\n  device: { host: 10.0.0.2 }\n"
            + Self.telemetry(replacing: 5, with: "    topic: \"{kind}/{deviceId}/{sensor}\"")
        _ = try Fixture.load(yaml)
    }

    @Test func replyTopicOutsideTheSubscribeFilter() {
        expectSingleError(
            "ditto:\n  reply-topic: \"replies/{thingId}\"\nuplink: []", line: 2, keyPath: "ditto.reply-topic",
            message: "reply-topic 'replies/{thingId}' is not covered by subscribe-filter 'ditto/out/#'")
    }

    @Test func bytesPayloadWithAJSONContentType() {
        let yaml = Self.telemetry(replacing: 7, with: "    message: { subject: frame, content-type: application/json }")
            .replacingOccurrences(of: "      path: \"/features/{sensor}/properties/value\"\n", with: "")
            .replacingOccurrences(of: "payload: { format: json, pointer: /value }", with: "payload: bytes")
        expectSingleError(
            yaml, line: 7, keyPath: "uplink[0].message.content-type", message: "a bytes payload needs a binary content type")
    }

    @Test func jsonPointerWithoutSlash() {
        expectSingleError(
            Self.telemetry(replacing: 9, with: "    payload: { format: json, pointer: value }"), line: 9,
            keyPath: "uplink[0].payload.pointer", message: "'value' is not a JSON pointer", hint: "/value")
    }

    @Test func invalidDefaultNamespace() {
        expectSingleError(
            Self.telemetry(replacing: 2, with: "  namespace: 1st.example"), line: 2, keyPath: "defaults.namespace",
            message: "'1st.example' is not a valid Ditto namespace")
    }

    @Test func eventPathWithoutLeadingSlash() {
        expectSingleError(
            Self.telemetry(replacing: 8, with: "      path: \"features/{sensor}/properties/value\""), line: 8,
            keyPath: "uplink[0].event.path", message: "a path starts with '/'")
    }

    @Test func mqtt311RequestWithoutReplyTopic() {
        let yaml = """
            connections:
              device: { host: localhost, mqtt-version: 3.1.1 }
            defaults: { namespace: org.example }
            uplink:
              - name: asks
                topic: "devices/{deviceId}/ask/{correlationId}/{subject}"
                thing-id: "{namespace}:{deviceId}"
                message:
                  subject: "{subject}"
                  response: true
            """
        expectSingleError(
            yaml, line: 10, keyPath: "uplink[0].message.response",
            message: "MQTT 3.1.1 devices have no response topic, so the answer needs a reply-topic")
    }

    @Test func adjacentPlaceholdersInADownlinkThingID() {
        let yaml = """
            downlink:
              - name: inbox
                match: { messages: {} }
                thing-id: "org.example:{site}{deviceId}"
                topic: "devices/{deviceId}/inbox"
            """
        expectSingleError(
            yaml, line: 4, column: 34, keyPath: "downlink[0].thing-id",
            message: "two placeholders next to each other cannot be told apart")
    }

    @Test func allowingAnInternalHeaderByName() {
        expectSingleError(
            "headers:\n  allow: [x-a, ditto-originator]\nuplink: []", line: 2, keyPath: "headers.allow[1]",
            message: "'ditto-originator' is one of Ditto's internal headers and is never forwarded")
    }

    @Test func twoHeadersRenamedOntoOneName() {
        expectSingleError(
            "headers:\n  rename:\n    x-a: x-c\n    x-b: x-c\nuplink: []", line: 4, keyPath: "headers.rename.x-b",
            message: "'x-a' and 'x-b' are both renamed onto 'x-c'")
    }

    @Test func payloadWithPassthrough() {
        let yaml = Self.telemetry(replacing: 7, with: "    passthrough: {}")
            .replacingOccurrences(of: "      path: \"/features/{sensor}/properties/value\"\n", with: "")
        expectSingleError(
            yaml, line: 8, keyPath: "uplink[0].payload", message: "passthrough reads the whole payload as Ditto Protocol JSON",
            hint: "remove payload")
    }

    @Test func replyTopicThatWouldReadDittosTraffic() {
        let yaml = """
            defaults: { namespace: org.example }
            downlink:
              - name: inbox
                match: { messages: {} }
                thing-id: "{namespace}:{deviceId}"
                topic: "devices/{deviceId}/inbox/{subject}"
                reply: { mode: mqtt5, topic: "ditto/out/{deviceId}" }
            """
        expectSingleError(
            yaml, line: 3, keyPath: "downlink[0].reply.topic",
            message: "also matches the Ditto-side topic ditto.subscribe-filter 'ditto/out/#' on the same broker")
    }

    @Test func placeholderAvailableOnlyForFeatureMessages() {
        let yaml = """
            downlink:
              - name: inbox
                match: { messages: { subject: "*" } }
                thing-id: "org.example:{deviceId}"
                topic: "devices/{deviceId}/{feature}/{subject}"
            """
        expectSingleError(
            yaml, line: 5, column: 32, keyPath: "downlink[0].topic",
            message: "unknown placeholder {feature}; known here: {deviceId}, {subject}, {thingId}, {namespace}, {thingName}, {correlationId}")
    }

    @Test func unknownCommandAction() {
        let yaml = """
            downlink:
              - name: props
                match: { commands: { actions: [modify, update] } }
                thing-id: "org.example:{deviceId}"
                topic: "devices/{deviceId}/set"
            """
        expectSingleError(
            yaml, line: 3, keyPath: "downlink[0].match.commands.actions[1]",
            message: "'update' is not one of: create, modify, merge, delete, retrieve")
    }

    @Test func tlsClientCertificateWithoutKey() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bridge-tls-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "cert".write(to: directory.appendingPathComponent("client.pem"), atomically: true, encoding: .utf8)
        expectSingleError(
            "connections:\n  device:\n    host: broker\n    tls: { cert-file: client.pem }\nuplink: []", line: 4,
            keyPath: "connections.device.tls.cert-file", message: "cert-file needs key-file",
            baseDirectory: directory.path)
    }

    @Test func everyErrorIsReportedInLineOrder() {
        let yaml = """
            defaults:
              qos: 5
            connections:
              device: { host: localhost, port: 0 }
            uplink:
              - name: telemetry
                topic: "devices/{deviceId}/telemetry/{sensor}"
                thing-id: "org.example:{device}"
                event: { path: "/features/{sensor}/properties/value", action: changed }
            """
        let (errors, _) = Fixture.diagnose(yaml)
        #expect(errors.map(\.line) == [2, 4, 8, 9], "\(errors)")
        #expect(errors.map(\.keyPath) == [
            "defaults.qos", "connections.device.port", "uplink[0].thing-id", "uplink[0].event.action",
        ])
        #expect(errors[3].message.contains("'changed' is not one of: created, modified, merged, deleted"))
    }

    @Test func errorsPrintOnePerLine() {
        let yaml = "defaults:\n  qos: 5\n  namespace: \"a b\"\nuplink: []"
        do {
            _ = try Fixture.load(yaml)
            Issue.record("expected errors")
        } catch let error as ConfigErrors {
            #expect(error.description.components(separatedBy: "\n").count == 2)
            #expect(error.description.hasPrefix("test.yaml:2:8: defaults.qos: 5 is out of range"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}
