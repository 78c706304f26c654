import Foundation
import MQTT
import Mosquitto
import MosquittoTestSupport
import Testing

/// Issue 22's items 1, 4 and 8 through the real binary between two private mosquittos: a number Ditto cannot read
/// never reaches it (logged with the topic, counted), the request headers the bridge owns do not cross from a
/// device, the warning for a dropped message names its rule and thing, the presence line names the device as
/// `name=value`, and the stop line counts what the spool still holds.
@Suite("Ditto's limits through the real binary")
struct DittoLimitsEndToEndTests {
    static let topic = "devices/sensor-1/telemetry/temp"

    @Test("a number beyond 64 bits is refused as invalid-payload; owned request headers from a device do not reach Ditto")
    func numbersAndOwnedHeaders() async throws {
        let world = try await E2EWorld()
        do {
            try await world.waitUntilReady()
            let (sensor, _) = try await world.client(on: world.deviceBroker, id: "device-sensor-1")

            try await sensor.publish(to: Self.topic, payload: Array(#"{"value": 12345678901234567890}"#.utf8))
            let owned = [("requested-acks", #"["edge-bridge:answered"]"#), ("response-required", "true"),
                         ("timeout", "7s"), ("version", "1")]
            try await sensor.publish(
                to: Self.topic, payload: Array(#"{"value": 9223372036854775807}"#.utf8),
                properties: PublishProperties(userProperties: (owned + [("x-custom", "kept")]).map {
                    UserProperty(name: $0.0, value: $0.1)
                }))

            let arrived = await eventually(timeout: .seconds(10)) { ((try? world.events(of: "sensor-1")) ?? []).count >= 1 }
            #expect(arrived, "no event reached the Ditto side:\n\(world.bridge.logTail())")
            try await Task.sleep(for: .milliseconds(300))
            let events = world.fromBridge.messages.filter { $0.topic == "ditto/in/\(E2E.thingID("sensor-1"))" }
            #expect(events.count == 1, "only the readable number goes to Ditto: \(events.map { String(decoding: $0.payload, as: UTF8.self) })")
            let text = events.first.map { String(decoding: $0.payload, as: UTF8.self) } ?? ""
            #expect(text.contains(#""value":9223372036854775807"#), "the largest long passes as written: \(text)")
            let first = try #require(events.first)
            let headers = try #require(try DittoMessage(first).json["headers"])
            #expect(headers["x-custom"]?.string == "kept", "a custom header crosses: \(text)")
            #expect(headers["requested-acks"] == nil && headers["timeout"] == nil, "\(text)")
            #expect(headers["response-required"] != .bool(true) && headers["response-required"]?.string != "true", "\(text)")
            #expect(headers["version"]?.string != "1" && headers["version"] != .number(1), "\(text)")

            let scrape = try await world.scrape()
            #expect(scrape.sum("ditto_mqtt_bridge_dropped_total", ["direction": "uplink", "reason": "invalid-payload"]) == 1)
            let line = world.bridge.log.split(separator: "\n").first { $0.contains("12345678901234567890") }
            #expect(line?.contains(Self.topic) == true, "the refusal names the number and the topic:\n\(world.bridge.logTail())")
            #expect(line?.contains("rule") == true && line?.contains("telemetry") == true, "and the rule: \(line ?? "")")
            #expect(line?.contains(E2E.thingID("sensor-1")) == true, "and the thing: \(line ?? "")")
        } catch {
            await world.shutdown(passed: false)
            throw error
        }
        await world.shutdown(passed: true)
    }

    @Test("check accepts the rule and map shows the same refusal the running bridge makes")
    func mapShowsTheRefusal() async throws {
        let world = try await E2EWorld()
        do {
            let map = try await BridgeExecutable.run([
                "map", "--config", world.configPath, "--topic", Self.topic, "--payload", #"{"value": -9223372036854775809}"#,
            ], includingStandardError: true)
            #expect(map.status == 1, "\(map.output)")
            #expect(map.output.contains("invalid-payload") && map.output.contains("-9223372036854775809"), "\(map.output)")
            let accepted = try await BridgeExecutable.run([
                "map", "--config", world.configPath, "--topic", Self.topic, "--payload", #"{"value": -9223372036854775808}"#,
            ], includingStandardError: true)
            #expect(accepted.status == 0, "\(accepted.output)")
        } catch {
            await world.shutdown(passed: false)
            throw error
        }
        await world.shutdown(passed: true)
    }

    @Test("the presence line names the device as name=value; messages left in the spool at SIGTERM are in the stop line")
    func presenceAndStopLines() async throws {
        let spool = FileManager.default.temporaryDirectory.appendingPathComponent("e2e-spool-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: spool) }
        let world = try await E2EWorld(extraTopLevel: [
            "spool: { directory: \"\(spool)\" }",
            "devices: { status-topic: \"devices/{deviceId}/status\", offline-payloads: [offline] }",
        ])
        do {
            try await world.waitUntilReady()
            let (sensor, _) = try await world.client(on: world.deviceBroker, id: "device-sensor-1")
            try await sensor.publish(to: "devices/sensor-1/status", payload: Array("online".utf8))
            let presence = await eventually(timeout: .seconds(10)) { world.bridge.log.contains("device presence") }
            let line = world.bridge.log.split(separator: "\n").first { $0.contains("device presence") } ?? ""
            #expect(presence && line.contains("deviceId=sensor-1"), "\(world.bridge.logTail())")
            #expect(!line.contains("[\""), "a Swift dictionary in the log: \(line)")

            // Ditto's broker goes away; what the device sends now waits in the spool, and is still there at the stop.
            world.dittoBroker.stop()
            for n in 0..<5 {
                try await sensor.publish(to: Self.topic, payload: Array(#"{"value": \#(n)}"#.utf8))
            }
            try await Task.sleep(for: .seconds(1))
            await world.bridge.stop()
            let stopped = world.bridge.log.split(separator: "\n").last { $0.contains("bridge stopped") } ?? ""
            #expect(stopped.contains("uplink.unsent-at-stop=5"), "the stop line: \(stopped)\n\(world.bridge.logTail())")
        } catch {
            await world.shutdown(passed: false)
            throw error
        }
        await world.shutdown(passed: true)
    }
}
