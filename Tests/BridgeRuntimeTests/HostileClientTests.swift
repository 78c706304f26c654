import BridgeRuntime
import DittoProtocol
import Foundation
import MQTT
import Mosquitto
import MosquittoTestSupport
import Testing

/// Requests and answers belong to one device and one thing: other clients on the same brokers cannot answer
/// for them, and equal correlation ids of different things do not collide.
@Suite("Hostile and colliding clients on real brokers", .serialized)
struct HostileClientTests {
    @Test("A reply from another device's topic is not the answer; the right device's still is")
    func replySpoofing() async throws {
        let harness = try await BridgeHarness(yaml: downlinkConfig)
        let (victim, inbox) = try await harness.device("vica", subscribe: ["devices/vica/inbox/#"])
        let (attacker, _) = try await harness.device("vicb")
        try await harness.sendFromDitto(try liveMessage("org.example:vica", subject: "open", correlationID: "C"),
                                        thingID: "org.example:vica", correlationID: "C")
        let request = try #require(await inbox.first { _ in true })
        var spoofed = PublishProperties(contentType: "application/json", correlationData: request.properties.correlationData)
        spoofed.userProperties = [UserProperty(name: "status", value: "200")]
        try await attacker.publish(to: "devices/vicb/reply", payload: Array(#"{"spoofed": true}"#.utf8), properties: spoofed)
        try await Task.sleep(for: .milliseconds(300))
        #expect(await harness.envelope(correlationID: "C", timeout: .milliseconds(200)) == nil)

        try await victim.publish(to: "devices/vica/reply", payload: Array(#"{"real": true}"#.utf8), properties: spoofed)
        let response = try #require(await harness.envelope(correlationID: "C"))
        #expect(response.value == ["real": true])
        #expect(harness.bridge.metrics["reply.unmatched"] == 1)
        await harness.stop()
    }

    @Test("A response for another thing never reaches the device that asked; the right one does")
    func responseForAnotherThing() async throws {
        let harness = try await BridgeHarness(yaml: downlinkConfig)
        let (asker, answers) = try await harness.device("asker", subscribe: ["devices/asker/answers"])
        try await asker.publish(to: "devices/asker/ask/config", payload: Array("{}".utf8),
                                properties: PublishProperties(responseTopic: "devices/asker/answers",
                                                              correlationData: Array("ask-A".utf8)))
        let request = try Envelope.decode(try #require(await harness.fromBridge.first { _ in true }).payload)
        let replyTo = try #require(request.headers.replyTo)
        // Same correlation id, another thing.
        var headers = DittoHeaders()
        headers.correlationID = "ask-A"
        let foreign = Envelope.messageResponse(
            to: try Envelope.liveMessage(thingID: try ThingID("org.example:other"), direction: .outbox, subject: "config",
                                     payload: nil, headers: headers), status: 200, payload: .json(["foreign": true]))
        try await harness.ditto.publish(to: "ditto/out/org.example:other/reply", payload: foreign.encoded(),
                                        properties: PublishProperties(correlationData: Array("ask-A".utf8)))
        #expect(await answers.first(timeout: .milliseconds(500)) { _ in true } == nil)

        let real = Envelope.messageResponse(to: request, status: 200, payload: .json(["real": true]))
        try await harness.ditto.publish(to: replyTo, payload: real.encoded(),
                                        properties: PublishProperties(correlationData: Array("ask-A".utf8)))
        let answer = try #require(await answers.first { _ in true })
        #expect(try JSON.parse(answer.payload) == ["real": true])
        await harness.stop()
    }

    @Test("Equal correlation ids of different devices and things do not collide, in either direction")
    func correlationCollisions() async throws {
        let harness = try await BridgeHarness(yaml: downlinkConfig)
        let (one, _) = try await harness.device("one")
        let (two, _) = try await harness.device("two")
        for device in [(one, "one"), (two, "two")] {
            try await device.0.publish(to: "devices/\(device.1)/ask/config", payload: Array("{}".utf8),
                                       properties: PublishProperties(responseTopic: "devices/\(device.1)/answers",
                                                                     correlationData: Array("req-1".utf8)))
        }
        let forwarded = try await harness.envelopes(count: 2)
        #expect(Set(forwarded.map { $0.topic.thingID?.description ?? "" }) == ["org.example:one", "org.example:two"])
        #expect(harness.bridge.metrics["uplink.dropped.duplicate-request"] == 0)

        let (_, first) = try await startMQTT5Device(harness, id: "d1") { _ in (200, Array("1".utf8)) }
        let (_, second) = try await startMQTT5Device(harness, id: "d2") { _ in (200, Array("2".utf8)) }
        try await harness.sendFromDitto(try liveMessage("org.example:d1", subject: "go", correlationID: "same"),
                                        thingID: "org.example:d1", correlationID: "same")
        try await harness.sendFromDitto(try liveMessage("org.example:d2", subject: "go", correlationID: "same"),
                                        thingID: "org.example:d2", correlationID: "same")
        let responses = await harness.fromBridge.wait(for: 4, timeout: .seconds(10)).compactMap { try? Envelope.decode($0.payload) }
            .filter { $0.isResponse }
        #expect(Set(responses.map { $0.topic.thingID?.description ?? "" }) == ["org.example:d1", "org.example:d2"])
        #expect(first.messages.count == 1 && second.messages.count == 1)
        #expect(harness.bridge.metrics["downlink.dropped.duplicate"] == 0)
        await harness.stop()
    }
}
