import Foundation
import Mosquitto
import MosquittoTestSupport
import Testing

extension EndToEndTests {
    @Test("/ready is 503 while a broker is killed, names that side, and 200 again after it comes back; /health stays 200")
    func readyFollowsTheBrokers() async throws {
        try await withWorld { world in
            let (sensor, _) = try await world.client(on: world.deviceBroker, id: "device-sensor-1")
            let lampInbox = try await world.answeringDevice("lamp")
            #expect(try await world.get("/ready").status == 200)
            #expect(try await world.get("/health").status == 200)

            for (side, broker) in [("ditto", world.dittoBroker), ("device", world.deviceBroker)] {
                let other = side == "ditto" ? "device" : "ditto"
                broker.kill9()
                var notReady: HTTPResponse?
                let dropped = await eventually(timeout: .seconds(5), every: .milliseconds(50)) {
                    notReady = try? await world.get("/ready")
                    return notReady?.status == 503
                }
                #expect(dropped, "/ready answered \(notReady?.status ?? 0) within 5 s of killing the \(side) broker")
                #expect(notReady?.body.contains("\(side) broker") == true, "/ready's body: \(notReady?.body ?? "")")
                #expect(notReady?.body.contains("\(other) broker") == false, "/ready's body: \(notReady?.body ?? "")")
                #expect(try await world.get("/health").status == 200, "/health while the \(side) broker is down")
                // The gauge follows within its sampling period.
                let gaugeDown = await eventually(timeout: .seconds(5), every: .milliseconds(200)) {
                    guard let scrape = try? await world.scrape() else { return false }
                    return scrape.sum(Metric.connectionUp, ["side": side]) == 0 && scrape.sum(Metric.connectionUp, ["side": other]) == 1
                }
                #expect(gaugeDown, "connection_up{side=\"\(side)\"} 0 and {side=\"\(other)\"} 1 while the \(side) broker is down")
                // Still down a moment later: the bridge does not claim readiness while the broker is away.
                try await Task.sleep(for: .milliseconds(1_500))
                #expect(try await world.get("/ready").status == 503, "/ready while the \(side) broker is still down")

                let restarted = ContinuousClock.now
                try await broker.restart()
                // Reconnect backoff: 500 ms doubling to 1 s, so the next attempt comes within about a second.
                let back = await eventually(timeout: .seconds(10), every: .milliseconds(50)) {
                    (try? await world.get("/ready"))?.status == 200
                }
                #expect(back, "/ready not 200 within 10 s of restarting the \(side) broker:\n\(world.bridge.logTail())")
                print("e2e: /ready 200 again \(ContinuousClock.now - restarted) after the \(side) broker restarted")
                #expect(try await world.get("/health").status == 200)
            }

            // Each side connected twice (the first time and once after its broker came back), and is up (the
            // gauges are sampled once a second).
            _ = await eventually(timeout: .seconds(5), every: .milliseconds(200)) {
                guard let scrape = try? await world.scrape() else { return false }
                return ["device", "ditto"].allSatisfy { side in
                    scrape.sum(Metric.connectionUp, ["side": side]) == 1 && scrape.sum(Metric.connects, ["side": side]) >= 2
                }
            }
            let scrape = try await world.scrape()
            for side in ["device", "ditto"] {
                #expect(scrape.sum(Metric.connects, ["side": side]) == 2, "connects_total{side=\"\(side)\"}: the first and one reconnect")
                #expect(scrape.sum(Metric.connectionUp, ["side": side]) == 1, "connection_up{side=\"\(side)\"}")
            }

            // Traffic flows again both ways. Both brokers lost every session (no persistence), so this also shows
            // that the bridge subscribed again. The test's own clients reconnect too, hence a few tries.
            var sent = 0
            let uplink = await eventually(timeout: .seconds(15), every: .milliseconds(500)) {
                sent += 1
                _ = try? await sensor.publish(to: "devices/sensor-1/telemetry/temp", payload: Array(#"{"value": \#(1000 + sent)}"#.utf8))
                return ((try? world.events(of: "sensor-1").count) ?? 0) > 0
            }
            #expect(uplink, "no device message reached Ditto after both brokers came back (\(sent) sent)")
            let event = try world.events(of: "sensor-1").first
            #expect(event?.path == "/features/temp/properties/value")
            #expect(event?.value?.number.map { $0 > 1000 } == true)

            var asked = 0
            let downlink = await eventually(timeout: .seconds(15), every: .milliseconds(500)) {
                asked += 1
                try? await world.sendLiveMessage(to: "lamp", subject: "ask", correlationID: "after-\(asked)", value: "\(asked)")
                return ((try? world.answers(for: "lamp")) ?? []).contains { $0.status == 200 }
            }
            #expect(downlink, "no Ditto request was answered after both brokers came back (\(asked) sent)")
            #expect(lampInbox.count > 0)
        }
    }
}
