import Mosquitto
import MosquittoTestSupport
import Testing

@Suite("Loop-bound values and the client's loop view: reached on the loop's thread only")
struct LoopBoundTests {
    final class Tally {
        var count = 0
    }

    @Test("A loop-bound value made off the loop is used on it, through the same handle each time")
    func usedOnTheLoop() async {
        let loop = MQTTEventLoop(name: "bound test")
        let bound = LoopBound(Tally(), loop: loop)
        for _ in 0..<3 { await loop.submit { bound.value.count += 1 } }
        #expect(await loop.submit { bound.value.count } == 3)
        #expect(!loop.inEventLoop)
        await loop.shutdown()
    }

    @Test("Reaching a loop-bound value off its loop traps (a precondition, not an assert)")
    func offTheLoopTraps() async {
        await #expect(processExitsWith: .failure) {
            let loop = MQTTEventLoop(name: "bound trap")
            final class Value {}
            _ = LoopBound(Value(), loop: loop).value
        }
    }

    @Test("A client's loop view is handed out on its loop; asking for it elsewhere traps")
    func loopView() async throws {
        let loop = MQTTEventLoop(name: "view test")
        let client = try MosquittoClient(configuration: MQTTConfiguration(host: "127.0.0.1", port: 1, clientID: "view"),
                                         logger: testLogger, eventLoop: loop)
        #expect(await loop.submit { !client.onLoop.isConnected && client.onLoop.inflightCount == 0 })
        await client.disconnect()
        await loop.shutdown()
        await #expect(processExitsWith: .failure) {
            let loop = MQTTEventLoop(name: "view trap")
            let client = try MosquittoClient(configuration: MQTTConfiguration(host: "127.0.0.1", port: 1),
                                             logger: testLogger, eventLoop: loop)
            _ = client.onLoop.canPublishNow
        }
    }
}
