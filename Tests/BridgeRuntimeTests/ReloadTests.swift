import BridgeConfig
import BridgeRuntime
import DittoProtocol
import Foundation
import MQTT
import Mosquitto
import MosquittoTestSupport
import Testing

@Suite("Reloading the config while the bridge runs", .serialized)
struct ReloadTests {
    static func config(path: String, topic: String) -> String {
        baseConnections + """

            uplink:
              - name: telemetry
                topic: "\(topic)"
                thing-id: "{namespace}:{deviceId}"
                event: { action: modified, path: "\(path)" }
                payload: { format: json, pointer: /value }
            """ + inboxDownlink
    }

    @Test("A new mapping applies to the next message; no reconnect; a pending request still gets its answer")
    func newMapping() async throws {
        let harness = try await BridgeHarness(
            yaml: Self.config(path: "/features/{sensor}/properties/value", topic: "devices/{deviceId}/telemetry/{sensor}"))
        let (device, inbox) = try await harness.device("lamp", subscribe: ["devices/lamp/inbox/#"])
        try await harness.sendFromDitto(try liveMessage("org.example:lamp", subject: "blink", correlationID: "r-1"),
                                        thingID: "org.example:lamp", correlationID: "r-1")
        let request = try #require(await inbox.first { _ in true })

        let reloaded = Self.config(path: "/features/{sensor}/properties/reading", topic: "devices/{deviceId}/t2/{sensor}")
            .replacingOccurrences(of: "PORT", with: "\(harness.broker.port)")
        let changes = await harness.bridge.reload(try BridgeConfiguration.parse(yaml: reloaded, fileName: "reloaded.yaml",
                                                                               environment: [:]))
        #expect(!changes.contains { $0.contains("reconnected") })
        // The same file again changes nothing.
        _ = await harness.bridge.reload(try BridgeConfiguration.parse(yaml: reloaded, fileName: "reloaded.yaml", environment: [:]))
        #expect(harness.bridge.metrics["reload.applied"] == 1)
        #expect(harness.bridge.metrics["reload.unchanged"] == 1)

        try await device.publish(to: "devices/lamp/t2/temp", payload: Array(#"{"value": 7}"#.utf8))
        let event = try #require(await harness.fromBridge.first { message in
            (try? Envelope.decode(message.payload))?.path == "/features/temp/properties/reading"
        })
        #expect(try Envelope.decode(event.payload).value == 7)

        // The request sent before the reload is answered after it.
        try await device.publish(to: "devices/lamp/reply", payload: Array(#"{"ok": true}"#.utf8),
                                 properties: PublishProperties(contentType: "application/json",
                                                               correlationData: request.properties.correlationData))
        let response = try #require(await harness.envelope(correlationID: "r-1") { $0.status == 200 })
        #expect(response.path == "/inbox/messages/blink")
        #expect(harness.bridge.metrics["device.connected"] == 1)
        #expect(harness.bridge.metrics["ditto.connected"] == 1)
        await device.disconnect()
        await harness.stop()
    }

    /// The bridge keeps what each device topic decides (rule, thing, path) and which downlink rule each Ditto
    /// signal goes to; a reload must not leave an old decision in place for a topic or signal both files take.
    @Test("A reload changes what a topic or Ditto signal already seen maps to")
    func reloadReachesTopicsAlreadySeen() async throws {
        let topic = "devices/{deviceId}/telemetry/{sensor}"
        let harness = try await BridgeHarness(yaml: Self.config(path: "/features/{sensor}/properties/value", topic: topic))
        let (device, inbox) = try await harness.device("lamp", subscribe: ["devices/lamp/inbox/#", "devices/lamp/in2/#"])
        func blink(_ index: Int) async throws {
            try await harness.sendFromDitto(try liveMessage("org.example:lamp", subject: "blink", correlationID: "b-\(index)",
                                                            headers: [("response-required", "false")]),
                                            thingID: "org.example:lamp")
        }
        for value in 1...2 {
            try await device.publish(to: "devices/lamp/telemetry/temp", payload: Array(#"{"value": \#(value)}"#.utf8))
            let event = try #require(await harness.fromBridge.first { (try? Envelope.decode($0.payload))?.value == .number(JSONNumber(value)) })
            #expect(try Envelope.decode(event.payload).path == "/features/temp/properties/value")
            try await blink(value)
        }
        #expect(await inbox.wait(for: 2).map(\.topic) == ["devices/lamp/inbox/blink", "devices/lamp/inbox/blink"])
        // The reloaded inbox rule takes only `other`; `blink` goes to a second rule with a topic of its own.
        let reloaded = Self.config(path: "/features/{sensor}/properties/reading", topic: topic)
            .replacingOccurrences(of: "PORT", with: "\(harness.broker.port)")
            .replacingOccurrences(of: #"subject: "*""#, with: "subject: other") + """

              - name: blink
                match: { messages: { subject: blink } }
                thing-id: "{namespace}:{deviceId}"
                topic: "devices/{deviceId}/in2/{subject}"
            """
        _ = await harness.bridge.reload(try BridgeConfiguration.parse(yaml: reloaded, fileName: "reloaded.yaml", environment: [:]))
        #expect(harness.bridge.metrics["reload.applied"] == 1)
        try await device.publish(to: "devices/lamp/telemetry/temp", payload: Array(#"{"value": 3}"#.utf8))
        let event = try #require(await harness.fromBridge.first { (try? Envelope.decode($0.payload))?.value == 3 })
        #expect(try Envelope.decode(event.payload).path == "/features/temp/properties/reading")
        try await blink(3)
        #expect(await inbox.wait(for: 3).last?.topic == "devices/lamp/in2/blink")
        await device.disconnect()
        await harness.stop()
    }

    @Test("A changed device connection reconnects that side only, to the new broker")
    func newDeviceBroker() async throws {
        let harness = try await BridgeHarness(
            yaml: Self.config(path: "/features/{sensor}/properties/value", topic: "devices/{deviceId}/telemetry/{sensor}"))
        let other = try await TestBroker.start()
        let moved = Self.config(path: "/features/{sensor}/properties/value", topic: "devices/{deviceId}/telemetry/{sensor}")
            .replacingOccurrences(of: "device: { host: 127.0.0.1, port: PORT", with: "device: { host: 127.0.0.1, port: \(other.port)")
            .replacingOccurrences(of: "PORT", with: "\(harness.broker.port)")
        let changes = await harness.bridge.reload(try BridgeConfiguration.parse(yaml: moved, fileName: "moved.yaml", environment: [:]))
        #expect(changes.contains { $0.hasPrefix("device connection changed") })
        await harness.bridge.waitUntilReady()

        let device = try MosquittoClient(configuration: other.clientConfiguration(clientID: "device-moved"), logger: harnessLogger)
        try await device.connect()
        let deadline = ContinuousClock.now + .seconds(10)
        var arrived = false
        var sequence = 0
        while !arrived, ContinuousClock.now < deadline {
            sequence += 1
            try await device.publish(to: "devices/m1/telemetry/temp", payload: Array(#"{"value": \#(sequence)}"#.utf8))
            arrived = await harness.fromBridge.first(timeout: .milliseconds(300)) { _ in true } != nil
        }
        #expect(arrived)
        #expect(harness.bridge.metrics["ditto.connected"] == 1)
        await device.disconnect()
        await harness.stop()
        other.stop()
    }
}
