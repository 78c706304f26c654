import DittoWebSocketTestSupport
@testable import WebSocketClient
import MQTT
import MosquittoTestSupport
import Testing
import WebSocketCodec

let dittoLogin = HTTPAuthorization.basic(username: "ditto", password: "ditto")

extension DittoWebSocketServer {
    func endpoint(_ authorization: HTTPAuthorization? = dittoLogin, query: [QueryParameter] = []) -> WebSocketEndpoint {
        WebSocketEndpoint(host: "127.0.0.1", port: port, query: query, authorization: authorization, timeout: .seconds(5))
    }
}

@Suite("WebSocketConnector over plain TCP (ws://) against the test server of Ditto's /ws/2")
struct ConnectorTests {
    @Test("Basic ditto/ditto: 101, the session is nginx:ditto, and frames go both ways over the non-blocking stream")
    func basic() async throws {
        let server = try DittoWebSocketServer()
        let established = try await connect(server.endpoint())
        let channel = FrameChannel(established)
        #expect(established.response.status == 101)
        #expect(try await channel.send("START-SEND-LIVE-COMMANDS?namespaces=org.example") == "START-SEND-LIVE-COMMANDS:ACK")
        let session = try await server.session(0)
        #expect(session.subject == "nginx:ditto")
        #expect(session.request.value(of: "Host") == "127.0.0.1:\(server.port)")
        #expect(session.request.value(of: "Authorization") == dittoLogin.headerValue)
        session.send(#"{"topic":"org.example/d/things/live/messages/hi","headers":{},"path":"/inbox/messages/hi"}"#)
        #expect(try await channel.nextText()?.contains("live/messages/hi") == true)
        channel.close()
        await server.stop()
    }

    @Test("A bearer token the server issued: the session is the token's subject; extra headers are sent")
    func bearer() async throws {
        let server = try DittoWebSocketServer()
        let token = server.issueToken(subject: "integration:bridge", validFor: .seconds(60))
        var endpoint = server.endpoint(.bearer(token: token))
        endpoint.additionalHeaders = [HTTPHeader("User-Agent", "ditto-mqtt-bridge-test")]
        let channel = FrameChannel(try await connect(endpoint))
        #expect(try await channel.send("START-SEND-MESSAGES") == "START-SEND-MESSAGES:ACK")
        let session = try await server.session(0)
        #expect(session.subject == "integration:bridge")
        #expect(session.request.value(of: "User-Agent") == "ditto-mqtt-bridge-test")
        channel.close()
        await server.stop()
    }

    @Test("Refused credentials: 401 is .refused, and its text says Ditto refused the credentials")
    func refusedCredentials() async throws {
        let server = try DittoWebSocketServer()
        for authorization in [HTTPAuthorization.basic(username: "ditto", password: "wrong"), .bearer(token: "unknown"), nil] {
            let error = try await connectError(server.endpoint(authorization))
            #expect(error == .refused(status: 401, reason: "Unauthorized", address: "127.0.0.1:\(server.port)"))
            #expect(error.stage == .upgrade)
            #expect(error.description.contains("Ditto refused the credentials (401 Unauthorized)"), "\(error)")
        }
        #expect(server.refusedUpgrades == [401, 401, 401])
        await server.stop()
    }

    @Test("declared-acks reaches the server percent-encoded, appended to a query the URL's path already has")
    func declaredAcknowledgements() async throws {
        let server = try DittoWebSocketServer()
        var endpoint = server.endpoint(query: [QueryParameter("declared-acks", "bridge:a,bridge:b c")])
        let first = try await connect(endpoint)
        #expect(try await server.session(0).declaredAcknowledgementLabels == ["bridge:a", "bridge:b c"])
        #expect(try await server.session(0).request.startLine == "GET /ws/2?declared-acks=bridge%3Aa%2Cbridge%3Ab%20c HTTP/1.1")
        first.stream.close()
        endpoint.path = "/ws/2?fields=thingId"
        let second = try await connect(endpoint)
        #expect(try await server.session(1).request.startLine
            == "GET /ws/2?fields=thingId&declared-acks=bridge%3Aa%2Cbridge%3Ab%20c HTTP/1.1")
        second.stream.close()
        await server.stop()
    }

    @Test("Bytes after the 101 in the same read are the leftover: a frame the server sent at once")
    func leftover() async throws {
        let frame: [UInt8] = [0x81, 5] + Array("hello".utf8)
        let listener = try RawListener { RawListener.switchingProtocols($0) + frame }
        let established = try await connect(WebSocketEndpoint(host: "127.0.0.1", port: listener.port, timeout: .seconds(5)))
        #expect(established.leftover == frame)
        #expect(try await FrameChannel(established).nextText(timeout: .milliseconds(100)) == "hello")
        established.stream.close()
        await listener.stop()
    }

    @Test("A declared label taken elsewhere: the 409 frame right after the 101 reaches the client (leftover or stream)")
    func frameRightAfterUpgrade() async throws {
        let server = try DittoWebSocketServer()
        server.declareElsewhere(["bridge:taken"])
        let endpoint = server.endpoint(query: [QueryParameter("declared-acks", "bridge:taken")])
        let channel = FrameChannel(try await connect(endpoint))
        let error = try #require(try await channel.nextText())
        #expect(error.contains("acknowledgement:label.not.unique"))
        channel.close()
        await server.stop()
    }

    @Test("An answer that is not a WebSocket upgrade: 404 and a 101 with the wrong accept value fail at the upgrade")
    func notAnUpgrade() async throws {
        let notFound = try RawListener { _ in
            HTTPHead(startLine: "HTTP/1.1 404 Not Found", headers: [HTTPHeader("Content-Length", "0")]).encoded()
        }
        let error = try await connectError(WebSocketEndpoint(host: "127.0.0.1", port: notFound.port, timeout: .seconds(5)))
        #expect(error == .refused(status: 404, reason: "Not Found", address: "127.0.0.1:\(notFound.port)"))
        #expect(error.description.contains("404 Not Found, not 101"), "\(error)")
        #expect(await eventually(timeout: .seconds(5)) { notFound.clientCloses == 1 }, "the failed connect closed its socket")

        let wrongAccept = try RawListener { _ in
            HTTPHead(startLine: "HTTP/1.1 101 Switching Protocols", headers: [
                HTTPHeader("Upgrade", "websocket"), HTTPHeader("Connection", "Upgrade"),
                HTTPHeader("Sec-WebSocket-Accept", "nope"),
            ]).encoded()
        }
        let endpoint = WebSocketEndpoint(host: "127.0.0.1", port: wrongAccept.port, timeout: .seconds(5))
        let mismatch = try await connectError(endpoint)
        guard case .failed(.upgrade, let address, let reason) = mismatch else { throw TestFailure("\(mismatch)") }
        #expect(address == "127.0.0.1:\(wrongAccept.port)")
        #expect(reason.contains("Sec-WebSocket-Accept is 'nope'"))
        #expect(await eventually(timeout: .seconds(5)) { wrongAccept.clientCloses == 1 }, "the failed connect closed its socket")
        await notFound.stop()
        await wrongAccept.stop()
    }

    @Test("A server that accepts and never answers: the connect times out in the upgrade stage, on time, and closes")
    func upgradeTimeout() async throws {
        let listener = try RawListener.silent()
        let started = ContinuousClock.now
        let endpoint = WebSocketEndpoint(host: "127.0.0.1", port: listener.port, timeout: .milliseconds(300))
        let error = try await connectError(endpoint)
        let took = ContinuousClock.now - started
        #expect(error == .timedOut(.upgrade, address: "127.0.0.1:\(listener.port)", after: .milliseconds(300)))
        #expect(error.description.contains("timed out") && error.description.contains("WebSocket upgrade"), "\(error)")
        // Not before the deadline; and long before forever, the wait without one (a busy machine delays the rest).
        #expect(took >= .milliseconds(300) && took < .seconds(10))
        #expect(await eventually(timeout: .seconds(5)) { listener.clientCloses == 1 }, "the failed connect closed its socket")
        await listener.stop()
    }

    @Test("IPv6: ::1 is connected to, and the Host header has it in brackets")
    func ipv6() async throws {
        let listener = try RawListener(ipv6: true) { RawListener.switchingProtocols($0) }
        let established = try await connect(WebSocketEndpoint(host: "::1", port: listener.port, timeout: .seconds(5)))
        #expect(listener.requests.map { $0.value(of: "Host") } == ["[::1]:\(listener.port)"])
        established.stream.close()
        #expect(await eventually(timeout: .seconds(5)) { listener.clientCloses == 1 })
        await listener.stop()
    }

    @Test("Several addresses: a refused one, then the next; all refused: each named in the error")
    func everyAddressInTurn() async throws {
        let listener = try RawListener { RawListener.switchingProtocols($0) }
        let refusing = try PortReservation()
        // Blocking, so on a thread of its own; the deadline is the connect's, counted from there.
        let outcome = try await onOwnThread { () -> Result<Void, WebSocketConnectError> in
            let step = ConnectStep(stage: .resolve, address: "ditto.example:443", deadline: .now + .seconds(5),
                                   timeout: .seconds(5))
            let addresses = try TCPConnection.resolve(host: "127.0.0.1", port: refusing.port, step: step)
                + TCPConnection.resolve(host: "127.0.0.1", port: listener.port, step: step)
            try TCPConnection.connect(toAny: addresses, step: step).close()
            let refused = try TCPConnection.resolve(host: "::1", port: refusing.port, step: step) + [addresses[0]]
            return Result { () throws(WebSocketConnectError) in _ = try TCPConnection.connect(toAny: refused, step: step) }
        }
        #expect(await eventually(timeout: .seconds(5)) { listener.clientCloses == 1 }, "the second address connected")
        let reason = "[::1]:\(refusing.port): Connection refused; 127.0.0.1:\(refusing.port): Connection refused"
        #expect(throws: WebSocketConnectError.failed(.connect, address: "ditto.example:443", reason: reason)) {
            try outcome.get()
        }
        await listener.stop()
    }

    @Test("Writing to a peer that has gone: .failed with the system's text, never a SIGPIPE")
    func peerGone() async throws {
        let listener = try RawListener(thenClose: true) { RawListener.switchingProtocols($0) }
        let established = try await connect(WebSocketEndpoint(host: "127.0.0.1", port: listener.port, timeout: .seconds(5)))
        let outcome = try await writeUntilFailure(established.stream)
        #expect(outcome.reason != nil)
        #expect(!outcome.raisedSIGPIPE)
        established.stream.close()
        await listener.stop()
    }

    @Test("Nothing listens: connection refused names the connect stage and the address")
    func connectionRefused() async throws {
        let reservation = try PortReservation()
        let error = try await connectError(WebSocketEndpoint(host: "127.0.0.1", port: reservation.port, timeout: .seconds(5)))
        #expect(error == .failed(.connect, address: "127.0.0.1:\(reservation.port)", reason: "Connection refused"))
        #expect(error.description == "connecting to 127.0.0.1:\(reservation.port) failed: Connection refused")
    }

    @Test("A name with several addresses: each is tried until one connects (localhost: ::1 and 127.0.0.1)")
    func everyAddress() async throws {
        let server = try DittoWebSocketServer()
        var endpoint = server.endpoint()
        endpoint.host = "localhost"
        let channel = FrameChannel(try await connect(endpoint))
        #expect(try await channel.send("START-SEND-EVENTS") == "START-SEND-EVENTS:ACK")
        #expect(try await server.session(0).request.value(of: "Host") == "localhost:\(server.port)")
        channel.close()
        await server.stop()
    }

    @Test("A name that does not resolve fails in the resolve stage")
    func unresolvable() async throws {
        // An empty name: getaddrinfo refuses it without asking a DNS server.
        let error = try await connectError(WebSocketEndpoint(host: "", port: 80, timeout: .seconds(5)))
        #expect(error.stage == .resolve, "\(error)")
    }

    @Test("The Host header: no port for the scheme's default, brackets for IPv6")
    func hostHeader() {
        #expect(WebSocketEndpoint(host: "ditto.example", port: 80).hostHeader == "ditto.example")
        #expect(WebSocketEndpoint(host: "ditto.example", port: 443).hostHeader == "ditto.example:443")
        #expect(WebSocketEndpoint(host: "ditto.example", port: 443, tls: .init()).hostHeader == "ditto.example")
        #expect(WebSocketEndpoint(host: "::1", port: 8080).hostHeader == "[::1]:8080")
        #expect(WebSocketEndpoint(host: "::1", port: 80).hostHeader == "[::1]")
    }
}

@Suite("WebSocketConnector through an HTTP CONNECT proxy")
struct ProxyConnectorTests {
    static let proxyLogin = HTTPAuthorization.basic(username: "proxy-user", password: "proxy-pass")

    @Test("With the proxy's credentials: CONNECT to Ditto's address, then the upgrade through the tunnel")
    func tunnel() async throws {
        let server = try DittoWebSocketServer()
        let proxy = try HTTPConnectProxy(credentials: Self.proxyLogin)
        var endpoint = server.endpoint()
        endpoint.proxy = .init(host: "127.0.0.1", port: proxy.port, authorization: Self.proxyLogin)
        let channel = FrameChannel(try await connect(endpoint))
        #expect(try await channel.send("START-SEND-LIVE-EVENTS") == "START-SEND-LIVE-EVENTS:ACK")
        #expect(proxy.tunnels == ["127.0.0.1:\(server.port)"])
        #expect(try await server.session(0).subject == "nginx:ditto")
        channel.close()
        await proxy.stop()
        await server.stop()
    }

    @Test("Without the proxy's credentials: 407 is .proxyRefused, nothing reaches Ditto")
    func refusedByProxy() async throws {
        let server = try DittoWebSocketServer()
        let proxy = try HTTPConnectProxy(credentials: Self.proxyLogin)
        for authorization in [nil, HTTPAuthorization.basic(username: "proxy-user", password: "wrong")] {
            var endpoint = server.endpoint()
            endpoint.proxy = .init(host: "127.0.0.1", port: proxy.port, authorization: authorization)
            let error = try await connectError(endpoint)
            #expect(error == .proxyRefused(status: 407, reason: "Proxy Authentication Required", proxy: "127.0.0.1:\(proxy.port)"))
            #expect(error.description.contains("407 Proxy Authentication Required"))
        }
        #expect(proxy.refused == [407, 407])
        #expect(server.sessions.isEmpty)
        await proxy.stop()
        await server.stop()
    }

    @Test("A proxy that does not listen: the connect stage names the proxy's address")
    func proxyDown() async throws {
        let server = try DittoWebSocketServer()
        let reservation = try PortReservation()
        var endpoint = server.endpoint()
        endpoint.proxy = .init(host: "127.0.0.1", port: reservation.port)
        let error = try await connectError(endpoint)
        #expect(error == .failed(.connect, address: "127.0.0.1:\(reservation.port)", reason: "Connection refused"))
        await server.stop()
    }
}
