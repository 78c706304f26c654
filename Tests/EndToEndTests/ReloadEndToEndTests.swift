import Foundation
import MQTT
import Mosquitto
import MosquittoTestSupport
import Testing

extension EndToEndTests {
    @Test("SIGHUP with a valid changed config: the next message uses the new rules, no reconnect, a pending request is answered")
    func reloadValidConfig() async throws {
        try await withWorld { world in
            let (sensor, _) = try await world.client(on: world.deviceBroker, id: "device-sensor-1")
            // The lamp takes requests and answers only when the test says so.
            let (lamp, lampInbox) = try await world.client(on: world.deviceBroker, id: "device-lamp",
                                                           subscribe: ["devices/lamp/inbox/#"])
            #expect(E2EWorld.connections(of: E2E.deviceClientID, in: world.deviceBroker) == 1)
            #expect(E2EWorld.connections(of: E2E.dittoClientID, in: world.dittoBroker) == 1)

            // Before: the old rule.
            let before = try await world.event(of: "sensor-1", afterPublishing: 1, with: sensor)
            #expect(before?.path == "/features/temp/properties/value")

            // A request the device answers only after the reload (the `inbox` rule waits 10 s).
            try await world.sendLiveMessage(to: "lamp", subject: "slow", correlationID: "across-reload", value: "7")
            let request = try #require(await lampInbox.first(timeout: .seconds(10)) { _ in true },
                                       "the request did not reach the device")
            let responseTopic = try #require(request.properties.responseTopic)
            let deviceLogLines = E2EWorld.brokerLog(of: E2E.deviceClientID, in: world.deviceBroker)
            let dittoLogLines = E2EWorld.brokerLog(of: E2E.dittoClientID, in: world.dittoBroker)

            // The new config: another event path for telemetry and a new uplink rule on a new topic.
            var changed = world.configFile
            changed.telemetryPath = "/features/{sensor}/properties/reading"
            changed.extraUplinkRules = [
                "  - name: state",
                "    topic: \"devices/{deviceId}/state\"",
                "    thing-id: \"{namespace}:{deviceId}\"",
                "    event: { action: modified, path: \"/attributes/state\" }",
                "    payload: { format: json }",
            ]
            try world.writeConfig(changed.yaml)
            #expect(try await BridgeExecutable.run(["check", "--config", world.configPath]).status == 0)
            world.bridge.signal(SIGHUP)
            let reloaded = await eventually(timeout: .seconds(10)) { world.bridge.log.contains("config reloaded") }
            #expect(reloaded, "no 'config reloaded' in the bridge's log:\n\(world.bridge.logTail())")

            // The next message uses the changed rule; the new rule's topic is bridged too.
            let after = try await world.event(of: "sensor-1", afterPublishing: 2, with: sensor)
            #expect(after?.path == "/features/temp/properties/reading")
            #expect(try world.events(of: "sensor-1").map(\.path) == ["/features/temp/properties/value", "/features/temp/properties/reading"])
            try await sensor.publish(to: "devices/sensor-1/state", payload: Array(#""on""#.utf8))
            let state = await eventually(timeout: .seconds(10)) {
                ((try? world.events(of: "sensor-1")) ?? []).contains { $0.path == "/attributes/state" && $0.value == .string("on") }
            }
            #expect(state, "the new rule's message did not reach Ditto")

            // The request sent before the reload is answered after it.
            try await lamp.publish(to: responseTopic, payload: Array(#"{"late": true}"#.utf8),
                                   properties: PublishProperties(contentType: "application/json",
                                                                 correlationData: request.properties.correlationData))
            let answered = await eventually(timeout: .seconds(10)) {
                ((try? world.answers(for: "lamp")) ?? []).contains { $0.correlationID == "across-reload" }
            }
            #expect(answered, "the request pending across the reload got no answer")
            let answer = try world.answers(for: "lamp").first { $0.correlationID == "across-reload" }
            #expect(answer?.status == 200)
            #expect(answer?.path == "/inbox/messages/slow")
            #expect(answer?.value == .object(["late": .bool(true)]))

            // Neither connection was touched: no new line about the bridge's client ids in either broker's log.
            #expect(E2EWorld.brokerLog(of: E2E.deviceClientID, in: world.deviceBroker) == deviceLogLines)
            #expect(E2EWorld.brokerLog(of: E2E.dittoClientID, in: world.dittoBroker) == dittoLogLines)
            #expect(E2EWorld.connections(of: E2E.deviceClientID, in: world.deviceBroker) == 1)
            #expect(E2EWorld.connections(of: E2E.dittoClientID, in: world.dittoBroker) == 1)
            let scrape = try await world.scrape()
            #expect(scrape.sum(Metric.connects, ["side": "device"]) == 1)
            #expect(scrape.sum(Metric.connects, ["side": "ditto"]) == 1)
            #expect(scrape.sum(Metric.reloads, ["result": "applied"]) == 1)
            #expect(scrape.sum(Metric.reloads) == 1, "\(scrape.matching(Metric.reloads))")
            #expect(scrape.sum(Metric.dropped) == 0, "\(scrape.matching(Metric.dropped))")
            #expect(scrape.sum(Metric.messages, ["direction": "reply"]) == 1)
            #expect(scrape.sum(Metric.messages, ["direction": "uplink", "rule": "state"]) == 1)
        }
    }

    @Test("SIGHUP with an invalid config: the log shows check's diagnostics, the bridge runs on with the old mapping")
    func reloadInvalidConfig() async throws {
        try await withWorld { world in
            let (sensor, _) = try await world.client(on: world.deviceBroker, id: "device-sensor-1")
            let before = try await world.event(of: "sensor-1", afterPublishing: 1, with: sensor)
            #expect(before?.path == "/features/temp/properties/value")

            // Two errors (a bare-number duration, a misspelt key), a warning (an inline password, on a connection
            // whose change would mean a reconnect), and a changed event path: none of it may be applied.
            var broken = world.configFile
            broken.telemetryPath = "/features/{sensor}/properties/reading"
            let text = broken.yaml
                .replacingOccurrences(of: "    keepalive: 5s\n    reconnect: { initial: 500ms, maximum: 1s }\n  ditto:",
                                      with: "    keepalive: 5\n    reconnect: { initial: 500ms, maximum: 1s }\n  ditto:")
                .replacingOccurrences(of: "    topic: \"devices/{deviceId}/telemetry/{sensor}\"",
                                      with: "    topik: \"devices/{deviceId}/telemetry/{sensor}\"")
                .replacingOccurrences(of: "    client-id: \(E2E.dittoClientID)\n",
                                      with: "    client-id: \(E2E.dittoClientID)\n    username: bridge\n    password: inline-secret\n")
            #expect(text != broken.yaml)
            try world.writeConfig(text)

            // What `check` prints for this file: diagnostic lines, then a summary line.
            let check = try await BridgeExecutable.run(["check", "--config", world.configPath])
            #expect(check.status == 1)
            let checkLines = check.output.split(separator: "\n").map(String.init)
            let diagnostics = Array(checkLines.dropLast())
            #expect(diagnostics.count == 3, "check printed:\n\(check.output)")
            #expect(diagnostics.contains { $0.contains("warning:") }, "check printed:\n\(check.output)")
            let json = try await BridgeExecutable.run(["check", "--config", world.configPath, "--format", "json"])
            let report = try JSONDecoder().decode(JSON.self, from: Data(json.output.utf8))
            guard case .array(let errors)? = report["errors"] else {
                Issue.record("check --format json: \(json.output)")
                return
            }

            world.bridge.signal(SIGHUP)
            let marker = "config reload refused; the running config stays:"
            let refused = await eventually(timeout: .seconds(10)) { world.bridge.log.contains(marker) }
            #expect(refused, "no '\(marker)' in the bridge's log:\n\(world.bridge.logTail())")
            // The lines after the marker are exactly check's diagnostics, in check's order (by position).
            let logLines = world.bridge.log.split(separator: "\n").map(String.init)
            let start = (logLines.firstIndex { $0.hasSuffix(marker) } ?? logLines.count - 1) + 1
            let logged = Array(logLines[start..<min(logLines.count, start + diagnostics.count)])
            #expect(logged == diagnostics, "logged:\n\(logged.joined(separator: "\n"))\ncheck:\n\(diagnostics.joined(separator: "\n"))")
            // Each error's file:line:column: key, as check's JSON names it, is in the log.
            #expect(errors.count == 2)
            for error in errors {
                let file = error["file"]?.string ?? "?"
                let line = error["line"]?.number.map { Int($0) } ?? -1
                let column = error["column"]?.number.map { Int($0) } ?? -1
                let key = error["key"]?.string ?? "?"
                #expect(file == world.configPath)
                #expect(line > 0)
                #expect(logged.contains { $0.hasPrefix("\(file):\(line):\(column): \(key): ") }, "\(file):\(line):\(column): \(key)")
            }

            // It runs on, connected, with the old mapping.
            try await Task.sleep(for: .milliseconds(500))
            #expect(world.bridge.isRunning)
            #expect(try await world.get("/health").status == 200)
            #expect(try await world.get("/ready").status == 200)
            let after = try await world.event(of: "sensor-1", afterPublishing: 2, with: sensor)
            #expect(after?.path == "/features/temp/properties/value")
            var scrape = try await world.scrape()
            #expect(scrape.sum(Metric.reloads, ["result": "rejected"]) == 1)
            #expect(scrape.sum(Metric.reloads) == 1, "\(scrape.matching(Metric.reloads))")

            // The original file again: valid and equal to what runs, so counted as unchanged.
            try world.writeConfig(world.configFile.yaml)
            world.bridge.signal(SIGHUP)
            let reloaded = await eventually(timeout: .seconds(10)) { world.bridge.log.contains("config reloaded") }
            #expect(reloaded, "no 'config reloaded' in the bridge's log:\n\(world.bridge.logTail())")
            scrape = try await world.scrape()
            #expect(scrape.sum(Metric.reloads, ["result": "unchanged"]) == 1)
            // Logged as what it was, as it is counted (issue 22 item 8).
            #expect(world.bridge.log.contains("config reloaded: unchanged"), "\(world.bridge.logTail())")
            #expect(scrape.sum(Metric.reloads, ["result": "rejected"]) == 1)
            #expect(scrape.sum(Metric.reloads, ["result": "applied"]) == 0)
            #expect(scrape.sum(Metric.connects, ["side": "device"]) == 1)
            #expect(scrape.sum(Metric.connects, ["side": "ditto"]) == 1)
        }
    }
}

extension E2EWorld {
    /// Publishes `{"value": value}` on `devices/<device>/telemetry/temp` and returns the live event with that
    /// value once it reached Ditto (nil after 10 s).
    func event(of device: String, afterPublishing value: Int, with client: MosquittoClient) async throws -> DittoMessage? {
        try await client.publish(to: "devices/\(device)/telemetry/temp", payload: Array(#"{"value": \#(value)}"#.utf8))
        var found: DittoMessage?
        _ = await eventually(timeout: .seconds(10)) {
            found = ((try? events(of: device)) ?? []).first { $0.value == .number(Double(value)) }
            return found != nil
        }
        return found
    }
}
