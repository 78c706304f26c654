import BridgeConfig
import DittoProtocol
import Foundation
import MQTT
import Testing

/// What a valid file turns into.
struct LoaderTests {
    @Test func minimalFileGetsTheDocumentedDefaults() throws {
        let c = try Fixture.load(
            """
            uplink:
              - name: t
                topic: "devices/{deviceId}/t"
                thing-id: "org.example:{deviceId}"
                event: { path: /features/t/properties/value }
            """)
        #expect(c.connections.device.host == "127.0.0.1")
        #expect(c.connections.device.port == 1883)
        #expect(c.connections.device.mqttVersion == .v5)
        #expect(c.connections.device.clientID == "ditto-bridge-devices")
        #expect(c.connections.ditto.broker?.clientID == "ditto-bridge-ditto")
        #expect(c.connections.device.keepalive == .seconds(30))
        #expect(c.connections.device.reconnect == ReconnectPolicy(initial: .seconds(1), maximum: .seconds(30)))
        #expect(c.ditto.publishTopic.source == "ditto/in/{thingId}")
        #expect(c.ditto.subscribeFilter.filter == "ditto/out/#")
        #expect(c.ditto.connectionID == "edge-bridge")
        #expect(c.acks.all == ["edge-bridge:delivered", "edge-bridge:answered"])
        #expect(c.defaults.requestTimeout == .seconds(10))
        #expect(c.defaults.namespace == nil)
        let rule = try #require(c.uplink.first)
        #expect(rule.payload == .json(.whole))
        #expect(rule.action == .event(EventSpec(action: .modified, path: try Template("/features/t/properties/value"))))
        #expect(rule.qos == .atLeastOnce)
        #expect(rule.headers.allows("x-custom"))
        #expect(!rule.headers.allows("ditto-originator"))
        #expect(rule.headers.allows("traceparent"))
        #expect(rule.location.line == 2)
    }

    @Test func reloadingTheSameFileGivesAnEqualConfiguration() throws {
        let path = ConfigFilesTests.configDirectory.appendingPathComponent("bridge.yaml").path
        let a = try BridgeConfiguration.load(path: path, environment: [:])
        let b = try BridgeConfiguration.load(path: path, environment: [:])
        #expect(a == b)
        let c = try BridgeConfiguration.load(path: path, environment: ["BRIDGE_DITTO_HOST": "10.0.0.9"])
        #expect(a != c)
    }

    @Test func identicalTopicsAreReported() throws {
        let c = try Fixture.load(
            """
            defaults: { namespace: org.example }
            uplink:
              - name: a
                topic: "d/{id}"
                thing-id: "{namespace}:{id}"
                event: { path: /features/a/properties/value }
              - name: b
                topic: "d/{x}"
                thing-id: "{namespace}:{x}"
                event: { path: /features/b/properties/value }
            """)
        #expect(c.warnings.count == 1)
        #expect(c.warnings.first?.line == 8)
        #expect(c.warnings.first?.message.contains("'b' never applies") == true)
    }

    @Test func ruleHeadersOverrideAndMergeWithGlobalOnes() throws {
        let c = try Fixture.load(
            """
            defaults: { namespace: org.example }
            headers:
              allow: ["x-*", "app-*"]
              deny: [x-secret]
              rename: { x-a: x-b }
              static: { x-gw: gw-1, x-site: north }
              mqtt311: wrapper
            uplink:
              - name: t
                topic: "devices/{deviceId}/t"
                thing-id: "{namespace}:{deviceId}"
                event: { path: /features/t/properties/value }
                headers:
                  deny: [app-debug]
                  rename: { x-c: x-d }
                  static: { x-site: "{deviceId}-site", x-thing: "{thingId}" }
                  trace-context: false
            """)
        let h = try #require(c.uplink.first?.headers)
        #expect(h.allows("x-secret"))  // the rule's deny list replaced the global one
        #expect(!h.allows("app-debug"))
        #expect(h.allows("APP-Other"))
        #expect(!h.allows("traceparent"))
        #expect(h.renamed("X-A") == "x-b")
        #expect(h.renamed("x-c") == "x-d")
        #expect(h.mqtt311 == .wrapper)
        #expect(h.staticHeaders.map(\.name) == ["x-gw", "x-site", "x-thing"])
        #expect(try h.staticHeaders[1].value.render(["deviceId": "d1"]) == "d1-site")
        #expect(c.headers.allows("x-other"))
        #expect(!c.headers.allows("x-secret"))
    }

    @Test func passwordFileIsReadRelativeToTheConfigFile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bridge-config-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "s3cret\n".write(to: directory.appendingPathComponent("device.pass"), atomically: true, encoding: .utf8)
        let config = directory.appendingPathComponent("bridge.yaml")
        try """
        connections:
          device:
            host: broker.local
            username: bridge
            password-file: device.pass
          ditto:
            host: localhost
            username: ditto
            password-env: DITTO_BROKER_PASSWORD
        uplink:
          - name: t
            topic: "devices/{deviceId}/t"
            thing-id: "org.example:{deviceId}"
            event: { path: /features/t/properties/value }
        """.write(to: config, atomically: true, encoding: .utf8)
        let c = try BridgeConfiguration.load(path: config.path, environment: ["DITTO_BROKER_PASSWORD": "p2"])
        #expect(c.connections.device.password?.value == "s3cret")
        #expect(c.connections.device.passwordSource == .file("device.pass"))
        #expect(c.connections.ditto.broker?.password?.value == "p2")
        #expect("\(c.connections.device.password!)" == "<redacted>")
        #expect(c.warnings.isEmpty)
    }

    @Test func inlinePasswordIsAcceptedWithAWarning() throws {
        let c = try Fixture.load(
            "connections:\n  device: { host: localhost, username: u, password: p }\nuplink: []")
        #expect(c.connections.device.password?.value == "p")
        #expect(c.warnings.count == 2)  // the inline password, and no rules
        #expect(c.warnings.contains { $0.line == 2 && $0.message.contains("password is written in the config file") })
    }

    @Test func missingConfigFileIsOneError() {
        do {
            _ = try BridgeConfiguration.load(path: "/nonexistent/bridge.yaml", environment: [:])
            Issue.record("loaded")
        } catch {
            #expect(error.errors.count == 1)
            #expect(error.description == "/nonexistent/bridge.yaml: cannot read the config file: the file does not exist")
        }
    }

    @Test func tlsChangesTheDefaultPort() throws {
        let c = try Fixture.load(
            "connections:\n  device: { host: broker.example, tls: true }\n  ditto: { host: localhost, tls: { version: tlsv1.3, verify-hostname: false } }\nuplink: []")
        #expect(c.connections.device.port == 8883)
        #expect(c.connections.device.tls?.verifyHostname == true)
        #expect(c.connections.ditto.broker?.tls?.version == .tls13)
        #expect(c.connections.ditto.broker?.tls?.verifyHostname == false)
    }

    @Test func yamlAnchorsAndMergeKeysWork() throws {
        let c = try Fixture.load(
            """
            defaults: { namespace: org.example }
            uplink:
              - &base
                name: a
                topic: "devices/{deviceId}/a"
                thing-id: "{namespace}:{deviceId}"
                event: { path: /features/a/properties/value }
              - <<: *base
                name: b
                topic: "devices/{deviceId}/b"
            """)
        #expect(c.uplink.map(\.name) == ["a", "b"])
        #expect(c.uplink[1].thingID.source == "{namespace}:{deviceId}")
    }

    @Test func payloadFieldsKeepFileOrder() throws {
        let c = try Fixture.load(
            """
            defaults: { namespace: org.example }
            uplink:
              - name: env
                topic: "devices/{deviceId}/state"
                thing-id: "{namespace}:{deviceId}"
                event: { action: merged, path: /features/env/properties }
                payload: { fields: { temperature: /t, humidity: /h, raw: "" } }
            """)
        guard case .json(.fields(let fields)) = c.uplink.first?.payload else {
            Issue.record("not fields")
            return
        }
        #expect(fields.map(\.name) == ["temperature", "humidity", "raw"])
        #expect(fields.map(\.pointer.description) == ["/t", "/h", ""])
    }

    @Test func downlinkDefaultsDependOnTheDeviceProtocol() throws {
        let rule = """
            downlink:
              - name: inbox
                match: { messages: { subject: "cmd-*", feature: "*" } }
                thing-id: "{ns}:{deviceId}"
                topic: "devices/{deviceId}/{feature}/{subject}"
            """
        let v5 = try Fixture.load(rule)
        #expect(v5.downlink[0].reply.mode == .mqtt5)
        #expect(v5.downlink[0].reply.topic?.source == "ditto-bridge/reply/{thingId}")
        #expect(v5.downlink[0].fixedValues == [:])
        #expect(v5.downlink[0].match == .messages(subject: "cmd-*", feature: "*"))
        #expect(v5.downlink[0].payload == .value)
        let v311 = try Fixture.load("connections:\n  device: { host: localhost, mqtt-version: 3.1.1 }\n" + rule)
        #expect(v311.downlink[0].reply.mode == ReplySpec.Mode.none)
    }

    @Test func statusTopicNotCoveredByARuleIsAWarning() throws {
        let c = try Fixture.load(
            """
            devices: { status-topic: "status/{site}/{deviceId}" }
            downlink:
              - name: inbox
                match: { messages: {} }
                thing-id: "org.example:{deviceId}"
                topic: "devices/{deviceId}/inbox/{subject}"
            """)
        #expect(c.warnings.count == 1)
        #expect(c.warnings.first?.message.contains("does not provide {site}") == true)
        #expect(c.deviceStatus?.topic.filter == "status/+/+")
    }
}

/// `port: "${VAR:-1883}"`: the container config's brokers move with the environment (the chroot test of the image
/// runs it against brokers on free loopback ports).
struct PortFromEnvironmentTests {
    static let yaml = """
        connections:
          device: { host: 127.0.0.1, port: "${BRIDGE_DEVICE_PORT:-1883}" }
        uplink:
          - name: t
            topic: "devices/{deviceId}/t"
            thing-id: "org.example:{deviceId}"
            event: { path: /features/t/properties/value }
        """

    @Test func theDefaultAppliesWithoutTheVariable() throws {
        #expect(try Fixture.load(Self.yaml).connections.device.port == 1883)
    }

    @Test func theVariableMovesThePort() throws {
        let c = try Fixture.load(Self.yaml, environment: ["BRIDGE_DEVICE_PORT": "21883"])
        #expect(c.connections.device.port == 21883)
    }

    @Test func aValueThatIsNoPortNamesTheKey() {
        expectSingleError(
            Self.yaml, line: 2, keyPath: "connections.device.port", message: "'70000' (from '${BRIDGE_DEVICE_PORT:-1883}') is not a port",
            environment: ["BRIDGE_DEVICE_PORT": "70000"])
        expectSingleError(
            Self.yaml, line: 2, keyPath: "connections.device.port", message: "'x1' (from",
            environment: ["BRIDGE_DEVICE_PORT": "x1"])
    }

    @Test func quotedNumbersStayAnError() {
        expectSingleError(
            Self.yaml.replacingOccurrences(of: "\"${BRIDGE_DEVICE_PORT:-1883}\"", with: "\"1883\""), line: 2,
            keyPath: "connections.device.port", message: "found the string '1883'", hint: "remove the quotes")
    }
}
