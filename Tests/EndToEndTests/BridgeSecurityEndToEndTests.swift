import Foundation
import MQTT
import Mosquitto
import MosquittoTestSupport
import Testing

/// Issue 21 through the real binary: `check`'s shared-listener warning, and the response-topic attack on real
/// brokers (refused, logged, counted on `/metrics`; the victim's topic gets nothing).
@Suite("The bridge's own security rules, end to end", .serialized)
struct BridgeSecurityEndToEndTests {
    static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func sharedListenerConfig(ditto: String) -> String {
        """
        connections:
          device: { host: broker.example, port: 1883 }
          ditto: { \(ditto) }
        defaults: { namespace: org.example }
        uplink:
          - name: telemetry
            topic: "devices/{deviceId}/telemetry"
            thing-id: "{namespace}:{deviceId}"
            event: { path: /features/t/properties/value }
        """
    }

    static func writeTemporary(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("shared-\(UUID().uuidString.prefix(8)).yaml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("check warns (exit 0) when both sides share one listener without authentication, in text and JSON")
    func checkWarnsAboutASharedAnonymousListener() async throws {
        let path = try Self.writeTemporary(Self.sharedListenerConfig(ditto: "host: broker.example, port: 1883"))
        defer { try? FileManager.default.removeItem(atPath: path) }

        let text = try await BridgeExecutable.run(["check", "--config", path])
        #expect(text.status == 0, "\(text.output)")
        let lines = text.output.split(separator: "\n").map(String.init)
        let warning = try #require(lines.first { $0.contains("warning:") }, "check printed:\n\(text.output)")
        #expect(warning.hasPrefix("\(path):3:"))
        #expect(warning.contains("connections.device and connections.ditto are the same listener (broker.example:1883)"))
        #expect(warning.contains("act as Ditto"))
        #expect(lines.last?.contains("OK (1 uplink rules, 0 downlink rules, 1 warning)") == true, "\(text.output)")

        let json = try await BridgeExecutable.run(["check", "--config", path, "--format", "json"])
        #expect(json.status == 0)
        let report = try JSONDecoder().decode(JSON.self, from: Data(json.output.utf8))
        #expect(report["ok"] == .bool(true))
        guard case .array(let warnings)? = report["warnings"], warnings.count == 1 else {
            Issue.record("check --format json: \(json.output)")
            return
        }
        #expect(warnings[0]["key"]?.string == "connections.ditto")
        #expect(warnings[0]["severity"]?.string == "warning")
        #expect(warnings[0]["message"]?.string?.contains("connections.device and connections.ditto") == true)
        #expect(warnings[0]["hint"]?.string?.contains("listener of its own") == true)

        // With credentials on Ditto's side: no warning.
        let authenticated = try Self.writeTemporary(Self.sharedListenerConfig(ditto: "host: broker.example, port: 1883, username: ditto"))
        defer { try? FileManager.default.removeItem(atPath: authenticated) }
        let quiet = try await BridgeExecutable.run(["check", "--config", authenticated])
        #expect(quiet.status == 0)
        #expect(!quiet.output.contains("warning:"), "\(quiet.output)")
    }

    @Test("The shipped Config/bridge.yaml (a private loopback broker) still passes check without a warning")
    func shippedConfigPasses() async throws {
        let path = Self.repository.appendingPathComponent("Config/bridge.yaml").path
        let check = try await BridgeExecutable.run(["check", "--config", path])
        #expect(check.status == 0, "\(check.output)")
        #expect(!check.output.contains("warning:"), "\(check.output)")
    }

    @Test("asker names victim's command topic as response topic: refused, logged, counted; the victim gets nothing")
    func responseTopicAttack() async throws {
        let world = try await E2EWorld(extraUplinkRules: [
            "  - name: requests",
            "    topic: \"devices/{deviceId}/ask/{subject}\"",
            "    thing-id: \"{namespace}:{deviceId}\"",
            "    message: { subject: \"{subject}\", response: true, timeout: 5s }",
        ])
        do {
            try await world.waitUntilReady()
            // Ditto answers every request: without the confinement, its answer would land on the victim's topic.
            let answering = Task {
                var answered = Set<String>()
                while !Task.isCancelled {
                    for message in world.fromBridge.messages {
                        guard let request = try? DittoMessage(message), let id = request.json["headers"]?["correlation-id"]?.string,
                              let replyTo = request.json["headers"]?["reply-to"]?.string, answered.insert(id).inserted,
                              let topic = request.json["topic"]?.string, let path = request.json["path"]?.string
                        else { continue }
                        let response = """
                            {"topic":"\(topic)","headers":{"correlation-id":"\(id)","content-type":"application/json"},\
                            "path":"\(path)","status":200,"value":{"answered":true}}
                            """
                        _ = try? await world.ditto.publish(to: replyTo, payload: Array(response.utf8),
                                                           properties: PublishProperties(correlationData: Array(id.utf8)))
                    }
                    try? await Task.sleep(for: .milliseconds(20))
                }
            }
            defer { answering.cancel() }
            let (_, victim) = try await world.client(on: world.deviceBroker, id: "device-victim", subscribe: ["devices/victim/#"])
            let (asker, answers) = try await world.client(on: world.deviceBroker, id: "device-asker", subscribe: ["devices/asker/answers"])

            try await asker.publish(to: "devices/asker/ask/config", payload: Array("{}".utf8),
                                    properties: PublishProperties(responseTopic: "devices/victim/inbox/pwned",
                                                                  correlationData: Array("attack-1".utf8)))
            try await asker.publish(to: "devices/asker/ask/config", payload: Array("{}".utf8),
                                    properties: PublishProperties(responseTopic: "devices/asker/answers",
                                                                  correlationData: Array("own-1".utf8)))
            let answer = try #require(await answers.first { _ in true })
            #expect(answer.properties.correlationData == Array("own-1".utf8))
            try await Task.sleep(for: .milliseconds(300))
            #expect(victim.messages.isEmpty, "\(victim.messages.map(\.topic))")
            let forwarded = try world.dittoMessages().compactMap { $0.json["headers"]?["correlation-id"]?.string }
            #expect(forwarded == ["own-1"])

            let scrape = try await world.scrape()
            #expect(scrape.sum("ditto_mqtt_bridge_dropped_total", ["direction": "uplink", "reason": "response-topic-refused"]) == 1)
            let log = world.bridge.log
            let line = try #require(log.split(separator: "\n").first { $0.contains("response-topic-refused") }, "\(log)")
            #expect(line.contains("warning"))
            #expect(line.contains("devices/victim/inbox/pwned"))
            #expect(line.contains("devices/asker/ask/config"))
            #expect(line.contains("requests"))
        } catch {
            await world.shutdown(passed: false)
            throw error
        }
        await world.shutdown(passed: true)
    }
}
