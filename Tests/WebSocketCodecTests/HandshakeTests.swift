import Testing
@testable import WebSocketCodec

func head(_ text: String) throws -> HTTPHead {
    try #require(try HTTPHead.parse(Array(text.utf8))).head
}

@Suite("Opening handshake, proxy CONNECT and SHA-1")
struct HandshakeTests {
    @Test("SHA-1 of FIPS 180's examples")
    func sha1() {
        func hex(_ bytes: [UInt8]) -> String { bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined() }
        #expect(hex(SHA1.hash(Array("abc".utf8))) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(hex(SHA1.hash([UInt8]())) == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        #expect(hex(SHA1.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)))
                == "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        #expect(hex(SHA1.hash([UInt8](repeating: 0x61, count: 1_000_000))) == "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
    }

    @Test("the accept value of RFC 6455 section 1.3's example key")
    func acceptValue() {
        #expect(WebSocketUpgradeRequest.acceptValue(forKey: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    @Test("the upgrade request: Host, key, version 13, Basic or Bearer, the query percent-encoded")
    func request() {
        let request = WebSocketUpgradeRequest(
            host: "ditto.example:8443", path: "/ws/2",
            query: [QueryParameter("declared-acks", "gw-1:ack,gw-1:other ä")],
            authorization: .basic(username: "ditto", password: "ditto"), key: "dGhlIHNhbXBsZSBub25jZQ==")
        #expect(String(decoding: request.encoded(), as: UTF8.self) == """
            GET /ws/2?declared-acks=gw-1%3Aack%2Cgw-1%3Aother%20%C3%A4 HTTP/1.1\r
            Host: ditto.example:8443\r
            Upgrade: websocket\r
            Connection: Upgrade\r
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r
            Sec-WebSocket-Version: 13\r
            Authorization: Basic ZGl0dG86ZGl0dG8=\r
            \r

            """)
        #expect(HTTPAuthorization.bearer(token: "eyJ.x.y").headerValue == "Bearer eyJ.x.y")
        #expect(QueryParameter.percentDecoded("gw-1%3Aack%2Cgw-1%3Aother%20%C3%A4") == "gw-1:ack,gw-1:other ä")
        #expect(QueryParameter.percentDecoded("bad%zz") == nil)
        #expect(QueryParameter.percentDecoded("cut%4") == nil)
        let key = WebSocketUpgradeRequest.randomKey()
        #expect(key.count == 24 && key != WebSocketUpgradeRequest.randomKey())
    }

    @Test("the server's answer: 101 with the right accept passes; 401, a wrong accept or no upgrade fail")
    func answer() throws {
        let request = WebSocketUpgradeRequest(host: "h", path: "/ws/2", key: "dGhlIHNhbXBsZSBub25jZQ==")
        try request.validate(head("HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"))
        #expect(throws: WebSocketHandshakeError.refused(status: 401, reason: "Unauthorized")) {
            try request.validate(head("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"ditto\"\r\n\r\n"))
        }
        #expect(throws: WebSocketHandshakeError.acceptMismatch(expected: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", received: "x")) {
            try request.validate(head("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n"))
        }
        #expect(throws: WebSocketHandshakeError.notAnUpgrade) {
            try request.validate(head("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n"))
        }
    }

    @Test("a head is parsed incrementally and says how long it is; what follows is left for the frames")
    func incrementalHead() throws {
        let bytes = Array("HTTP/1.1 101 OK\r\nUpgrade:  websocket \r\n\r\n".utf8) + [0x81, 0x00]
        for cut in 0..<(bytes.count - 2) { #expect(try HTTPHead.parse(bytes[..<cut]) == nil) }
        let (parsed, length) = try #require(try HTTPHead.parse(bytes))
        #expect(length == bytes.count - 2)
        #expect(parsed.status == 101 && parsed.reason == "OK" && parsed.value(of: "upgrade") == "websocket")
        #expect(throws: WebSocketHandshakeError.headTooLarge(limit: 64)) {
            try HTTPHead.parse([UInt8](repeating: 0x41, count: 100), maximumLength: 64)
        }
        #expect(throws: WebSocketHandshakeError.malformedHead("header line without a name: nonsense")) {
            try HTTPHead.parse(Array("HTTP/1.1 200 OK\r\nnonsense\r\n\r\n".utf8))
        }
    }

    @Test("CONNECT through a proxy: authority form, Proxy-Authorization, any 2xx opens the tunnel")
    func connect() throws {
        let request = HTTPConnectRequest(host: "ditto.example", port: 443,
                                         proxyAuthorization: .basic(username: "gw", password: "pw"))
        #expect(String(decoding: request.encoded(), as: UTF8.self)
                == "CONNECT ditto.example:443 HTTP/1.1\r\nHost: ditto.example:443\r\nProxy-Authorization: Basic Z3c6cHc=\r\n\r\n")
        #expect(HTTPConnectRequest(host: "::1", port: 80).authority == "[::1]:80")
        try request.validate(head("HTTP/1.1 200 Connection established\r\n\r\n"))
        #expect(throws: WebSocketHandshakeError.proxyRefused(status: 407, reason: "Proxy Authentication Required")) {
            try request.validate(head("HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n"))
        }
    }
}

@Suite("Close handshake and automatic pongs")
struct ConnectionTests {
    /// Moves what `from` encoded into `to`'s decoder.
    static func transfer(_ from: inout WebSocketConnection, _ to: inout WebSocketConnection) {
        to.decoder.append(from.encoder.pendingBytes)
        from.encoder.consume(from.encoder.pendingBytes.count)
    }

    @Test("the client closes: the server echoes the code, data after the client's close is dropped, both end closed")
    func clientCloses() throws {
        var client = WebSocketConnection(role: .client)
        var server = WebSocketConnection(role: .server)
        client.close(.normalClosure, reason: "done")
        #expect(client.state == .closeSent(.normalClosure))
        let accepted = client.sendText("late")
        #expect(!accepted)
        server.sendText("in flight")
        Self.transfer(&client, &server)
        #expect(try server.nextEvent() == .closed(code: .normalClosure, reason: "done"))
        #expect(server.state == .closed)
        Self.transfer(&server, &client)
        #expect(try client.nextEvent() == .closed(code: .normalClosure, reason: ""))
        #expect(client.droppedAfterClose == 1)
        #expect(client.state == .closed)
    }

    @Test("a ping is answered with a pong carrying its payload; a pong is reported")
    func pingPong() throws {
        var client = WebSocketConnection(role: .client)
        var server = WebSocketConnection(role: .server)
        server.sendPing([7, 7])
        Self.transfer(&server, &client)
        #expect(try client.nextEvent() == .ping([7, 7]))
        Self.transfer(&client, &server)
        #expect(try server.nextEvent() == .pong([7, 7]))
    }

    @Test("a protocol error encodes the failing close frame and ends the connection")
    func protocolErrorCloses() throws {
        var client = WebSocketConnection(role: .client)
        client.decoder.append([0x81, 0x02, 0xC3, 0x28])
        #expect(throws: WebSocketProtocolError.invalidUTF8) { try client.nextEvent() }
        #expect(client.state == .closed)
        var server = WebSocketFrameDecoder(role: .server)
        server.append(client.encoder.pendingBytes)
        #expect(try server.nextMessage() == .close(code: .invalidFramePayloadData, reason: "text that is not UTF-8"))
    }
}
