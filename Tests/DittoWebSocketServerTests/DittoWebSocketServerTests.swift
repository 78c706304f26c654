import DittoWebSocketTestSupport
import Foundation
import MosquittoTestSupport
import Testing
import WebSocketCodec

extension DittoWebSocketServer {
    func request(_ authorization: HTTPAuthorization? = .basic(username: "ditto", password: "ditto"),
                 query: [QueryParameter] = []) -> WebSocketUpgradeRequest {
        WebSocketUpgradeRequest(host: "127.0.0.1:\(port)", path: "/ws/2", query: query, authorization: authorization)
    }

    /// A server with `options`, a client with Basic credentials, and the server's side of its session.
    static func connected(_ options: Options = Options()) async throws
        -> (DittoWebSocketServer, WebSocketTestClient, DittoWebSocketSession)
    {
        let server = try DittoWebSocketServer(options)
        let client = try await server.connect()
        return (server, client, try await server.session(0))
    }

    func connect(_ authorization: HTTPAuthorization? = .basic(username: "ditto", password: "ditto"),
                 query: [QueryParameter] = []) async throws -> WebSocketTestClient {
        try await WebSocketTestClient.connect(port: port, request: request(authorization, query: query))
    }
}

/// The JSON object of a text frame.
func json(_ text: String?) throws -> [String: Any] {
    let text = try #require(text)
    return try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
}

let liveCommand = #"{"topic":"org.example/device-1/things/live/commands/modify","headers":{"correlation-id":"c-1"},"path":"/features/lamp/properties/on","value":true}"#

@Suite("The test server plays Ditto's /ws/2, checked with the codec's client over real sockets")
struct DittoWebSocketServerTests {
    @Test("Basic auth, START-SEND-* with namespaces and an RQL filter acknowledged in order, STOP-SEND-* too")
    func subscriptions() async throws {
        let server = try DittoWebSocketServer()
        let client = try await server.connect()
        let filter = "and(eq(attributes/type,\"lamp\"),gt(attributes/x,1))"
        client.send("START-SEND-LIVE-COMMANDS?namespaces=org.example,com.acme")
        client.send("START-SEND-LIVE-EVENTS?namespaces=org.example&filter=" + QueryParameter.percentEncoded(filter))
        client.send("START-SEND-MESSAGES?extraFields=attributes&")
        #expect(try await client.nextText() == "START-SEND-LIVE-COMMANDS:ACK")
        #expect(try await client.nextText() == "START-SEND-LIVE-EVENTS:ACK")
        #expect(try await client.nextText() == "START-SEND-MESSAGES:ACK")
        let session = try await server.session(0)
        #expect(session.subject == "nginx:ditto")
        #expect(session.subscriptions[.liveCommands] == DittoSubscription(type: .liveCommands, namespaces: ["org.example", "com.acme"], filter: nil))
        #expect(session.subscriptions[.liveEvents]?.filter == filter)
        client.send("STOP-SEND-MESSAGES")
        #expect(try await client.nextText() == "STOP-SEND-MESSAGES:ACK")
        #expect(session.subscriptions[.messages] == nil)
        #expect(session.controlMessages.count == 4)
        await server.stop()
    }

    @Test("refused at the upgrade with 401: a wrong password, no credentials, an unknown or expired token")
    func refusals() async throws {
        let server = try DittoWebSocketServer()
        let expired = server.issueToken(subject: "oidc:gw", validFor: .zero)
        for authorization: HTTPAuthorization? in [.basic(username: "ditto", password: "wrong"), nil,
                                                 .bearer(token: "made-up"), .bearer(token: expired)] {
            await #expect(throws: WebSocketHandshakeError.refused(status: 401, reason: "Unauthorized")) {
                try await server.connect(authorization)
            }
        }
        #expect(server.refusedUpgrades == [401, 401, 401, 401])
        #expect(server.sessions.isEmpty)
        let token = server.issueToken(subject: "oidc:gw", validFor: .seconds(60))
        _ = try await server.connect(.bearer(token: token))
        _ = try await server.connect(nil, query: [QueryParameter("access_token", token)])
        #expect(try await server.session(1).subject == "oidc:gw")
        await server.stop()
    }

    @Test("Ditto Protocol frames both ways; an unknown text frame gets a json.invalid error frame and the session stays")
    func protocolFrames() async throws {
        let (server, client, session) = try await DittoWebSocketServer.connected()
        #expect(session.send(liveCommand))
        #expect(try await client.nextText() == liveCommand)
        let response = #"{"topic":"org.example/device-1/things/live/commands/modify","headers":{"correlation-id":"c-1"},"path":"/features/lamp/properties/on","status":204}"#
        client.send(response)
        client.send("HELLO")
        let error = try json(try await client.nextText())
        #expect(error["topic"] as? String == "_/_/things/twin/errors")
        #expect(error["status"] as? Int == 400)
        let value = try #require(error["value"] as? [String: Any])
        #expect(value["error"] as? String == "json.invalid")
        #expect(value["message"] as? String == "Failed to parse JSON string 'HELLO'!")
        #expect(session.protocolMessages == [response])
        #expect(session.isOpen)
        await server.stop()
    }

    @Test("a bearer session closes with 1000 when its token expires; JWT-TOKEN of the same subject extends it, without an ack")
    func tokenExpiryAndRefresh() async throws {
        let server = try DittoWebSocketServer()
        let short = server.issueToken(subject: "oidc:gw", validFor: .milliseconds(700))
        let expiring = try await server.connect(.bearer(token: short))
        #expect(try await expiring.nextEvent(timeout: .seconds(3)) == .closed(code: .normalClosure, reason: "JWT expired"))

        let refreshed = try await server.connect(.bearer(token: server.issueToken(subject: "oidc:gw", validFor: .seconds(1.5))))
        refreshed.send("JWT-TOKEN?jwtToken=" + server.issueToken(subject: "oidc:gw", validFor: .seconds(60)))
        #expect(try await refreshed.nextEvent(timeout: .seconds(2.5)) == nil)
        #expect(try await server.session(1).isOpen)
        #expect(try await server.session(1).controlMessages.first?.hasPrefix("JWT-TOKEN?jwtToken=eyJ") == true)
        await server.stop()
    }

    @Test("JWT-TOKEN with another subject's token or an unknown one closes the session at once", arguments: [true, false])
    func invalidRefresh(otherSubject: Bool) async throws {
        let server = try DittoWebSocketServer()
        let client = try await server.connect(.bearer(token: server.issueToken(subject: "oidc:gw", validFor: .seconds(60))))
        let token = otherSubject ? server.issueToken(subject: "oidc:other", validFor: .seconds(60)) : "made-up"
        client.send("JWT-TOKEN?jwtToken=" + token)
        #expect(try await client.nextEvent() == .closed(code: .normalClosure, reason: "invalid JWT"))
        await server.stop()
    }

    @Test("declared-acks taken elsewhere, by an open session, or found taken mid-session: 409 error frame, then close 1000")
    func declaredAcknowledgementConflicts() async throws {
        let server = try DittoWebSocketServer()
        server.declareElsewhere(["connection-1:ack"])
        func expectConflict(_ client: WebSocketTestClient) async throws {
            let error = try json(try await client.nextText())
            #expect(error["status"] as? Int == 409)
            #expect((error["value"] as? [String: Any])?["error"] as? String == "acknowledgement:label.not.unique")
            #expect(try await client.nextEvent() == .closed(code: .normalClosure, reason: ""))
        }
        try await expectConflict(server.connect(query: [QueryParameter("declared-acks", "gw:ack,connection-1:ack")]))
        let first = try await server.connect(query: [QueryParameter("declared-acks", "gw:ack")])
        #expect(try await server.session(1).declaredAcknowledgementLabels == ["gw:ack"])
        try await expectConflict(server.connect(query: [QueryParameter("declared-acks", "[\"gw:ack\"]")]))
        try await server.session(1).rejectDeclaredAcknowledgementLabels()
        try await expectConflict(first)
        // The label is free once its session is gone.
        _ = await eventually(timeout: .seconds(3)) { await (try? server.session(1).isOpen) == false }
        let again = try await server.connect(query: [QueryParameter("declared-acks", "gw:ack")])
        again.send("START-SEND-LIVE-COMMANDS")
        #expect(try await again.nextText() == "START-SEND-LIVE-COMMANDS:ACK")
        await server.stop()
    }

    @Test("malformed control parameters close with 1011", arguments: [
        "START-SEND-LIVE-EVENTS?filter", "START-SEND-LIVE-COMMANDS?namespaces=a&namespaces=b",
        "START-SEND-MESSAGES?namespaces=%zz", "START-SEND-MESSAGES?",
    ])
    func malformedParameters(message: String) async throws {
        let server = try DittoWebSocketServer()
        let client = try await server.connect()
        client.send(message)
        #expect(try await client.nextEvent() == .closed(code: .internalError, reason: "malformed control message"))
        #expect(try await server.session(0).subscriptions.isEmpty)
        await server.stop()
    }

    @Test("a restart closes every open session with 1011 and new sessions are served; a drop ends without a close frame")
    func restartAndDrop() async throws {
        let server = try DittoWebSocketServer()
        let clients = [try await server.connect(), try await server.connect()]
        _ = try await server.session(1)
        server.restart()
        for client in clients {
            #expect(try await client.nextEvent() == .closed(code: .internalError, reason: "service restart"))
        }
        let next = try await server.connect()
        try await server.session(2).drop()
        #expect(try await next.nextEvent() == .closed(code: .abnormalClosure, reason: ""))
        await server.stop()
    }

    @Test("a ping after the set idle time without a frame from the client, none while the client keeps sending")
    func keepAlive() async throws {
        let server = try DittoWebSocketServer(.init(keepAliveIdle: .seconds(1)))
        let silent = try await server.connect()
        #expect(try await silent.nextEvent(timeout: .seconds(3)) == .ping([]))
        #expect(await eventually(timeout: .seconds(2)) { await (try? server.session(0).pongsReceived) == 1 })
        let busy = try await server.connect()
        for _ in 0..<30 {
            busy.send("{}")
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(try await server.session(1).pingsSent == 0)
        #expect(try await server.session(1).protocolMessages.count == 30)
        await server.stop()
    }

    @Test("at most 200 frames wait for a client that does not read; more are dropped, :ACKs included; the rest arrive in order")
    func boundedOutgoingBuffer() async throws {
        let (server, client, session) = try await DittoWebSocketServer.connected(.init(socketSendBufferBytes: 4096))
        let payload = String(repeating: "x", count: 64 * 1024)
        var accepted = 0
        while session.send("\(accepted) " + payload), accepted < 5000 { accepted += 1 }
        #expect(session.droppedFrames == 1)
        #expect(session.queuedFrames == 200)
        client.send("START-SEND-MESSAGES")
        #expect(await eventually(timeout: .seconds(3)) { session.subscriptions[.messages] != nil })
        #expect(session.droppedFrames == 2)
        var received = 0
        while let text = try await client.nextText(timeout: .seconds(2)) {
            #expect(text.hasPrefix("\(received) "))
            received += 1
        }
        #expect(received == accepted)
        await server.stop()
    }

    @Test("nothing is read after the server's own close frame")
    func nothingReadAfterClose() async throws {
        let (server, client, session) = try await DittoWebSocketServer.connected()
        session.close(.normalClosure)
        #expect(await eventually(timeout: .seconds(2)) { session.closeSent == .normalClosure })
        client.send("START-SEND-LIVE-COMMANDS")
        client.send(liveCommand)
        #expect(try await client.nextEvent() == .closed(code: .normalClosure, reason: ""))
        #expect(await eventually(timeout: .seconds(2)) { !session.isOpen })
        #expect(session.closeReceived == .normalClosure)
        #expect(session.framesIgnoredAfterClose == 2)
        #expect(session.controlMessages.isEmpty && session.protocolMessages.isEmpty && session.subscriptions.isEmpty)
        await server.stop()
    }

    @Test("the client closes: the server echoes 1000 and ends the session")
    func clientCloses() async throws {
        let server = try DittoWebSocketServer()
        let client = try await server.connect()
        client.close(.normalClosure, reason: "bye")
        #expect(try await client.nextEvent() == .closed(code: .normalClosure, reason: ""))
        let session = try await server.session(0)
        #expect(await eventually(timeout: .seconds(2)) { !session.isOpen })
        #expect(session.closeReceived == .normalClosure)
        await server.stop()
    }
}

@Suite("CONNECT through a forward proxy, with the codec's HTTPConnectRequest over real sockets")
struct ProxyTests {
    @Test("the tunnel carries the upgrade and the session; wrong proxy credentials get 407")
    func tunnel() async throws {
        let server = try DittoWebSocketServer()
        let proxy = try HTTPConnectProxy(credentials: .basic(username: "gw", password: "proxy-pass"))
        let target = "127.0.0.1:\(server.port)"
        let client = try await WebSocketTestClient.connect(
            port: proxy.port, request: server.request(),
            proxy: HTTPConnectRequest(host: "127.0.0.1", port: server.port,
                                      proxyAuthorization: .basic(username: "gw", password: "proxy-pass")))
        client.send("START-SEND-LIVE-COMMANDS")
        #expect(try await client.nextText() == "START-SEND-LIVE-COMMANDS:ACK")
        try await server.session(0).send(liveCommand)
        #expect(try await client.nextText() == liveCommand)
        #expect(proxy.tunnels == [target])
        await #expect(throws: WebSocketHandshakeError.proxyRefused(status: 407, reason: "Proxy Authentication Required")) {
            try await WebSocketTestClient.connect(port: proxy.port, request: server.request(),
                                                  proxy: HTTPConnectRequest(host: "127.0.0.1", port: server.port))
        }
        #expect(proxy.refused == [407])
        await proxy.stop()
        await server.stop()
    }
}
