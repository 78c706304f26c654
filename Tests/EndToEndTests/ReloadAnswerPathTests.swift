import Foundation
import MQTT
import Mosquitto
import MosquittoTestSupport
import Testing

extension EndToEndTests {
    /// Issue 22, item 6: docs/OPERATIONS.md (Operating notes): requests sent before a reload "are answered with the rules they were sent with".
    @Test("SIGHUP moving the reply topic: a request sent before it is answered on the old topic, then the old topic is unsubscribed")
    func reloadKeepsTheAnswerPathOfAWaitingRequest() async throws {
        try await withWorld { world in
            let (lamp, lampInbox) = try await world.client(on: world.deviceBroker, id: "device-lamp",
                                                           subscribe: ["devices/lamp/inbox/#"])
            try await world.sendLiveMessage(to: "lamp", subject: "slow", correlationID: "before-reload", value: "1")
            let request = try #require(await lampInbox.first(timeout: .seconds(10)) { _ in true },
                                       "the request did not reach the device")
            #expect(request.properties.responseTopic == "devices/lamp/reply")

            let moved = world.configFile.yaml.replacingOccurrences(of: "devices/{deviceId}/reply", with: "devices/{deviceId}/answers")
            #expect(moved != world.configFile.yaml)
            try world.writeConfig(moved)
            world.bridge.signal(SIGHUP)
            let reloaded = await eventually(timeout: .seconds(10)) { world.bridge.log.contains("config reloaded") }
            #expect(reloaded, "no 'config reloaded' in the bridge's log:\n\(world.bridge.logTail())")
            // Give a premature UNSUBSCRIBE time to reach the broker before the device answers.
            try await Task.sleep(for: .milliseconds(500))

            // The device answers the old request on the old topic: Ditto gets the response.
            try await lamp.publish(to: "devices/lamp/reply", payload: Array(#"{"late": true}"#.utf8),
                                   properties: PublishProperties(contentType: "application/json",
                                                                 correlationData: request.properties.correlationData))
            let answered = await eventually(timeout: .seconds(5)) {
                ((try? world.answers(for: "lamp")) ?? []).contains { $0.correlationID == "before-reload" }
            }
            #expect(answered, "the request sent before the reload got no answer:\n\(world.bridge.logTail())")
            let answer = try world.answers(for: "lamp").first { $0.correlationID == "before-reload" }
            #expect(answer?.status == 200)
            #expect(answer?.value == .object(["late": .bool(true)]))

            // A request after the reload is answered on the new topic.
            try await world.sendLiveMessage(to: "lamp", subject: "fast", correlationID: "after-reload", value: "2")
            let second = try #require(await lampInbox.first(timeout: .seconds(10)) { $0.topic == "devices/lamp/inbox/fast" },
                                      "the second request did not reach the device")
            #expect(second.properties.responseTopic == "devices/lamp/answers")
            try await lamp.publish(to: "devices/lamp/answers", payload: Array(#"{"fresh": true}"#.utf8),
                                   properties: PublishProperties(contentType: "application/json",
                                                                 correlationData: second.properties.correlationData))
            let answeredAfter = await eventually(timeout: .seconds(5)) {
                ((try? world.answers(for: "lamp")) ?? []).contains { $0.correlationID == "after-reload" }
            }
            #expect(answeredAfter, "the request sent after the reload got no answer")

            // No request waits on the old topic any more: the bridge unsubscribed it.
            let released = await eventually(timeout: .seconds(5)) {
                world.bridge.log.contains("reply topics of replaced rules released")
            }
            #expect(released, "the old reply topic was not released:\n\(world.bridge.logTail())")
            try await Task.sleep(for: .milliseconds(300))
            try await lamp.publish(to: "devices/lamp/reply", payload: Array(#"{"stray": true}"#.utf8),
                                   properties: PublishProperties(contentType: "application/json", correlationData: Array("stray".utf8)))
            try await Task.sleep(for: .milliseconds(700))
            #expect(!world.bridge.log.contains("device answer matches no pending request"),
                    "the bridge still reads the old reply topic:\n\(world.bridge.logTail())")
            let scrape = try await world.scrape()
            #expect(scrape.sum(Metric.messages, ["direction": "reply"]) == 2)
        }
    }
}
