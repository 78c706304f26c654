import DittoWebSocketTestSupport
import MQTT
import MosquittoTestSupport
import Testing
import WebSocketClient
import WebSocketCodec

/// The test server behind nginx terminating TLS with the test certificates; both stopped by ``stop()``.
struct TLSDitto {
    let server: DittoWebSocketServer
    let front: TLSFrontProxy
    var certificates: TestCertificates { front.certificates }

    static func start(_ options: TLSFrontProxy.Options = .init(), certificates: TestCertificates? = nil) async throws -> TLSDitto {
        let server = try DittoWebSocketServer()
        do {
            let made: TestCertificates
            if let certificates { made = certificates } else { made = try await TestCertificates.make() }
            let certificates = made
            return TLSDitto(server: server, front: try await TLSFrontProxy.start(upstreamPort: server.port, certificates: certificates,
                                                                                 options: options))
        } catch {
            await server.stop()
            throw error
        }
    }

    func endpoint(_ tls: TLSSettings? = nil, host: String = "127.0.0.1") -> WebSocketEndpoint {
        WebSocketEndpoint(host: host, port: front.port, tls: tls ?? TLSSettings(caFile: certificates.caFile),
                          authorization: dittoLogin, timeout: .seconds(5))
    }

    func stop() async {
        await front.stop()
        await server.stop()
    }
}

@Suite("WebSocketConnector with TLS (wss://) through Debian's nginx")
struct TLSConnectorTests {
    @Test("The test CA: the handshake, the upgrade, and frames both ways through TLS")
    func trusted() async throws {
        let ditto = try await TLSDitto.start()
        let established = try await connect(ditto.endpoint())
        #expect(established.stream is TLSStream)
        let channel = FrameChannel(established)
        #expect(try await channel.send("START-SEND-LIVE-COMMANDS") == "START-SEND-LIVE-COMMANDS:ACK")
        let session = try await ditto.server.session(0)
        #expect(session.subject == "nginx:ditto")
        #expect(session.request.value(of: "Host") == "127.0.0.1:\(ditto.front.port)")
        // A frame larger than one TLS record, to the client and back.
        let big = #"{"topic":"org.example/d/things/live/messages/big","headers":{},"path":"/inbox/messages/big","value":""#
            + String(repeating: "x", count: 100_000) + #""}"#
        session.send(big)
        #expect(try await channel.nextText() == big)
        #expect(try await channel.send(big, timeout: .milliseconds(500)) == nil)
        #expect(await eventually(timeout: .seconds(5)) { session.protocolMessages == [big] })
        channel.close()
        await ditto.stop()
    }

    @Test("A CA that did not sign the server's certificate: the TLS stage says why verification failed")
    func wrongCA() async throws {
        let ditto = try await TLSDitto.start()
        let error = try await connectError(ditto.endpoint(TLSSettings(caFile: ditto.certificates.otherCAFile)))
        #expect(error == .failed(.tls, address: "127.0.0.1:\(ditto.front.port)",
                                 reason: "certificate verify failed: unable to get local issuer certificate"))
        #expect(error.description.hasPrefix("the TLS handshake with 127.0.0.1:\(ditto.front.port) failed: certificate verify failed"))
        // insecure: any certificate.
        let established = try await connect(ditto.endpoint(TLSSettings(caFile: ditto.certificates.otherCAFile, insecure: true)))
        established.stream.close()
        #expect(ditto.server.sessions.count == 1)
        await ditto.stop()
    }

    @Test("A certificate for another name: hostname (and IP address) mismatch; accepted with verifyHostname false")
    func nameMismatch() async throws {
        let certificates = try await TestCertificates.make()
        let ditto = try await TLSDitto.start(.init(certificateFile: certificates.otherNameCertFile, keyFile: certificates.otherNameKeyFile),
                                             certificates: certificates)
        let byName = try await connectError(ditto.endpoint(host: "localhost"))
        #expect(byName == .failed(.tls, address: "localhost:\(ditto.front.port)", reason: "certificate verify failed: hostname mismatch"))
        let byAddress = try await connectError(ditto.endpoint())
        #expect(byAddress == .failed(.tls, address: "127.0.0.1:\(ditto.front.port)", reason: "certificate verify failed: IP address mismatch"))
        let unchecked = try await connect(ditto.endpoint(TLSSettings(caFile: certificates.caFile, verifyHostname: false), host: "localhost"))
        unchecked.stream.close()
        await ditto.stop()
    }

    @Test("The server's certificate names localhost: a check of that name passes")
    func hostName() async throws {
        let ditto = try await TLSDitto.start()
        let channel = FrameChannel(try await connect(ditto.endpoint(host: "localhost")))
        #expect(try await channel.send("START-SEND-EVENTS") == "START-SEND-EVENTS:ACK")
        channel.close()
        await ditto.stop()
    }

    @Test("nginx requires a client certificate: without one 400 at the upgrade; with the test client's accepted")
    func clientCertificate() async throws {
        let ditto = try await TLSDitto.start(.init(requireClientCertificate: true))
        let without = try await connectError(ditto.endpoint())
        #expect(without == .refused(status: 400, reason: "Bad Request", address: "127.0.0.1:\(ditto.front.port)"))
        let settings = TLSSettings(caFile: ditto.certificates.caFile, certFile: ditto.certificates.clientCertFile,
                                   keyFile: ditto.certificates.clientKeyFile)
        let channel = FrameChannel(try await connect(ditto.endpoint(settings)))
        #expect(try await channel.send("START-SEND-MESSAGES") == "START-SEND-MESSAGES:ACK")
        channel.close()
        // A key that is not the certificate's: refused before any byte is sent.
        let mismatched = TLSSettings(caFile: ditto.certificates.caFile, certFile: ditto.certificates.clientCertFile,
                                     keyFile: ditto.certificates.serverKeyFile)
        let error = try await connectError(ditto.endpoint(mismatched))
        guard case .failed(.tls, _, let reason) = error else { throw TestFailure("\(error)") }
        #expect(reason.hasPrefix("cannot load the client key") && reason.contains("key values mismatch"), "\(reason)")
        await ditto.stop()
    }

    @Test("TLS 1.3 as the minimum: refused by a server that speaks TLS 1.2 only, accepted by one that speaks 1.3")
    func minimumVersion() async throws {
        let certificates = try await TestCertificates.make()
        let old = try await TLSDitto.start(.init(protocols: ["TLSv1.2"]), certificates: certificates)
        let error = try await connectError(old.endpoint(TLSSettings(caFile: certificates.caFile, version: .tls13)))
        guard case .failed(.tls, _, let reason) = error else { throw TestFailure("\(error)") }
        #expect(reason.contains("protocol version"), "\(reason)")
        let twelve = try await connect(old.endpoint(TLSSettings(caFile: certificates.caFile, version: .tls12)))
        twelve.stream.close()
        await old.stop()
        let current = try await TLSDitto.start(.init(protocols: ["TLSv1.3"]), certificates: certificates)
        let thirteen = try await connect(current.endpoint(TLSSettings(caFile: certificates.caFile, version: .tls13)))
        thirteen.stream.close()
        await current.stop()
    }

    @Test("Through a CONNECT proxy, then TLS with Ditto's name through the tunnel")
    func proxyThenTLS() async throws {
        let ditto = try await TLSDitto.start()
        let proxy = try HTTPConnectProxy()
        var endpoint = ditto.endpoint()
        endpoint.proxy = .init(host: "127.0.0.1", port: proxy.port)
        let channel = FrameChannel(try await connect(endpoint))
        #expect(try await channel.send("START-SEND-LIVE-EVENTS") == "START-SEND-LIVE-EVENTS:ACK")
        #expect(proxy.tunnels == ["127.0.0.1:\(ditto.front.port)"])
        channel.close()
        // The certificate check is Ditto's name's, not the proxy's.
        endpoint.tls = TLSSettings(caFile: ditto.certificates.otherCAFile)
        let error = try await connectError(endpoint)
        #expect(error == .failed(.tls, address: "127.0.0.1:\(ditto.front.port) through the proxy 127.0.0.1:\(proxy.port)",
                                 reason: "certificate verify failed: unable to get local issuer certificate"))
        await proxy.stop()
        await ditto.stop()
    }

    @Test("A server that accepts and never answers the ClientHello: timed out in the TLS stage, the socket closed")
    func handshakeTimeout() async throws {
        let listener = try RawListener.silent()
        let endpoint = WebSocketEndpoint(host: "127.0.0.1", port: listener.port, tls: TLSSettings(), timeout: .milliseconds(300))
        let error = try await connectError(endpoint)
        #expect(error == .timedOut(.tls, address: "127.0.0.1:\(listener.port)", after: .milliseconds(300)))
        #expect(await eventually(timeout: .seconds(5)) { listener.clientCloses == 1 }, "the failed connect closed its socket")
        await listener.stop()
    }

    @Test("nginx stops under an open wss:// stream: writes fail with the system's text, never a SIGPIPE")
    func peerGone() async throws {
        let ditto = try await TLSDitto.start()
        let established = try await connect(ditto.endpoint())
        await ditto.front.stop()
        let outcome = try await writeUntilFailure(established.stream)
        #expect(outcome.reason != nil)
        #expect(!outcome.raisedSIGPIPE)
        established.stream.close()
        await ditto.server.stop()
    }

    @Test("A CA file that does not exist: the TLS stage names it")
    func missingCAFile() async throws {
        let listener = try RawListener.silent()
        let endpoint = WebSocketEndpoint(host: "127.0.0.1", port: listener.port, tls: TLSSettings(caFile: "/nonexistent/ca.crt"),
                                         timeout: .seconds(2))
        let error = try await connectError(endpoint)
        guard case .failed(.tls, _, let reason) = error else { throw TestFailure("\(error)") }
        #expect(reason.hasPrefix("cannot load the CA certificates from /nonexistent/ca.crt"), "\(reason)")
        #expect(await eventually(timeout: .seconds(5)) { listener.clientCloses == 1 }, "the failed connect closed its socket")
        await listener.stop()
    }
}
