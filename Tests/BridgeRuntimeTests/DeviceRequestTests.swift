import BridgeRuntime
import DittoProtocol
import Foundation
import MQTT
import Mosquitto
import MosquittoTestSupport
import Testing

@Suite("Requests devices start, answered by Ditto", .serialized)
struct DeviceRequestTests {
    /// Plays Ditto answering every live message request: publishes the response to the request's `reply-to`.
    func answerEveryRequest(_ harness: BridgeHarness, value: JSONValue) {
        Task {
            var answered = Set<String>()
            while true {
                for message in harness.fromBridge.messages {
                    guard let request = try? Envelope.decode(message.payload), !request.isResponse,
                          let id = request.headers.correlationID, !answered.contains(id),
                          request.headers.responseRequired == true, let replyTo = request.headers.replyTo
                    else { continue }
                    answered.insert(id)
                    var headers = DittoHeaders()
                    headers["x-answered-by"] = "ditto"
                    let response = Envelope.messageResponse(to: request, status: 200, payload: .json(value), headers: headers)
                    #expect(message.properties.responseTopic == replyTo)
                    _ = try? await harness.ditto.publish(
                        to: replyTo, payload: response.encoded(),
                        properties: PublishProperties(contentType: "application/vnd.eclipse.ditto+json",
                                                      correlationData: Array(id.utf8)))
                }
                try? await Task.sleep(for: .milliseconds(10))
                if Task.isCancelled { return }
            }
        }
    }

    @Test("MQTT 5 device: response topic and correlation data; Ditto's answer comes back on them")
    func mqtt5() async throws {
        let harness = try await BridgeHarness(yaml: downlinkConfig)
        answerEveryRequest(harness, value: ["interval": 30])
        let (device, inbox) = try await harness.device("asker", subscribe: ["devices/asker/answers"])
        try await device.publish(to: "devices/asker/ask/config", payload: Array(#"{"want": "interval"}"#.utf8),
                                 properties: PublishProperties(responseTopic: "devices/asker/answers",
                                                               correlationData: [0x01, 0x02, 0xFE]))
        let request = try #require(await harness.fromBridge.first { _ in true })
        let envelope = try Envelope.decode(request.payload)
        #expect(envelope.topic.description == "org.example/asker/things/live/messages/config")
        #expect(envelope.path == "/outbox/messages/config")
        #expect(envelope.headers.responseRequired == true)
        #expect(envelope.headers.timeout?.milliseconds == 5_000)
        #expect(envelope.headers.replyTo == "ditto/out/org.example:asker/reply")
        #expect(envelope.headers.correlationID == "base64:AQL+")
        let answer = try #require(await inbox.wait(for: 1).first)
        #expect(answer.topic == "devices/asker/answers")
        #expect(answer.properties.correlationData == [0x01, 0x02, 0xFE])
        #expect(answer.properties.userProperties.contains(UserProperty(name: "status", value: "200")))
        #expect(answer.properties.userProperties.contains(UserProperty(name: "x-answered-by", value: "ditto")))
        #expect(try JSON.parse(answer.payload) == ["interval": 30])
        #expect(await harness.bridge.pendingRequestCounts.uplink == 0)
        await device.disconnect()
        await harness.stop()
    }

    @Test("MQTT 3.1.1 device: correlation id in the request topic, Ditto's answer on .../answer/{correlationId}/{status}")
    func mqtt311() async throws {
        let harness = try await BridgeHarness(yaml: downlinkConfig)
        answerEveryRequest(harness, value: "ok")
        let (device, inbox) = try await harness.device("old", version: .v311, subscribe: ["legacy/old/answer/#"])
        try await device.publish(to: "legacy/old/ask/req-77/firmware", payload: Array(#"{"version": "1.0"}"#.utf8))
        let answer = try #require(await inbox.wait(for: 1).first)
        #expect(answer.topic == "legacy/old/answer/req-77/200")
        #expect(answer.payload == Array(#""ok""#.utf8))
        let request = try Envelope.decode(try #require(harness.fromBridge.messages.first).payload)
        #expect(request.headers.correlationID == "req-77")
        #expect(request.thingID?.description == "org.example:legacy-old")
        await device.disconnect()
        await harness.stop()
    }

    @Test("A device request whose headers Ditto would refuse gets the 431 on its response topic at once")
    func oversizedHeaders() async throws {
        let harness = try await BridgeHarness(yaml: downlinkConfig)
        let (device, inbox) = try await harness.device("big", subscribe: ["devices/big/answers"])
        var properties = PublishProperties(responseTopic: "devices/big/answers", correlationData: Array("q-431".utf8))
        properties.userProperties = [UserProperty(name: "x-big", value: String(repeating: "b", count: 6_000))]
        try await device.publish(to: "devices/big/ask/config", payload: Array("{}".utf8), properties: properties)
        let answer = try #require(await inbox.first(timeout: .seconds(5)) { _ in true })
        #expect(answer.properties.correlationData == Array("q-431".utf8))
        #expect(answer.properties.userProperties.first { $0.name == "status" }?.value == "431")
        let error = try JSON.parse(answer.payload)
        #expect(error["status"] == 431)
        #expect(harness.fromBridge.messages.isEmpty)
        await device.disconnect()
        await harness.stop()
    }
}
