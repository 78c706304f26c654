import DittoWebSocketTestSupport
import Foundation
import Mosquitto
import MosquittoTestSupport
import Synchronization
import Testing
import WebSocketClient
import WebSocketCodec

/// What the channel reported, collected from the loop's thread.
private final class ChannelLog: Sendable {
    let texts = Shared<[String]>([])
    let pongs = Shared<[UInt64]>([])
    let end = Shared<WebSocketChannel.End?>(nil)
}

/// `WebSocketChannel` on a real event loop against the test server of Ditto's `/ws/2`.
@Suite("WebSocketChannel on the event loop", .serialized)
struct WebSocketChannelTests {
    /// Connects to `server`, starts a channel on `loop` and returns what it reports.
    private static func open(_ server: DittoWebSocketServer, loop: MQTTEventLoop, keepalive: Duration)
        async throws -> (LoopBound<WebSocketChannel>, ChannelLog)
    {
        let established = LoopBound(
            try await connect(WebSocketEndpoint(host: "127.0.0.1", port: server.port,
                                                authorization: .basic(username: "ditto", password: "ditto"))),
            loop: loop)
        let log = ChannelLog()
        let channel = await loop.submit {
            let established = established.value
            let channel = WebSocketChannel(stream: established.stream, leftover: established.leftover, loop: loop,
                                           keepalive: keepalive)
            channel.start(WebSocketChannel.Handlers(
                text: { text in log.texts.update { $0.append(text) } },
                pong: { sequence in log.pongs.update { $0.append(sequence) } },
                writable: {},
                ended: { end in log.end.update { $0 = end } }))
            return LoopBound(channel, loop: loop)
        }
        return (channel, log)
    }

    @Test("frames both ways in order; a numbered ping's pong is reported with its number")
    func framesAndPongs() async throws {
        let server = try DittoWebSocketServer()
        let loop = MQTTEventLoop(name: "channel test")
        let (channel, log) = try await Self.open(server, loop: loop, keepalive: .seconds(30))
        let session = try await server.session(0)
        let sequences = await loop.submit {
            let channel = channel.value
            for index in 0..<3 { channel.sendText(#"{"topic":"a/b/things/live/messages/m","n":\#(index)}"#) }
            return [channel.sendPing(), channel.sendPing()]
        }
        #expect(sequences == [1, 2])
        #expect(await eventually(timeout: .seconds(5)) { log.pongs.value == [1, 2] })
        #expect(session.protocolMessages.count == 3)
        #expect(session.protocolMessages.map { $0.contains(#""n":0"#) } == [true, false, false])
        for index in 0..<3 { session.send("from ditto \(index)") }
        #expect(await eventually(timeout: .seconds(5)) { log.texts.value == ["from ditto 0", "from ditto 1", "from ditto 2"] })
        await loop.submit { channel.value.close() }
        #expect(await eventually(timeout: .seconds(5)) { log.end.value != nil })
        #expect(log.end.value == .closed(code: .normalClosure, reason: "", byPeer: false))
        #expect(session.closeReceived == .normalClosure)
        await server.stop()
        await loop.shutdown()
    }

    @Test("a server that stops reading: the channel pings after keepalive and ends as unresponsive one keepalive later")
    func unresponsive() async throws {
        let server = try DittoWebSocketServer()
        let loop = MQTTEventLoop(name: "channel test")
        let start = ContinuousClock.now
        let (_, log) = try await Self.open(server, loop: loop, keepalive: .seconds(1))
        try await server.session(0).stall()
        #expect(await eventually(timeout: .seconds(5)) { log.end.value != nil })
        let elapsed = ContinuousClock.now - start
        #expect(log.end.value == .unresponsive(.seconds(1)))
        #expect(elapsed >= .seconds(2) && elapsed < .seconds(4), "\(elapsed)")
        await server.stop()
        await loop.shutdown()
    }

    @Test("a gateway restart (close 1011) ends the channel with the server's code, after the close handshake")
    func closedByServer() async throws {
        let server = try DittoWebSocketServer()
        let loop = MQTTEventLoop(name: "channel test")
        let (_, log) = try await Self.open(server, loop: loop, keepalive: .seconds(30))
        _ = try await server.session(0)
        server.restart()
        #expect(await eventually(timeout: .seconds(5)) { log.end.value != nil })
        #expect(log.end.value == .closed(code: .internalError, reason: "service restart", byPeer: true))
        await server.stop()
        await loop.shutdown()
    }
}
