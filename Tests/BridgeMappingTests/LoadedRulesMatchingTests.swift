import BridgeConfig
import BridgeMapping
import DittoProtocol
import Foundation
import MQTT
import Testing

/// The repository's Config/ directory.
let shippedConfigDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Config")

/// Loaded files, observed through the rules' matching.
struct LoadedRulesMatchingTests {
    @Test func defaultBridgeFileHasItsRules() throws {
        let path = shippedConfigDirectory.appendingPathComponent("bridge.yaml").path
        let c = try BridgeConfiguration.load(path: path, environment: ["BRIDGE_DEVICE_HOST": "mosquitto"])
        #expect(c.connections.device.host == "mosquitto")
        #expect(c.connections.ditto.broker?.host == "127.0.0.1")
        #expect(c.connections.ditto.broker?.sessionExpiry == .seconds(3600))
        #expect(c.connections.ditto.broker?.cleanStart == false)
        #expect(c.uplink.map(\.name) == ["telemetry", "alarms"])
        #expect(c.downlink.map(\.name) == ["inbox", "properties"])
        #expect(c.deviceStatus?.offlinePayloads == ["offline", "0"])
        let telemetry = c.uplink[0]
        #expect(telemetry.topic.filter == "devices/+/telemetry/+")
        #expect(telemetry.payload == .json(.pointer(try RFC6901Pointer(parsing: "/value"))))
        let values = try #require(telemetry.topic.match("devices/Sensor-1/telemetry/temperature"))
        #expect(try telemetry.thingID.render(values.merging(["namespace": "org.example"]) { a, _ in a }) == "org.example:sensor-1")
        let inbox = c.downlink[0]
        #expect(inbox.fixedValues == ["namespace": "org.example"])
        #expect(inbox.thingID.match("org.example:sensor-1", fixed: inbox.fixedValues)?["deviceId"] == "sensor-1")
        #expect(inbox.reply.mode == .mqtt5)
        #expect(inbox.reply.topic?.source == "devices/{deviceId}/reply")
        #expect(c.headers.staticHeaders.map(\.name) == ["x-gateway"])
        #expect(!c.headers.allows("x-internal-debug"))
    }

    @Test func precedenceIsPriorityThenSpecificityThenFileOrder() throws {
        let c = try configuration(
            """
            defaults: { namespace: org.example }
            uplink:
              - name: catch-all
                topic: "devices/{deviceId}/{rest...}"
                thing-id: "{namespace}:{deviceId}"
                event: { path: /features/raw/properties/value }
              - name: generic
                topic: "devices/{deviceId}/telemetry/{sensor}"
                thing-id: "{namespace}:{deviceId}"
                event: { path: "/features/{sensor}/properties/value" }
              - name: temperature
                topic: "devices/{deviceId}/telemetry/temperature"
                thing-id: "{namespace}:{deviceId}"
                event: { path: /features/temperature/properties/value }
              - name: urgent
                topic: "devices/{deviceId}/{kind}/alarm"
                thing-id: "{namespace}:{deviceId}"
                priority: 10
                message: { subject: alarm }
            """)
        #expect(c.uplinkRulesByPrecedence.map(\.name) == ["urgent", "temperature", "generic", "catch-all"])
        let first = c.uplinkRulesByPrecedence.first { $0.topic.match("devices/d/telemetry/temperature") != nil }
        #expect(first?.name == "temperature")
        // Overlaps not settled by priority are reported; "urgent" has its own priority.
        #expect(c.warnings.count == 3, "\(c.warnings)")
        #expect(c.warnings.allSatisfy { $0.severity == .warning && $0.message.contains("overlap") })
        #expect(c.warnings.contains { $0.keyPath == "uplink[2].topic" && $0.message.contains("'temperature' wins") })
    }

    @Test func mqtt311RequestResponseExample() throws {
        let path = shippedConfigDirectory.appendingPathComponent("examples/request-response.yaml").path
        let c = try BridgeConfiguration.load(path: path, environment: [:])
        #expect(c.connections.device.mqttVersion == .v311)
        let requests = try #require(c.downlink.first)
        #expect(requests.reply.mode == .topic)
        #expect(requests.reply.topic?.filter == "devices/+/res/+/+")
        #expect(requests.reply.timeout == .seconds(5))
        #expect(
            requests.reply.topic?.match("devices/lamp-2/res/c-1/204")
                == ["deviceId": "lamp-2", "correlationId": "c-1", "status": "204"])
        let properties = c.downlink[1]
        #expect(properties.reply.mode == .payload)
        #expect(properties.reply.correlationPointer?.description == "/id")
        #expect(properties.headers.mqtt311 == .wrapper)
        guard case .commands(let actions, let path?) = properties.match else {
            Issue.record("not commands")
            return
        }
        #expect(actions == [.retrieve, .modify])
        #expect(path.match("/features/lamp/properties/brightness") == ["property": "brightness"])
        guard case .message(let ask) = c.uplink[0].action else {
            Issue.record("not a message")
            return
        }
        #expect(ask.expectsResponse)
        #expect(ask.replyTopic?.source == "devices/{deviceId}/ans/{correlationId}/{status}")
    }
}
