import Foundation
import Mosquitto
import MosquittoTestSupport
import Testing

/// Issue 11's acceptance through the real `ditto-mqtt-bridge` binary: two private mosquittos, the bridge as a
/// child process with `operations.listen` on a free loopback port, MQTT clients in the devices' and Ditto's
/// places, `/metrics`, `/ready`, `/health` read over plain HTTP, SIGHUP sent with kill(2).
/// Serialized: each test keeps two brokers and the bridge busy, and the machine may have two cores.
@Suite("End to end through the ditto-mqtt-bridge binary", .serialized)
struct EndToEndTests {}

enum Metric {
    static let messages = "ditto_mqtt_bridge_messages_total"
    static let dropped = "ditto_mqtt_bridge_dropped_total"
    static let requestsPending = "ditto_mqtt_bridge_requests_pending"
    static let connectionUp = "ditto_mqtt_bridge_connection_up"
    static let connects = "ditto_mqtt_bridge_connects_total"
    static let reloads = "ditto_mqtt_bridge_config_reloads_total"
}

extension EndToEndTests {
    @Test("While traffic flows, /metrics counts exactly what was sent, dropped and answered")
    func countersEqualWhatHappened() async throws {
        try await withWorld { world in
            let (sensor, _) = try await world.client(on: world.deviceBroker, id: "device-sensor-1")
            let lampInbox = try await world.answeringDevice("lamp")
            // Receives its requests and never answers.
            let (_, muteInbox) = try await world.client(on: world.deviceBroker, id: "device-mute",
                                                        subscribe: ["devices/mute/inbox/#"])
            // N telemetry messages, M undecodable payloads, K answered requests, L unanswered ones.
            let (n, m, k, l) = (60, 6, 12, 4)

            // Scrapes /metrics every 100 ms while the traffic runs.
            let scraping = Shared(true)
            let scraper = Task { () -> [MetricsScrape] in
                var scrapes: [MetricsScrape] = []
                while scraping.value {
                    if let scrape = try? await world.scrape() { scrapes.append(scrape) }
                    try? await Task.sleep(for: .milliseconds(100))
                }
                return scrapes
            }
            // Device side: N valid messages {"value": i}, and after every 10th an undecodable one (M in all).
            let uplink = Task {
                var invalid = 0
                for i in 0..<n {
                    try await sensor.publish(to: "devices/sensor-1/telemetry/temp", payload: Array(#"{"value": \#(i)}"#.utf8))
                    if i % 10 == 9, invalid < m {
                        try await sensor.publish(to: "devices/sensor-1/telemetry/temp", payload: Array("not json {\(i)".utf8))
                        invalid += 1
                    }
                    try await Task.sleep(for: .milliseconds(25))
                }
            }
            // Ditto side: K requests the lamp answers, L to the mute device (the `no-answer` rule waits 1 s).
            let downlink = Task {
                for i in 0..<(k + l) {
                    if i % 4 == 3, i / 4 < l {
                        try await world.sendLiveMessage(to: "mute", subject: "wait-\(i)", correlationID: "lost-\(i / 4)")
                    } else {
                        try await world.sendLiveMessage(to: "lamp", subject: "ask", correlationID: "k-\(i)",
                                                        value: "\(i)")
                    }
                    try await Task.sleep(for: .milliseconds(90))
                }
            }
            try await uplink.value
            try await downlink.value

            // Ditto receives N events, K answers and L timeout errors.
            let arrived = await eventually(timeout: .seconds(20), every: .milliseconds(100)) {
                ((try? world.events(of: "sensor-1").count) ?? 0) >= n && ((try? world.answers(for: "lamp").count) ?? 0) >= k
                    && ((try? world.answers(for: "mute").count) ?? 0) >= l
            }
            #expect(arrived, """
                Ditto received \((try? world.events(of: "sensor-1"))?.count ?? -1)/\(n) events, \
                \((try? world.answers(for: "lamp"))?.count ?? -1)/\(k) answers, \
                \((try? world.answers(for: "mute"))?.count ?? -1)/\(l) timeout errors
                """)
            // Every request is settled: the pending gauge (sampled once a second) is back to 0.
            let settled = await eventually(timeout: .seconds(10), every: .milliseconds(200)) {
                guard let scrape = try? await world.scrape() else { return false }
                return scrape.matching(Metric.requestsPending, ["direction": "downlink"]).first?.value == 0
                    && scrape.sum(Metric.messages, ["direction": "uplink"]) >= Double(n)
            }
            #expect(settled, "requests_pending{direction=\"downlink\"} did not return to 0")
            scraping.update { $0 = false }
            let midTraffic = await scraper.value
            // Nothing more may be counted a moment later: the last scrape is taken after a gauge period.
            try await Task.sleep(for: .milliseconds(1_200))
            let final = try await world.scrape()

            // Ditto's side: exactly N events, in order, with the values the device sent.
            let events = try world.events(of: "sensor-1")
            #expect(events.count == n)
            #expect(events.map { $0.value?.number.map { Int($0) } ?? -1 } == Array(0..<n))
            #expect(events.allSatisfy { $0.path == "/features/temp/properties/value" })

            // The device's answers: each arrived at the request's response topic under its correlation-id.
            let answers = try world.answers(for: "lamp")
            #expect(answers.count == k)
            let ok = answers.filter { $0.status == 200 }
            let answeredIDs = Set((0..<(k + l)).filter { !($0 % 4 == 3 && $0 / 4 < l) }.map { "k-\($0)" })
            #expect(ok.count == k)
            #expect(Set(ok.compactMap(\.correlationID)) == answeredIDs)
            for answer in ok {
                let i = answer.correlationID.flatMap { Int($0.dropFirst(2)) } ?? -1
                #expect(answer.topic == "\(E2E.namespace)/lamp/things/live/messages/ask")
                #expect(answer.path == "/inbox/messages/ask")
                #expect(answer.value == .object(["answer": .number(Double(i))]), "the lamp's answer to k-\(i)")
            }
            #expect(lampInbox.count == k)
            #expect(muteInbox.count == l)
            // The unanswered ones: a Ditto timeout error each (408, command.timeout), same correlation-id.
            let timeouts = try world.answers(for: "mute")
            #expect(timeouts.count == l)
            #expect(Set(timeouts.compactMap(\.correlationID)) == Set((0..<l).map { "lost-\($0)" }))
            for error in timeouts {
                #expect(error.status == 408)
                #expect(error.topic == "\(E2E.namespace)/mute/things/live/errors")
                #expect(error.value?["error"]?.string == "command.timeout")
            }

            // The counters equal what happened.
            #expect(final.sum(Metric.messages, ["direction": "uplink"]) == Double(n))
            #expect(Set(final.matching(Metric.messages, ["direction": "uplink"]).compactMap { $0.labels["rule"] }) == ["telemetry"])
            #expect(final.sum(Metric.dropped, ["direction": "uplink", "reason": "invalid-payload"]) == Double(m))
            // Every request went to the device broker, answered or not.
            #expect(final.sum(Metric.messages, ["direction": "downlink"]) == Double(k + l))
            #expect(final.sum(Metric.messages, ["direction": "downlink", "rule": "inbox"]) == Double(k))
            #expect(final.sum(Metric.messages, ["direction": "downlink", "rule": "no-answer"]) == Double(l))
            #expect(final.sum(Metric.messages, ["direction": "reply"]) == Double(k))
            // A reply carries the rule its request came with (docs/OPERATIONS.md, the metrics table).
            #expect(final.sum(Metric.messages, ["direction": "reply", "rule": "inbox"]) == Double(k))
            #expect(final.sum(Metric.dropped, ["direction": "downlink", "reason": "timeout"]) == Double(l))
            // Nothing else was dropped.
            #expect(final.sum(Metric.dropped) == Double(m + l),
                    "dropped: \(final.matching(Metric.dropped).map { MetricsScrape.key($0) + " \($0.value)" })")
            for side in ["device", "ditto"] {
                #expect(final.sum(Metric.connectionUp, ["side": side]) == 1, "connection_up{side=\"\(side)\"}")
                #expect(final.sum(Metric.connects, ["side": side]) == 1, "connects_total{side=\"\(side)\"}")
            }
            #expect(final.sum(Metric.requestsPending) == 0)
            #expect(final.types[Metric.messages] == "counter")
            #expect(final.types[Metric.connectionUp] == "gauge")

            // Scraped while the traffic ran: counters never go down, never above the final value.
            #expect(midTraffic.count >= 3, "only \(midTraffic.count) scrapes during the traffic")
            let finalCounters = final.counters
            var previous: [String: Double] = [:]
            for scrape in midTraffic {
                for (series, value) in scrape.counters {
                    #expect(value >= previous[series, default: 0], "\(series) went down from \(previous[series, default: 0]) to \(value)")
                    #expect(value <= finalCounters[series, default: 0], "\(series) was \(value) mid-traffic, \(finalCounters[series, default: 0]) at the end")
                    previous[series] = value
                }
            }
            // At least one scrape saw the traffic in progress (neither nothing nor everything yet).
            #expect(midTraffic.contains { scrape in
                let uplink = scrape.sum(Metric.messages, ["direction": "uplink"])
                return uplink > 0 && uplink < Double(n)
            }, "no scrape during the traffic saw it in progress")
        }
    }
}
