import BridgeConfig
import DittoProtocol
import DittoWebSocketTestSupport
import Foundation
import MQTT
import Mosquitto
import MosquittoTestSupport
import Testing

@testable import BridgeRuntime

/// The WebSocket binding in the service, against ``DittoWebSocketServer``: what only the runtime shows (the
/// spool's release on pongs, in-flight counts); the binary's behaviour is in EndToEndTests.
@Suite("The Ditto side over WebSocket in the runtime", .serialized)
struct WebSocketDittoSideTests {
    static func configuration(brokerPort: Int, server: DittoWebSocketServer) throws -> BridgeConfiguration {
        var configuration = try BridgeConfiguration.parse(
            yaml: (uplinkConfig + inboxDownlink).replacingOccurrences(of: "PORT", with: "\(brokerPort)"),
            fileName: "test.yaml", environment: [:])
        configuration.connections.ditto = .webSocket(DittoWebSocketConnection(
            url: server.url, tls: nil, host: "127.0.0.1", port: server.port, path: "/ws/2",
            authentication: .basic(username: "ditto", password: Secret("ditto"), source: .inline),
            reconnect: ReconnectPolicy(initial: .milliseconds(100), maximum: .milliseconds(500)),
            keepalive: .seconds(2)))
        return configuration
    }

    /// The service over WebSocket between a private broker and the test server, ready; stopped afterwards.
    static func withBridge(_ body: (BridgeService, DittoWebSocketServer, TestBroker) async throws -> Void) async throws {
        let broker = try await TestBroker.start()
        let server = try DittoWebSocketServer()
        let bridge = try BridgeService(configuration: try configuration(brokerPort: broker.port, server: server),
                                       logger: harnessLogger)
        let run = Task { try await bridge.run() }
        do {
            #expect(await eventually(timeout: .seconds(10)) { bridge.isReady })
            try await body(bridge, server, broker)
        } catch {
            bridge.stop()
            _ = try? await run.value
            await server.stop()
            broker.stop()
            throw error
        }
        bridge.stop()
        try await run.value
        await server.stop()
        broker.stop()
    }

    @Test("ready once START-SEND-MESSAGES is acknowledged; an event is released only by the pong that follows it; a live message is answered on the socket")
    func uplinkAndDownlink() async throws {
        try await Self.withBridge { bridge, server, broker in
            let session = try await server.session(0)
            #expect(session.controlMessages == ["START-SEND-MESSAGES"])

            let device = try MosquittoClient(configuration: broker.clientConfiguration(clientID: "device-lamp"), logger: harnessLogger)
            try await device.connect()
            try await device.subscribe([Subscription(filter: "devices/lamp/inbox/#", qos: .atLeastOnce)])
            try await device.publish(to: "devices/lamp/telemetry/temperature", payload: Array(#"{"value": 21.5}"#.utf8))
            #expect(await eventually(timeout: .seconds(10)) { session.protocolMessages.count == 1 })
            let event = try Envelope.decode(Array(try #require(session.protocolMessages.first).utf8))
            #expect(event.topic.description == "org.example/lamp/things/live/events/modified")
            #expect(await eventually(timeout: .seconds(5)) { await bridge.loop.submit { bridge.plane.value.uplinkWaiting } == 0 })
            #expect(session.pingsReceived >= 1)

            let answering = Task { () async throws -> MQTTMessage? in
                for await request in device.messages {
                    guard let responseTopic = request.properties.responseTopic else { continue }
                    var properties = PublishProperties(correlationData: request.properties.correlationData)
                    properties.contentType = "application/json"
                    try await device.publish(to: responseTopic, payload: Array(#"{"pong":true}"#.utf8), properties: properties)
                    return request
                }
                return nil
            }
            #expect(session.send(try liveMessage("org.example:lamp", subject: "ping", correlationID: "c-1")))
            _ = try #require(await answering.value)
            #expect(await eventually(timeout: .seconds(10)) { session.protocolMessages.count == 2 })
            let answer = try Envelope.decode(Array(try #require(session.protocolMessages.last).utf8))
            #expect(answer.headers.correlationID == "c-1")
            #expect(answer.status == 200)

            await device.disconnect()
        }
    }
}

extension WebSocketDittoSideTests {
    @Test("a Ditto that stops reading: nothing is released without its pong, the keepalive takes the session for dead, and the next session gets what was unconfirmed")
    func stalledDittoReleasesNothing() async throws {
        try await Self.withBridge { bridge, server, broker in
            let first = try await server.session(0)
            first.stall()
            try await Task.sleep(for: .milliseconds(100))

            let device = try MosquittoClient(configuration: broker.clientConfiguration(clientID: "device-lamp"), logger: harnessLogger)
            try await device.connect()
            for index in 0..<3 {
                try await device.publish(to: "devices/lamp/telemetry/t\(index)", payload: Array(#"{"value": 1}"#.utf8))
            }
            #expect(await eventually(timeout: .seconds(5)) { await bridge.loop.submit { bridge.plane.value.uplinkWaiting } == 3 })
            try await Task.sleep(for: .milliseconds(500))
            // Written to the socket, not read by Ditto: still waiting.
            #expect(await bridge.loop.submit { bridge.plane.value.uplinkWaiting } == 3)
            #expect(first.protocolMessages.isEmpty)

            // keepalive 2 s: the unanswered ping ends the session within 2.5 s; the next session carries the three.
            let second = try await server.session(1, timeout: .seconds(10))
            #expect(await eventually(timeout: .seconds(10)) { second.protocolMessages.count == 3 })
            #expect(await eventually(timeout: .seconds(5)) { await bridge.loop.submit { bridge.plane.value.uplinkWaiting } == 0 })

            await device.disconnect()
        }
    }
}
