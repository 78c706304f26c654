import DittoWebSocketTestSupport
import Foundation
import MosquittoTestSupport
import Testing
import WebSocketCodec

/// Debian's python3-websockets (scripts/setup.sh installs it for the tests) under Debian's /usr/bin/python3.
let python = "/usr/bin/python3"

/// A Python process whose standard output is read line by line.
final class PythonProcess: Sendable {
    private let process: Process
    private let output: FileHandle
    private let buffer = Shared<[UInt8]>([])

    init(_ script: String, _ arguments: [String] = []) throws {
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw TestFailure("\(python) is missing (apt-get install python3 python3-websockets)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", script] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        self.process = process
        output = pipe.fileHandleForReading
    }

    /// The next line of output within 10 s, nil at its end.
    func line() async throws -> String? {
        try await onOwnThread { [self] in
            let deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline {
                if let newline = buffer.value.firstIndex(of: 10) {
                    return buffer.update { bytes in
                        defer { bytes.removeFirst(newline + 1) }
                        return String(decoding: bytes[..<newline], as: UTF8.self)
                    }
                }
                let data = output.availableData
                if data.isEmpty { return nil }
                buffer.update { $0 += data }
            }
            return nil
        }
    }

    func stop() async throws {
        // SIGKILL: with terminate() (SIGTERM) the run waited out the server script's 30 s sleep.
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        try await onOwnThread { [process] in process.waitUntilExit() }
    }
}

@Suite("The test server and the codec's client against an independent implementation: python3-websockets")
struct IndependentImplementationTests {
    @Test("python3-websockets' client: Basic auth, a subscription and its ACK, a live command, a fragmented answer, ping, close")
    func pythonClientAgainstTestServer() async throws {
        let server = try DittoWebSocketServer()
        let client = try PythonProcess("""
            import asyncio, base64, sys, websockets
            async def main(port):
                auth = "Basic " + base64.b64encode(b"ditto:ditto").decode()
                async with websockets.connect(f"ws://127.0.0.1:{port}/ws/2?declared-acks=py%3Aack",
                                              extra_headers={"Authorization": auth}, ping_interval=None) as ws:
                    await ws.send("START-SEND-LIVE-COMMANDS?namespaces=org.example")
                    print(await ws.recv(), flush=True)
                    print(await ws.recv(), flush=True)
                    await ws.send(['{"topic":"org.example/device-1/things/live/commands/modify",', '"status":204}'])
                    await ws.send("x" * 70000)
                    await (await ws.ping(b"py"))
                    print("pong", flush=True)
                    await ws.close(code=1000, reason="done")
                    print("closed", ws.close_code, flush=True)
            asyncio.run(main(int(sys.argv[1])))
            """, [String(server.port)])
        #expect(try await client.line() == "START-SEND-LIVE-COMMANDS:ACK")
        let session = try await server.session(0)
        #expect(session.subscriptions[.liveCommands]?.namespaces == ["org.example"])
        #expect(session.declaredAcknowledgementLabels == ["py:ack"])
        session.send(liveCommand)
        #expect(try await client.line() == liveCommand)
        #expect(try await client.line() == "pong")
        #expect(try await client.line() == "closed 1000")
        #expect(session.protocolMessages == [#"{"topic":"org.example/device-1/things/live/commands/modify","status":204}"#])
        #expect(session.closeReceived == .normalClosure)
        try await client.stop()
        await server.stop()
    }

    @Test("the codec's client against python3-websockets' server: Bearer header, 16- and 64-bit lengths, ping, close handshake")
    func codecClientAgainstPythonServer() async throws {
        let pythonServer = try PythonProcess("""
            import asyncio, websockets
            async def handler(ws, path=None):
                await ws.send(ws.request_headers["Authorization"] + " " + ws.path)
                async for message in ws:
                    await ws.send(message[::-1])
            async def main():
                async with websockets.serve(handler, "127.0.0.1", 0, max_size=2**20) as server:
                    print(server.sockets[0].getsockname()[1], flush=True)
                    await asyncio.sleep(30)
            asyncio.run(main())
            """)
        let firstLine = try await pythonServer.line()
        let port = try #require(firstLine.flatMap { Int($0) })
        let request = WebSocketUpgradeRequest(host: "127.0.0.1:\(port)", path: "/ws/2",
                                              query: [QueryParameter("declared-acks", "gw:ack")],
                                              authorization: .bearer(token: "eyJ.a.b"))
        let client = try await WebSocketTestClient.connect(port: port, request: request)
        #expect(try await client.nextText() == "Bearer eyJ.a.b /ws/2?declared-acks=gw%3Aack")
        for length in [5, 300, 70000] {
            let text = String((0..<length).map { Character(Unicode.Scalar(UInt8(97 + $0 % 26))) })
            client.send(text)
            #expect(try await client.nextText() == String(text.reversed()))
        }
        client.ping([1, 2])
        #expect(try await client.nextEvent() == .pong([1, 2]))
        client.close(.normalClosure, reason: "done")
        #expect(try await client.nextEvent() == .closed(code: .normalClosure, reason: "done"))
        try await pythonServer.stop()
    }
}
