import BridgeRuntime
import DittoProtocol
import Foundation
import MQTT
import Mosquitto
import MosquittoTestSupport
import Testing

@Suite("Device presence in Ditto: the ConnectionStatus feature", .serialized)
struct PresenceTests {
    static let config = baseConnections + """

        devices:
          status-topic: "devices/{deviceId}/status"
          offline-payloads: [offline]
          connection-status: { feature: ConnectionStatus, thing-id: "{namespace}:{deviceId}" }
        uplink:
          - name: telemetry
            topic: "devices/{deviceId}/telemetry/{sensor}"
            thing-id: "{namespace}:{deviceId}"
            event: { action: modified, path: "/features/{sensor}/properties/value" }
        """

    @Test("Online sets readySince and an open readyUntil; the will sets readyUntil; Ditto accepts both")
    func onlineThenWill() async throws {
        let harness = try await BridgeHarness(yaml: Self.config)
        let will = MQTTMessage(topic: "devices/pump-1/status", payload: Array("offline".utf8), retain: true)
        let (device, _) = try await harness.device("pump-1", will: will)
        try await device.publish(to: "devices/pump-1/status", payload: Array("online".utf8), retain: true)

        let online = try #require(await harness.fromBridge.first { message in
            (try? Envelope.decode(message.payload))?.path == "/features/ConnectionStatus"
        })
        #expect(online.topic == "ditto/in/org.example:pump-1")
        let onlineEnvelope = try Envelope.decode(online.payload)
        #expect(onlineEnvelope.topic.description == "org.example/pump-1/things/twin/commands/modify")
        #expect(onlineEnvelope.headers.responseRequired == false)
        #expect(onlineEnvelope.headers.correlationID != nil)
        let status = onlineEnvelope.value?["properties"]?["status"]
        #expect(status?["readyUntil"] == .string("9999-12-31T23:59:59Z"))
        guard case .string(let since)? = status?["readySince"] else {
            Issue.record("readySince missing")
            return
        }
        #expect(since.hasSuffix("Z") && since.count >= 20)
        #expect(onlineEnvelope.value?["definition"] == .array([.string("org.eclipse.ditto:ConnectionStatus:1.0.0")]))

        await device.disconnectPublishingWill()
        let offline = try #require(await harness.fromBridge.first { message in
            (try? Envelope.decode(message.payload))?.path == "/features/ConnectionStatus/properties/status/readyUntil"
        })
        let offlineEnvelope = try Envelope.decode(offline.payload)
        #expect(offlineEnvelope.topic.action == .modify)
        guard case .string(let until)? = offlineEnvelope.value else {
            Issue.record("readyUntil is not a timestamp")
            return
        }
        #expect(until >= since)
        #expect(harness.bridge.metrics["presence.published"] == 2)
        await harness.stop()
    }
}
