import BridgeConfig
import BridgeMapping
import BridgeRuntime
import DittoProtocol
import Foundation
import MQTT
import Mosquitto
import MosquittoTestSupport
import Testing

let uplinkConfig = baseConnections + """

    uplink:
      - name: telemetry
        topic: "devices/{deviceId}/telemetry/{sensor}"
        thing-id: "{namespace}:{deviceId|lower}"
        event: { action: modified, path: "/features/{sensor}/properties/value" }
        payload: { format: json, pointer: /value }
      - name: multi
        topic: "devices/{deviceId}/state"
        thing-id: "{namespace}:{deviceId}"
        event: { action: merged, path: "/features/climate/properties" }
        payload: { format: json, fields: { temperature: /t, humidity: /h } }
      - name: counter
        topic: "devices/{deviceId}/count"
        thing-id: "{namespace}:{deviceId}"
        event: { action: modified, path: "/attributes/count" }
        payload: number
      - name: text
        topic: "devices/{deviceId}/alarm"
        thing-id: "{namespace}:{deviceId}"
        message: { subject: alarm, feature: siren }
        payload: text
      - name: frames
        topic: "devices/{deviceId}/frame"
        thing-id: "{namespace}:{deviceId}"
        message: { subject: frame }
        payload: bytes
      - name: native
        topic: "native/{deviceId}"
        thing-id: "{namespace}:{deviceId}"
        passthrough: {}
    """

@Suite("Uplink through a real broker", .serialized)
struct UplinkTests {
    @Test("Each kind of rule reaches Ditto as the expected envelope")
    func eachKindOfRule() async throws {
        let harness = try await BridgeHarness(yaml: uplinkConfig)
        let (device, _) = try await harness.device("d1")
        let correlation = PublishProperties(correlationData: Array("corr-1".utf8),
                                            userProperties: [UserProperty(name: "x-trace", value: "abc")])
        try await device.publish(to: "devices/Sensor-1/telemetry/temperature", payload: Array(#"{"value": 21.5}"#.utf8),
                                 properties: correlation)
        try await device.publish(to: "devices/Sensor-1/telemetry/temperature", payload: Array(#"{"value": 22.0}"#.utf8))
        try await device.publish(to: "devices/room/state", payload: Array(#"{"t": 20.25, "h": 40, "x": 1}"#.utf8))
        try await device.publish(to: "devices/room/count", payload: Array(" 42 ".utf8))
        try await device.publish(to: "devices/room/alarm", payload: Array("smoke détecté".utf8))
        try await device.publish(to: "devices/room/frame", payload: [0x00, 0xFF, 0x7F, 0x80])
        let native = #"{"topic":"org.example/room/things/live/events/modified","headers":{"correlation-id":"n-1","ditto-originator":"fake"},"path":"/attributes/fw","value":"1.2","revision":7}"#
        try await device.publish(to: "native/room", payload: Array(native.utf8))

        let envelopes = try await harness.envelopes(count: 7)
        try #require(envelopes.count == 7)
        let topics = harness.fromBridge.messages.map(\.topic)
        #expect(topics == ["ditto/in/org.example:sensor-1", "ditto/in/org.example:sensor-1"] + Array(repeating: "ditto/in/org.example:room", count: 5))

        let first = envelopes[0]
        #expect(first.topic.description == "org.example/sensor-1/things/live/events/modified")
        #expect(first.path == "/features/temperature/properties/value")
        #expect(first.value == .number(JSONNumber(literal: "21.5")!))
        #expect(first.headers.correlationID == "corr-1")
        #expect(first.headers["x-trace"] == "abc")
        #expect(first.timestamp != nil)
        #expect(first.status == nil)
        let second = envelopes[1]
        #expect(second.value == .number(JSONNumber(literal: "22.0")!))
        #expect((second.revision ?? 0) > (first.revision ?? 0))
        #expect(second.headers.correlationID?.isEmpty == false)

        #expect(envelopes[2].topic.action == .merged)
        #expect(envelopes[2].value == .object(["temperature": .number(JSONNumber(literal: "20.25")!), "humidity": .number(JSONNumber(40))]))
        #expect(envelopes[3].value == .number(JSONNumber(42)))

        let alarm = envelopes[4]
        #expect(alarm.topic.description == "org.example/room/things/live/messages/alarm")
        #expect(alarm.path == "/features/siren/outbox/messages/alarm")
        #expect(alarm.value == .string("smoke détecté"))
        #expect(alarm.headers.contentType?.hasPrefix("text/plain") == true)

        let frame = envelopes[5]
        #expect(frame.path == "/outbox/messages/frame")
        #expect(frame.headers.contentType == "application/octet-stream")
        #expect(frame.value == .string("AP9/gA=="))

        let passthrough = envelopes[6]
        #expect(passthrough.topic.description == "org.example/room/things/live/events/modified")
        #expect(passthrough.revision == 7)
        #expect(passthrough.headers.correlationID == "n-1")
        #expect(passthrough.headers["ditto-originator"] == nil)

        // What Ditto's MQTT-5 connection reads from the MQTT properties agrees with the envelope.
        let message = harness.fromBridge.messages[0]
        // No MQTT content type the envelope lacks: Ditto's header mapping would add it as `content-type`.
        #expect(message.properties.contentType == envelopes[0].headers.contentType)
        #expect(message.properties.correlationData == Array("corr-1".utf8))
        await device.disconnect()
        await harness.stop()
    }

    /// The bridge keeps what each topic decides; a topic that is a reply topic and an uplink topic must still
    /// be decided per message (a reply when it answers a pending request, an event otherwise), before and after
    /// either kind was seen on it.
    @Test("A topic that is both a reply topic and an uplink topic: replies and events, in any order")
    func replyTopicThatIsAlsoAnUplinkTopic() async throws {
        let yaml = baseConnections + """

            uplink:
              - name: answers-as-events
                topic: "devices/{deviceId}/reply"
                thing-id: "{namespace}:{deviceId}"
                event: { action: modified, path: "/features/reply/properties/value" }
                payload: json
            """ + inboxDownlink
        let harness = try await BridgeHarness(yaml: yaml)
        let (device, inbox) = try await harness.device("lamp", subscribe: ["devices/lamp/inbox/#"])
        func event(_ value: Int) async throws {
            try await device.publish(to: "devices/lamp/reply", payload: Array("\(value)".utf8))
            let arrived = await harness.fromBridge.first { (try? Envelope.decode($0.payload))?.value == .number(JSONNumber(value)) }
            #expect(try arrived.map { try Envelope.decode($0.payload).path } == "/features/reply/properties/value")
        }
        func roundTrip(_ correlationID: String) async throws {
            try await harness.sendFromDitto(try liveMessage("org.example:lamp", subject: "ping", correlationID: correlationID),
                                            thingID: "org.example:lamp", correlationID: correlationID)
            let request = try #require(await inbox.first { $0.properties.correlationData == Array(correlationID.utf8) })
            try await device.publish(to: "devices/lamp/reply", payload: Array(#""pong""#.utf8),
                                     properties: PublishProperties(contentType: "application/json",
                                                                   correlationData: request.properties.correlationData))
            let response = try #require(await harness.envelope(correlationID: correlationID) { $0.status == 200 })
            #expect(response.value == "pong")
        }
        try await event(1)
        try await roundTrip("r-1")
        try await event(2)
        try await roundTrip("r-2")
        #expect(harness.bridge.metrics["uplink.published"] == 2)
        await device.disconnect()
        await harness.stop()
    }

    /// More device topics than the bridge keeps routes for: each message is still mapped right, the table stays
    /// bounded (topics beyond it are evicted and matched again when they come back).
    @Test("More topics than the route table holds: every message still mapped right")
    func moreTopicsThanTheRouteTableHolds() async throws {
        let harness = try await BridgeHarness(yaml: uplinkConfig, keptTopicLimit: 8)
        let (device, _) = try await harness.device("fleet")
        for round in 0..<2 {
            for sensor in 0..<20 {
                try await device.publish(to: "devices/d\(sensor)/telemetry/s\(sensor)",
                                         payload: Array(#"{"value": \#(round * 100 + sensor)}"#.utf8))
            }
        }
        let envelopes = try await harness.envelopes(count: 40)
        #expect(envelopes.count == 40)
        for envelope in envelopes {
            guard let value = envelope.value?.int64Value else {
                Issue.record("no value in \(envelope.topic)")
                continue
            }
            let sensor = value % 100
            #expect(envelope.topic.entityName == "d\(sensor)")
            #expect(envelope.path == "/features/s\(sensor)/properties/value")
        }
        // 20 topics through a table of 8: the first round alone evicts 12; in the second a topic may still be
        // there, so at most every one of its 20 evicts again.
        let evicted = harness.bridge.metrics["uplink.topics-evicted"]
        #expect((12...32).contains(evicted))
        await device.disconnect()
        await harness.stop()
    }

    @Test("Bad device input is logged, counted and dropped; the next message still flows")
    func badInputNeverStopsTheBridge() async throws {
        let harness = try await BridgeHarness(yaml: uplinkConfig)
        let (device, _) = try await harness.device("d2")
        let bad: [(topic: String, payload: [UInt8], kind: String)] = [
            ("devices/a/telemetry/t", Array("{not json".utf8), "invalid-payload"),
            ("devices/a/count", Array("\"twelve\"".utf8), "invalid-payload"),
            ("devices/a/telemetry/t", Array(#"{"other": 1}"#.utf8), "invalid-payload"),
            ("devices/a/telemetry/t", Array(repeating: UInt8(ascii: " "), count: 260 * 1024), "payload-too-large"),
            ("devices/a/alarm", [0xC3, 0x28], "invalid-payload"),
            ("devices/Bücher/count", Array("1".utf8), "invalid-identifier"),
            ("native/a", Array(#"{"topic":"org.example/b/things/live/events/modified","headers":{},"path":"/attributes/x","value":1,"revision":1}"#.utf8), "thing-mismatch"),
        ]
        // Twice: the second time the bridge knows the topics already (kept routes), and must refuse the same.
        for message in bad + bad {
            try await device.publish(to: message.topic, payload: message.payload)
        }
        try await device.publish(to: "devices/a/count", payload: Array("7".utf8))
        let envelopes = try await harness.envelopes(count: 1)
        #expect(envelopes.count == 1)
        #expect(envelopes.first?.value == .number(JSONNumber(7)))
        try await Task.sleep(for: .milliseconds(200))
        #expect(harness.fromBridge.count == 1)
        let metrics = harness.bridge.metrics
        #expect(metrics["uplink.dropped.invalid-payload"] == 8)
        #expect(metrics["uplink.dropped.payload-too-large"] == 2)
        #expect(metrics["uplink.dropped.invalid-identifier"] == 2)
        #expect(metrics["uplink.dropped.thing-mismatch"] == 2)
        #expect(metrics["uplink.published"] == 1)
        await device.disconnect()
        await harness.stop()
    }

    @Test("`map` prints exactly what `run` publishes")
    func mapEqualsRun() async throws {
        let harness = try await BridgeHarness(yaml: uplinkConfig)
        let (device, _) = try await harness.device("d3")
        let inputs: [(topic: String, payload: String, correlation: String)] = [
            ("devices/Sensor-9/telemetry/humidity", #"{"value": 55.5}"#, "m-1"),
            ("devices/room/alarm", "fire", "m-2"),
            ("devices/room/state", #"{"t": 1, "h": 2}"#, "m-3"),
        ]
        for input in inputs {
            try await device.publish(to: input.topic, payload: Array(input.payload.utf8),
                                     properties: PublishProperties(correlationData: Array(input.correlation.utf8)))
        }
        let published = await harness.fromBridge.wait(for: inputs.count)
        try #require(published.count == inputs.count)
        let yamlFile = harness.broker.directory.appendingPathComponent("bridge.yaml").path
        try uplinkConfig.replacingOccurrences(of: "PORT", with: "\(harness.broker.port)")
            .write(toFile: yamlFile, atomically: true, encoding: .utf8)
        for (input, message) in zip(inputs, published) {
            let sent = try Envelope.decode(message.payload)
            var arguments = ["map", "--config", yamlFile, "--topic", input.topic, "--payload", input.payload,
                             "--correlation-data", input.correlation]
            if let revision = sent.revision { arguments += ["--revision", "\(revision)"] }
            if let timestamp = sent.timestamp { arguments += ["--timestamp", timestamp] }
            let output = try await runBridgeExecutable(arguments)
            #expect(output.status == 0)
            #expect(output.standardOutput == String(decoding: message.payload, as: UTF8.self) + "\n")
            #expect(output.standardError.contains("publish to \(message.topic)"))
        }
        await device.disconnect()
        await harness.stop()
    }
}

/// Runs the built `ditto-mqtt-bridge` (built with the tests by `swift build --build-tests`) to its end, on a
/// thread of its own.
func runBridgeExecutable(_ arguments: [String]) async throws
    -> (status: Int32, standardOutput: String, standardError: String)
{
    let run = try await ChildProcess.run(try BuiltExecutable.path("ditto-mqtt-bridge"), arguments)
    return (run.status, run.standardOutput, run.standardError)
}
