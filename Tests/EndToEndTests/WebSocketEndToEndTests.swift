import DittoWebSocketTestSupport
import Foundation
import MQTT
import Mosquitto
import MosquittoTestSupport
import Testing
import WebSocketCodec

/// Issue 24 through the real binary: `transport: websocket` against ``DittoWebSocketServer`` playing Ditto's `/ws/2`.
@Suite("Ditto over its WebSocket binding, through the binary", .serialized)
struct WebSocketEndToEndTests {
    @Test("uplink: a device's telemetry becomes a live event on the session; /ready follows the START-SEND acks; labels declared")
    func uplinkEvent() async throws {
        try await withWebSocketWorld { world in
            let session = try await world.openSession()
            #expect(Set(session.controlMessages) == ["START-SEND-MESSAGES", "START-SEND-LIVE-COMMANDS"])
            #expect(session.declaredAcknowledgementLabels == ["e2e:delivered", "e2e:answered"])
            #expect(session.subject.contains("ditto"))
            let (device, _) = try await world.device("device-lamp")
            try await device.publish(to: "devices/lamp/telemetry/temperature", payload: Array(#"{"value":21.5}"#.utf8))
            let event = try await world.awaitFromBridge { $0["topic"]?.string == "\(E2E.namespace)/lamp/things/live/events/modified" }
            #expect(event["path"]?.string == "/features/temperature/properties/value")
            #expect(event["value"] == .number(21.5))
            // The gauges are sampled once a second.
            let up = await eventually(timeout: .seconds(3)) {
                (try? await world.scrape())?.sum("ditto_mqtt_bridge_connection_up", ["side": "ditto"]) == 1
            }
            #expect(up)
            #expect(try await world.scrape().sum("ditto_mqtt_bridge_messages_total", ["direction": "uplink"]) >= 1)
        }
    }

    @Test("downlink: a live message and a live command reach the device, whose answers and the acknowledgements Ditto asked for go back on the socket")
    func downlinkAnswered() async throws {
        try await withWebSocketWorld { world in
            let requests = try await world.answeringDevice("lamp")
            let session = try await world.openSession()
            #expect(session.send(WebSocketWorld.liveMessage(to: "lamp", subject: "blink", correlationID: "ws-msg-1")))
            let response = try await world.awaitFromBridge { $0["headers"]?["correlation-id"]?.string == "ws-msg-1" }
            #expect(response["status"] == .number(200))
            #expect(response["topic"]?.string == "\(E2E.namespace)/lamp/things/live/messages/blink")
            #expect(response["value"]?["answer"] == .string("go"))

            let command = """
                {"topic":"\(E2E.namespace)/lamp/things/live/commands/modify",\
                "headers":{"correlation-id":"ws-cmd-1","response-required":true},\
                "path":"/features/light/properties/level","value":70}
                """
            #expect(session.send(command))
            let commandResponse = try await world.awaitFromBridge { $0["headers"]?["correlation-id"]?.string == "ws-cmd-1" }
            #expect(commandResponse["topic"]?.string == "\(E2E.namespace)/lamp/things/live/commands/modify")
            #expect(requests.messages.map(\.topic).contains("devices/lamp/set/light/level"))

            // Acknowledgements Ditto asks for go back on the socket, under the labels declared at the upgrade.
            #expect(session.send("""
                {"topic":"\(E2E.namespace)/lamp/things/live/messages/blink",\
                "headers":{"correlation-id":"ws-ack-1","content-type":"application/json","response-required":true,\
                "requested-acks":["e2e:delivered","e2e:answered"]},"path":"/inbox/messages/blink","value":"twice"}
                """))
            for label in ["e2e:delivered", "e2e:answered"] {
                let ack = try await world.awaitFromBridge {
                    $0["topic"]?.string == "\(E2E.namespace)/lamp/things/live/acks/\(label)"
                        && $0["headers"]?["correlation-id"]?.string == "ws-ack-1"
                }
                #expect(ack["status"] == .number(200), "\(label)")
            }
        }
    }

    @Test("a device's request goes to Ditto as a live message; Ditto's response on the socket reaches the device's response topic")
    func deviceInitiatedRequest() async throws {
        try await withWebSocketWorld { world in
            let session = try await world.openSession()
            let (asker, answers) = try await world.device("device-asker", subscribe: ["devices/asker/answers"])
            try await asker.publish(to: "devices/asker/ask/config", payload: Array(#"{"want":"config"}"#.utf8),
                                    properties: PublishProperties(responseTopic: "devices/asker/answers",
                                                                  correlationData: Array("ask-1".utf8)))
            let request = try await world.awaitFromBridge { $0["topic"]?.string == "\(E2E.namespace)/asker/things/live/messages/config" }
            let id = try #require(request["headers"]?["correlation-id"]?.string)
            #expect(session.send("""
                {"topic":"\(E2E.namespace)/asker/things/live/messages/config",\
                "headers":{"correlation-id":"\(id)","content-type":"application/json"},\
                "path":"/outbox/messages/config","status":200,"value":{"interval":5}}
                """))
            let answer = try #require(await answers.first { _ in true })
            #expect(answer.properties.correlationData == Array("ask-1".utf8))
            #expect(String(decoding: answer.payload, as: UTF8.self).contains("\"interval\":5"))
        }
    }

    @Test("Ditto drops the connection, then restarts: the bridge reconnects, subscribes again and is ready again")
    func reconnectResubscribes() async throws {
        try await withWebSocketWorld { world in
            _ = try await world.openSession()
            world.ditto.dropAll()
            let second = try await world.ditto.session(1)
            try await world.waitUntilReady()
            #expect(Set(second.controlMessages) == ["START-SEND-MESSAGES", "START-SEND-LIVE-COMMANDS"])
            world.ditto.restart()
            let third = try await world.ditto.session(2)
            try await world.waitUntilReady()
            #expect(Set(third.controlMessages) == ["START-SEND-MESSAGES", "START-SEND-LIVE-COMMANDS"])
            let (device, _) = try await world.device("device-lamp")
            try await device.publish(to: "devices/lamp/telemetry/after", payload: Array(#"{"value":1}"#.utf8))
            _ = try await world.awaitFromBridge { $0["path"]?.string == "/features/after/properties/value" }
            #expect(world.bridge.log.contains("Ditto's WebSocket session ended"))
            let scrape = try await world.scrape()
            #expect(scrape.sum("ditto_mqtt_bridge_connects_total", ["side": "ditto"]) >= 3)
        }
    }

    @Test("refused credentials: 401 at the upgrade, logged as such, /ready stays 503, the bridge keeps trying")
    func refusedCredentials() async throws {
        var settings = WebSocketWorld.Settings()
        settings.serverOptions = DittoWebSocketServer.Options(password: "other")
        try await withWebSocketWorld(settings, waitUntilReady: false) { world in
            let refused = await eventually(timeout: .seconds(10)) { world.ditto.refusedUpgrades.count >= 2 }
            #expect(refused, "\(world.bridge.logTail())")
            #expect(world.ditto.refusedUpgrades.allSatisfy { $0 == 401 })
            #expect(world.bridge.isRunning)
            #expect(await world.isReady() == false)
            #expect(world.bridge.log.contains("401"), "\(world.bridge.logTail())")
        }
    }

    @Test("bearer token from a file: a new token in the file goes to Ditto as JWT-TOKEN and the session outlives the first token")
    func tokenRefresh() async throws {
        var settings = WebSocketWorld.Settings()
        settings.dittoKeys = ["token-file: {directory}/token"]
        try await withWebSocketWorld(settings, before: { directory, ditto in
            let token = ditto.issueToken(subject: "bridge", validFor: .seconds(4))
            try token.write(to: directory.appendingPathComponent("token"), atomically: true, encoding: .utf8)
            return [:]
        }) { world in
            let session = try await world.openSession()
            // The test server's tokens are shaped as JWTs (`check` refuses a token file that holds anything else).
            #expect(session.request.value(of: "Authorization")?.hasPrefix("Bearer eyJ") == true)
            let next = world.ditto.issueToken(subject: "bridge", validFor: .seconds(60))
            try next.write(to: world.directory.appendingPathComponent("token"), atomically: true, encoding: .utf8)
            let refreshed = await eventually(timeout: .seconds(5)) {
                session.controlMessages.contains("JWT-TOKEN?jwtToken=\(next)")
            }
            #expect(refreshed, "\(session.controlMessages)")
            try await Task.sleep(for: .seconds(4))
            #expect(session.isOpen, "the session closed at the first token's expiry")
            #expect(world.ditto.sessions.count == 1)
        }
    }

    @Test("through an HTTP CONNECT proxy with its credentials")
    func throughProxy() async throws {
        let proxy = try HTTPConnectProxy(credentials: .basic(username: "gw", password: "secret"))
        var settings = WebSocketWorld.Settings()
        settings.dittoKeys += [
            "proxy: { url: \"http://127.0.0.1:\(proxy.port)\", username: gw, password-file: {directory}/proxy-password }",
        ]
        do {
            try await withWebSocketWorld(settings, before: { directory, _ in
                try "secret\n".write(to: directory.appendingPathComponent("proxy-password"), atomically: true, encoding: .utf8)
                return [:]
            }) { world in
                _ = try await world.openSession()
                #expect(proxy.tunnels.count == 1)
                #expect(proxy.refused.isEmpty)
            }
        } catch {
            await proxy.stop()
            throw error
        }
        await proxy.stop()
    }

    @Test("Ditto goes away mid-stream: with the spool, every message reaches Ditto at least once, in order")
    func dittoGoesAwayMidStream() async throws {
        var settings = WebSocketWorld.Settings()
        settings.extraTopLevel = ["spool:", "  directory: {directory}/spool"]
        try await withWebSocketWorld(settings) { world in
            let (device, _) = try await world.device("device-burst")
            let total = 2_000
            func publish(_ range: Range<Int>) async throws {
                for index in range {
                    try await device.publish(to: "devices/burst/telemetry/n", payload: Array(#"{"value":\#(index)}"#.utf8),
                                             qos: .atLeastOnce)
                }
            }
            // The connection drops (no close frame) and then the gateway restarts (close 1011), each while
            // messages flow.
            try await publish(0..<500)
            world.ditto.dropAll()
            try await publish(500..<1_000)
            _ = try await world.ditto.session(1)
            try await publish(1_000..<1_200)
            world.ditto.restart()
            try await publish(1_200..<total)
            var seen = Set<Int>()
            let complete = await eventually(timeout: .seconds(30), every: .milliseconds(100)) {
                seen = Set(((try? world.fromBridge()) ?? []).compactMap { $0["value"]?.number.map { Int($0) } })
                return seen.count == total
            }
            #expect(complete, "\(total - seen.count) of \(total) never reached Ditto:\n\(world.bridge.logTail())")
            #expect(world.ditto.sessions.count >= 3)
            // Order: resends come before new messages, so the first arrival of each message is in publishing order.
            var first: [Int] = []
            var arrived = Set<Int>()
            for value in try world.fromBridge().compactMap({ $0["value"]?.number.map { Int($0) } }) where arrived.insert(value).inserted {
                first.append(value)
            }
            #expect(first == first.sorted(), "first arrivals out of order")
        }
    }

    @Test("another subscriber holds a declared label: Ditto's 409 is logged, the bridge backs off and connects once it is free")
    func labelConflict() async throws {
        try await withWebSocketWorld { world in
            let first = try await world.openSession()
            first.rejectDeclaredAcknowledgementLabels()
            let logged = await eventually(timeout: .seconds(5)) {
                world.bridge.log.contains("Ditto refused the declared acknowledgement labels")
            }
            #expect(logged, "\(world.bridge.logTail())")
            _ = try await world.ditto.session(1)
            try await world.waitUntilReady()
        }
    }

    @Test("wss:// through a TLS front (nginx) that requires a client certificate: the bridge verifies the server against the CA and presents its own")
    func secureWebSocket() async throws {
        let certificates = try await TestCertificates.make()
        let front = Shared<TLSFrontProxy?>(nil)
        var settings = WebSocketWorld.Settings()
        settings.url = "wss://localhost:{front}/ws/2"
        settings.dittoKeys += [
            "tls: { ca-file: \(certificates.caFile), cert-file: \(certificates.clientCertFile), key-file: \(certificates.clientKeyFile) }",
        ]
        do {
            try await withWebSocketWorld(settings, before: { _, ditto in
                let started = try await TLSFrontProxy.start(
                    upstreamPort: ditto.port, certificates: certificates,
                    options: TLSFrontProxy.Options(requireClientCertificate: true))
                front.update { $0 = started }
                return ["front": "\(started.port)"]
            }) { world in
                let session = try await world.openSession()
                let (device, _) = try await world.device("device-lamp")
                try await device.publish(to: "devices/lamp/telemetry/temperature", payload: Array(#"{"value":3}"#.utf8))
                _ = try await world.awaitFromBridge { $0["value"] == .number(3) }
                #expect(session.isOpen)
            }
        } catch {
            await front.value?.stop()
            throw error
        }
        await front.value?.stop()
    }

    @Test("wss:// with a server certificate from another CA: refused at TLS, logged with the verify error, never ready")
    func secureWebSocketWrongCA() async throws {
        let certificates = try await TestCertificates.make()
        let front = Shared<TLSFrontProxy?>(nil)
        var settings = WebSocketWorld.Settings()
        settings.url = "wss://localhost:{front}/ws/2"
        settings.dittoKeys += ["tls: { ca-file: \(certificates.otherCAFile) }"]
        do {
            try await withWebSocketWorld(settings, waitUntilReady: false, before: { _, ditto in
                let started = try await TLSFrontProxy.start(upstreamPort: ditto.port, certificates: certificates)
                front.update { $0 = started }
                return ["front": "\(started.port)"]
            }) { world in
                let logged = await eventually(timeout: .seconds(10)) { world.bridge.log.contains("certificate verify failed") }
                #expect(logged, "\(world.bridge.logTail())")
                #expect(world.ditto.sessions.isEmpty)
                #expect(await world.isReady() == false)
            }
        } catch {
            await front.value?.stop()
            throw error
        }
        await front.value?.stop()
    }

    @Test("Ditto loses a START-SEND's :ACK (its buffer drops frames): the bridge asks again and is ready once acknowledged")
    func lostAcknowledgement() async throws {
        try await withWebSocketWorld(waitUntilReady: false, before: { _, ditto in
            ditto.dropAcknowledgements(1)
            return [:]
        }) { world in
            let session = try await world.openSession()
            try await Task.sleep(for: .seconds(1))
            #expect(await world.isReady() == false, "ready without every :ACK")
            try await world.waitUntilReady(timeout: .seconds(10))
            #expect(session.controlMessages.count == 3, "\(session.controlMessages)")
            #expect(try await world.scrape().sum("ditto_mqtt_bridge_websocket_events_total", ["event": "subscribe-retried"]) >= 1)
        }
    }

    @Test("rate-limit: 50 messages a second reach Ditto no faster, and none is lost")
    func rateLimit() async throws {
        var settings = WebSocketWorld.Settings()
        settings.dittoKeys.append("rate-limit: 50")
        try await withWebSocketWorld(settings) { world in
            let (device, _) = try await world.device("device-fast")
            let start = ContinuousClock.now
            for index in 0..<100 {
                try await device.publish(to: "devices/fast/telemetry/n", payload: Array(#"{"value":\#(index)}"#.utf8), qos: .atLeastOnce)
            }
            let all = await eventually(timeout: .seconds(10), every: .milliseconds(20)) {
                ((try? world.fromBridge()) ?? []).count == 100
            }
            let elapsed = ContinuousClock.now - start
            #expect(all, "\(world.bridge.logTail())")
            // 100 messages at 50/s with a burst of 5: at least 1.9 s.
            #expect(elapsed >= .milliseconds(1_800), "\(elapsed)")
        }
    }

    @Test("SIGHUP: new namespaces go to the open session as START-SEND again; a new URL ends it and connects anew")
    func reload() async throws {
        let second = try DittoWebSocketServer()
        do {
            try await withWebSocketWorld { world in
                let session = try await world.openSession()
                var yaml = try String(contentsOfFile: world.configPath, encoding: .utf8)
                yaml = yaml.replacingOccurrences(of: "    transport: websocket\n", with: "    transport: websocket\n    namespaces: [org.example, org.other]\n")
                try yaml.write(toFile: world.configPath, atomically: true, encoding: .utf8)
                world.bridge.signal(SIGHUP)
                let resubscribed = await eventually(timeout: .seconds(5)) {
                    session.controlMessages.contains("START-SEND-MESSAGES?namespaces=org.example%2Corg.other")
                }
                #expect(resubscribed, "\(session.controlMessages)\n\(world.bridge.logTail())")
                #expect(session.subscriptions[.messages]?.namespaces == ["org.example", "org.other"])
                #expect(session.isOpen)

                yaml = yaml.replacingOccurrences(of: world.ditto.url, with: second.url)
                try yaml.write(toFile: world.configPath, atomically: true, encoding: .utf8)
                world.bridge.signal(SIGHUP)
                let moved = try await second.session(0, timeout: .seconds(10))
                #expect(await eventually(timeout: .seconds(5)) { !session.isOpen })
                try await world.waitUntilReady()
                #expect(Set(moved.controlMessages) == [
                    "START-SEND-MESSAGES?namespaces=org.example%2Corg.other",
                    "START-SEND-LIVE-COMMANDS?namespaces=org.example%2Corg.other",
                ])
            }
        } catch {
            await second.stop()
            throw error
        }
        await second.stop()
    }

    @Test("presence: a device's status becomes its ConnectionStatus feature on the session")
    func presence() async throws {
        var settings = WebSocketWorld.Settings()
        settings.extraTopLevel = [
            "devices:",
            "  status-topic: \"devices/{deviceId}/status\"",
            "  offline-payloads: [offline]",
            "  connection-status: { feature: ConnectionStatus, thing-id: \"{namespace}:{deviceId}\" }",
        ]
        try await withWebSocketWorld(settings) { world in
            let (device, _) = try await world.device("device-pump")
            try await device.publish(to: "devices/pump/status", payload: Array("online".utf8), retain: true)
            let status = try await world.awaitFromBridge { $0["path"]?.string == "/features/ConnectionStatus" }
            #expect(status["topic"]?.string == "\(E2E.namespace)/pump/things/twin/commands/modify")
            #expect(status["value"]?["properties"]?["status"]?["readyUntil"] == .string("9999-12-31T23:59:59Z"))
        }
    }

    @Test("a Ditto that stops reading: keepalive takes the session for dead, and the next session gets what no pong confirmed")
    func stalledDitto() async throws {
        var settings = WebSocketWorld.Settings()
        settings.dittoKeys.append("keepalive: 2s")
        try await withWebSocketWorld(settings) { world in
            let first = try await world.openSession()
            first.stall()
            let (device, _) = try await world.device("device-stalled")
            for index in 0..<3 {
                try await device.publish(to: "devices/stalled/telemetry/n", payload: Array(#"{"value":\#(index)}"#.utf8),
                                         qos: .atLeastOnce)
            }
            let second = try await world.ditto.session(1, timeout: .seconds(10))
            #expect(await eventually(timeout: .seconds(10)) { second.protocolMessages.count == 3 }, "\(world.bridge.logTail())")
            #expect(first.protocolMessages.isEmpty)
            #expect(world.bridge.log.contains("no pong within 2.0 seconds"))
            #expect(try await world.scrape().sum("ditto_mqtt_bridge_websocket_events_total", ["event": "unresponsive"]) == 1)
        }
    }
}
