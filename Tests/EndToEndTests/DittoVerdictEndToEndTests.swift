import Foundation
import MQTT
import Mosquitto
import MosquittoTestSupport
import Testing

/// Issue 22, items 2, 3 and 5, through the real binary on real brokers: what a device forwards through a
/// pass-through rule and what the bridge builds from a device's answer is held to what Ditto's own parser
/// accepts (see `Tests/DittoProtocolTests/Resources/responses`). Messages Ditto would refuse, or take for another
/// thing, never reach Ditto's broker; a device that named a response topic, and a requester, get Ditto's error.
@Suite("Ditto's verdicts on pass-through values and device answers, end to end", .serialized)
struct DittoVerdictEndToEndTests {
    static let passthroughRule = [
        "  - name: native",
        "    topic: \"devices/{deviceId}/ditto\"",
        "    thing-id: \"{namespace}:{deviceId}\"",
        "    passthrough: {}",
    ]

    static let commandRule = [
        "  - name: commands",
        "    match: { commands: { actions: [create, modify, retrieve] } }",
        "    thing-id: \"{namespace}:{deviceId}\"",
        "    topic: \"devices/{deviceId}/commands/{action}\"",
        "    reply: { mode: mqtt5, topic: \"devices/{deviceId}/reply\", timeout: 10s }",
    ]

    /// Runs `body` with the pass-through and command rules added, and shuts everything down afterwards.
    func withVerdictWorld(_ body: (E2EWorld) async throws -> Void) async throws {
        let world = try await E2EWorld(extraUplinkRules: Self.passthroughRule, extraDownlinkRules: Self.commandRule)
        do {
            try await world.waitUntilReady()
            try await body(world)
        } catch {
            await world.shutdown(passed: false)
            throw error
        }
        await world.shutdown(passed: true)
    }

    /// A live event of pump-4 at `path` with `value`, as a device forwards it.
    static func event(_ action: String, path: String = "/", value: String, correlationID: String) -> [UInt8] {
        Array(#"{"topic":"org.example/pump-4/things/live/events/\#(action)","headers":{"correlation-id":"\#(correlationID)"},"path":"\#(path)","value":\#(value),"revision":1}"#.utf8)
    }

    /// The pass-through messages of items 2 and 3, each with the error code the device gets on its response
    /// topic (nil: a response, which gets no answer), and one Ditto accepts.
    static let refused: [(name: String, payload: [UInt8], code: String?)] = [
        ("modified thing of another thing", event("modified", value: #"{"thingId":"org.example:pump-5","attributes":{"a":1}}"#,
                                                  correlationID: "other-thing"), "things:id.notsettable"),
        ("created thing of another thing", event("created", value: #"{"thingId":"org.example:pump-5"}"#,
                                                 correlationID: "other-created"), "things:id.notsettable"),
        ("modified thing without thingId", event("modified", value: #"{"attributes":{"a":1}}"#, correlationID: "no-id"),
         "json.format.invalid"),
        ("feature definition [\"bad\"]", event("modified", path: "/features/f", value: #"{"definition":["bad"]}"#,
                                                correlationID: "feature-definition"), "things:definition.identifier.invalid"),
        ("thing definition \"not a def\"", event("modified", value: #"{"thingId":"org.example:pump-4","definition":"not a def"}"#,
                                                  correlationID: "thing-definition"), "things:definition.identifier.invalid"),
        ("created thing with policyId \"bad\"", event("created", value: #"{"thingId":"org.example:pump-4","policyId":"bad"}"#,
                                                       correlationID: "policy-id"), "policies:id.invalid"),
        ("modify response with status 200", Array(#"{"topic":"org.example/pump-4/things/live/commands/modify","headers":{"correlation-id":"modify-200"},"path":"/attributes/a","status":200}"#.utf8), nil),
    ]

    @Test("Pass-through: another thing's value, a thing without thingId and values Ditto refuses never reach Ditto; the device gets Ditto's error")
    func passthroughHoldsDittosRules() async throws {
        try await withVerdictWorld { world in
            let (device, answers) = try await world.client(on: world.deviceBroker, id: "device-pump-4",
                                                           subscribe: ["devices/pump-4/answers"])
            for (index, message) in Self.refused.enumerated() {
                try await device.publish(to: "devices/pump-4/ditto", payload: message.payload, properties: PublishProperties(
                    responseTopic: "devices/pump-4/answers", correlationData: Array("refused-\(index)".utf8)))
            }
            // Ditto accepts this one: the device's own thing, a valid definition. It comes last, so once it is
            // through, everything before it was decided.
            try await device.publish(to: "devices/pump-4/ditto", payload: Self.event(
                "modified", value: #"{"thingId":"org.example:pump-4","definition":"org.example:pump:1.0.0","policyId":"org.example:pump-4"}"#,
                correlationID: "accepted"))
            let accepted = try #require(await world.fromBridge.first { _ in true }, "nothing reached Ditto:\n\(world.bridge.logTail())")
            #expect(try DittoMessage(accepted).correlationID == "accepted")

            let expectedAnswers = Self.refused.filter { $0.code != nil }.count
            let received = await answers.wait(for: expectedAnswers)
            try await Task.sleep(for: .milliseconds(300))
            let forwarded = try world.dittoMessages().compactMap(\.correlationID)
            #expect(forwarded == ["accepted"], "Ditto's broker got \(forwarded)")

            // Each answer is the Ditto error response Ditto would have sent, under the device's correlation data.
            var codes: [String: String] = [:]
            for answer in received {
                let json = try JSONDecoder().decode(JSON.self, from: Data(answer.payload))
                let data = String(decoding: answer.properties.correlationData ?? [], as: UTF8.self)
                #expect(json["topic"]?.string == "org.example/pump-4/things/live/errors", "\(data)")
                codes[data] = json["value"]?["error"]?.string
            }
            for (index, message) in Self.refused.enumerated() where message.code != nil {
                #expect(codes["refused-\(index)"] == message.code, "\(message.name): \(codes["refused-\(index)"] ?? "no answer")")
            }
            #expect(received.count == expectedAnswers)

            let scrape = try await world.scrape()
            #expect(scrape.sum(Metric.dropped, ["direction": "uplink", "reason": "thing-mismatch"]) == 2)
            #expect(scrape.sum(Metric.dropped, ["direction": "uplink", "reason": "invalid-protocol"]) == 5)
        }
    }

    /// How the device answers each command, by correlation id: status user property and payload.
    static let answers: [String: (status: String?, payload: String)] = [
        "retrieve-feature": ("200", "42"),
        "retrieve-attributes": ("200", "[1,2]"),
        "modify-feature": ("201", "42"),
        "create-no-id": ("201", #"{"attributes":{}}"#),
        "create-other": ("201", #"{"thingId":"org.example:someone-else"}"#),
        "retrieve-ok": (nil, #"{"properties":{"p":1}}"#),
        "create-ok": ("200", ""),
    ]

    @Test("A device answer that does not fit the command reaches the requester as 502 bridge:device.reply.invalid, not as a response Ditto refuses")
    func unfitAnswersBecomeErrors() async throws {
        try await withVerdictWorld { world in
            let (device, requests) = try await world.client(on: world.deviceBroker, id: "device-dev-1",
                                                             subscribe: ["devices/dev-1/commands/#"])
            let answering = Task {
                var answered = Set<String>()
                while !Task.isCancelled {
                    for request in requests.messages {
                        guard let data = request.properties.correlationData, let topic = request.properties.responseTopic,
                              answered.insert(String(decoding: data, as: UTF8.self)).inserted,
                              let answer = Self.answers[String(decoding: data, as: UTF8.self)]
                        else { continue }
                        let status = answer.status.map { [UserProperty(name: "status", value: $0)] } ?? []
                        _ = try? await device.publish(to: topic, payload: Array(answer.payload.utf8), properties: PublishProperties(
                            contentType: "application/json", correlationData: data, userProperties: status))
                    }
                    try? await Task.sleep(for: .milliseconds(20))
                }
            }
            defer { answering.cancel() }

            let commands: [(id: String, action: String, path: String, value: String?)] = [
                ("retrieve-feature", "retrieve", "/features/f", nil),
                ("retrieve-attributes", "retrieve", "/attributes", nil),
                ("modify-feature", "modify", "/features/f", #"{"properties":{}}"#),
                ("create-no-id", "create", "/", "{}"),
                ("create-other", "create", "/", "{}"),
                ("retrieve-ok", "retrieve", "/features/f", nil),
                ("create-ok", "create", "/", #"{"attributes":{"a":1}}"#),
            ]
            for command in commands {
                let value = command.value.map { #","value":\#($0)"# } ?? ""
                let json = #"{"topic":"org.example/dev-1/things/live/commands/\#(command.action)","headers":{"correlation-id":"\#(command.id)","response-required":true},"path":"\#(command.path)"\#(value)}"#
                try await world.ditto.publish(
                    to: "ditto/out/org.example:dev-1", payload: Array(json.utf8), qos: .atLeastOnce,
                    properties: PublishProperties(contentType: "application/vnd.eclipse.ditto+json",
                                                  responseTopic: E2E.replyTopic("dev-1"), correlationData: Array(command.id.utf8)))
            }
            let arrived = await eventually(timeout: .seconds(10), every: .milliseconds(50)) {
                ((try? world.answers(for: "dev-1")) ?? []).count >= commands.count
            }
            #expect(arrived, "answers: \(((try? world.answers(for: "dev-1")) ?? []).compactMap(\.correlationID))\n\(world.bridge.logTail())")
            let byID = Dictionary(try world.answers(for: "dev-1").map { ($0.correlationID ?? "", $0) }) { first, _ in first }

            for id in ["retrieve-feature", "retrieve-attributes", "modify-feature", "create-no-id", "create-other"] {
                let answer = try #require(byID[id], "no answer to \(id)")
                #expect(answer.topic == "org.example/dev-1/things/live/errors", "\(id): \(answer.json)")
                #expect(answer.status == 502, "\(id)")
                #expect(answer.value?["error"]?.string == "bridge:device.reply.invalid", "\(id): \(answer.json)")
                #expect(answer.value?["message"]?.string?.isEmpty == false, "\(id)")
            }
            let retrieved = try #require(byID["retrieve-ok"])
            #expect(retrieved.topic == "org.example/dev-1/things/live/commands/retrieve")
            #expect(retrieved.status == 200)
            #expect(retrieved.value?["properties"]?["p"] == .number(1))
            // A create answered without a payload: the created thing is the one asked for, under the topic's thingId.
            let created = try #require(byID["create-ok"])
            #expect(created.topic == "org.example/dev-1/things/live/commands/create")
            #expect(created.status == 201)
            #expect(created.value?["thingId"]?.string == "org.example:dev-1", "\(created.json)")
        }
    }
}
