import DittoWebSocketTestSupport
import MosquittoTestSupport
import Synchronization
import Testing
import WebSocketCodec

@Suite("The benchmark's /ws/2 sink, checked with the codec's client over real sockets")
struct DittoWebSocketSinkTests {
    final class Received: Sendable {
        let texts = Mutex<[String]>([])
        var all: [String] { texts.withLock { $0 } }
    }

    /// A sink whose receiver keeps the text of the frames it is handed.
    static func sink() throws -> (DittoWebSocketSink, Received) {
        let received = Received()
        let sink = try DittoWebSocketSink { bytes in
            let text = String(decoding: bytes, as: UTF8.self)
            received.texts.withLock { $0.append(text) }
        }
        return (sink, received)
    }

    static func connect(_ sink: DittoWebSocketSink, password: String = "ditto") async throws -> WebSocketTestClient {
        try await WebSocketTestClient.connect(port: sink.port, request: WebSocketUpgradeRequest(
            host: "127.0.0.1:\(sink.port)", path: "/ws/2", query: [QueryParameter("declared-acks", "bench:delivered")],
            authorization: .basic(username: "ditto", password: password)))
    }

    @Test("START-SEND-* and STOP-SEND-* acknowledged, pings answered, Ditto Protocol frames to the receiver, frames out")
    func session() async throws {
        let (sink, received) = try Self.sink()
        let client = try await Self.connect(sink)
        client.send("START-SEND-MESSAGES?namespaces=org.bench")
        #expect(try await client.nextText() == "START-SEND-MESSAGES:ACK")
        client.send("START-SEND-LIVE-COMMANDS")
        #expect(try await client.nextText() == "START-SEND-LIVE-COMMANDS:ACK")
        client.send("STOP-SEND-LIVE-COMMANDS")
        #expect(try await client.nextText() == "STOP-SEND-LIVE-COMMANDS:ACK")

        let event = #"{"topic":"org.bench/dev-00/things/live/events/modified","headers":{},"path":"/","value":{"ts":1}}"#
        client.send(event)
        client.send(event + " ")
        client.ping([7, 7])
        #expect(try await client.nextEvent() == .pong([7, 7]))
        #expect(received.all == [event, event + " "], "the pong came after both frames were read")
        #expect(sink.openSessions == 1)

        let message = #"{"topic":"org.bench/dev-00/things/live/messages/ping","headers":{"correlation-id":"m-1"},"path":"/inbox/messages/ping","value":1}"#
        #expect(sink.send(Array(message.utf8)))
        #expect(try await client.nextText() == message)

        client.close()
        #expect(try await client.nextEvent() == .closed(code: .normalClosure, reason: ""))
        #expect(await eventually(timeout: .seconds(5)) { sink.openSessions == 0 })
        #expect(!sink.send(Array(message.utf8)), "no session open")
        await sink.stop()
    }

    @Test("a wrong password is refused at the upgrade with 401")
    func refusal() async throws {
        let (sink, received) = try Self.sink()
        await #expect(throws: WebSocketHandshakeError.refused(status: 401, reason: "Unauthorized")) {
            try await Self.connect(sink, password: "wrong")
        }
        #expect(sink.refusedUpgrades == 1)
        #expect(sink.openSessions == 0)
        #expect(received.all.isEmpty)
        await sink.stop()
    }
}
