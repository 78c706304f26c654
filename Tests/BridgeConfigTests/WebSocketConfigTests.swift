import BridgeConfig
import Foundation
import MQTT
import Testing

/// `connections.ditto` with `transport: websocket`: Ditto's `/ws/2` binding, its keys, defaults, errors and warnings,
/// and what differs from the MQTT connection in `check`.
struct WebSocketConfigTests {
    /// A file whose `connections.ditto` is line 2, `transport: websocket` line 3 and `lines` from line 4 on; `after`
    /// follows the `defaults` line.
    static func yaml(_ lines: [String], after: [String] = []) -> String {
        (["connections:", "  ditto:", "    transport: websocket"] + lines.map { "    " + $0 }
            + ["defaults: { namespace: org.example }"] + after + [
                "uplink:",
                "  - name: t",
                "    topic: \"devices/{deviceId}/t\"",
                "    thing-id: \"{namespace}:{deviceId}\"",
                "    event: { path: /features/t/properties/value }",
            ]).joined(separator: "\n")
    }

    static let url = "url: \"wss://ditto.example.com/ws/2\""

    /// A directory for token and password files, removed by `body`'s end.
    static func withDirectory<T>(_ body: (URL) throws -> T) throws -> T {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("wsconfig-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        return try body(directory)
    }

    static func base64URL(_ text: String) -> String {
        Data(text.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// A JWT as an identity provider issues it (the signature is not checked by the bridge).
    static func jwt(payload: String) -> String {
        base64URL(#"{"alg":"RS256","typ":"JWT"}"#) + "." + base64URL(payload) + "." + base64URL("signature-bytes")
    }

    /// 2100-01-01: a token that is valid for the lifetime of these tests.
    static let validToken = jwt(payload: #"{"sub":"bridge","exp":4102444800}"#)

    static func load(_ yaml: String, environment: [String: String] = [:], baseDirectory: String? = nil) throws
        -> BridgeConfiguration
    {
        try BridgeConfiguration.parse(yaml: yaml, fileName: "test.yaml", environment: environment, baseDirectory: baseDirectory)
    }

    // MARK: - keys and defaults

    @Test func everyKeyIsRead() throws {
        try Self.withDirectory { directory in
            try "-".write(to: directory.appendingPathComponent("ca.pem"), atomically: true, encoding: .utf8)
            try "s3cret\n".write(to: directory.appendingPathComponent("ditto.pass"), atomically: true, encoding: .utf8)
            let c = try Self.load(
                Self.yaml([
                    "url: \"wss://ditto.example.com:8443/api/ws/2?fields=thingId\"",
                    "tls: { ca-file: ca.pem, version: tlsv1.3 }",
                    "username: bridge",
                    "password-file: ditto.pass",
                    "proxy: { url: \"http://proxy.lan:3128\", username: gateway, password-env: PROXY_PASSWORD }",
                    "namespaces: [org.example, org.other]",
                    "rate-limit: 500",
                    "max-inflight: 200",
                    "keepalive: 20s",
                    "connect-timeout: 5s",
                    "reconnect: { initial: 2s, maximum: 1m }",
                ]), environment: ["PROXY_PASSWORD": "proxy-secret"], baseDirectory: directory.path)
            #expect(c.warnings.isEmpty, "\(c.warnings)")
            let ws = try #require(c.connections.ditto.webSocket)
            #expect(c.connections.ditto.broker == nil)
            #expect(ws.url == "wss://ditto.example.com:8443/api/ws/2?fields=thingId")
            #expect(ws.host == "ditto.example.com")
            #expect(ws.port == 8443)
            #expect(ws.path == "/api/ws/2?fields=thingId")
            #expect(ws.tls == TLSSettings(caFile: directory.appendingPathComponent("ca.pem").path, version: .tls13))
            #expect(ws.authentication == .basic(username: "bridge", password: Secret("s3cret"), source: .file("ditto.pass")))
            #expect(ws.proxy == DittoWebSocketConnection.Proxy(
                host: "proxy.lan", port: 3128, username: "gateway", password: Secret("proxy-secret")))
            #expect(ws.namespaces == ["org.example", "org.other"])
            #expect(ws.rateLimit == 500)
            #expect(ws.maxInflight == 200)
            #expect(c.connections.ditto.maxInflight == 200)
            #expect(ws.keepalive == .seconds(20))
            #expect(ws.connectTimeout == .seconds(5))
            #expect(ws.reconnect == ReconnectPolicy(initial: .seconds(2), maximum: .seconds(60)))
            #expect(c.connections.ditto.reconnect == ws.reconnect)
        }
    }

    @Test func defaults() throws {
        let c = try Self.load(Self.yaml(["url: wss://ditto.example.com"]))
        #expect(c.warnings.isEmpty, "\(c.warnings)")
        let ws = try #require(c.connections.ditto.webSocket)
        #expect(ws == DittoWebSocketConnection(
            url: "wss://ditto.example.com", tls: TLSSettings(), host: "ditto.example.com", port: 443, path: "/ws/2"))
        #expect(ws.authentication == .none)
        #expect(ws.proxy == nil)
        #expect(ws.namespaces.isEmpty)
        #expect(ws.rateLimit == nil)
        #expect(ws.maxInflight == 1_000)
        #expect(ws.keepalive == .seconds(10))
        #expect(ws.connectTimeout == .seconds(10))
        #expect(ws.reconnect == ReconnectPolicy(initial: .seconds(1), maximum: .seconds(30)))
        // The ditto block's MQTT settings keep their defaults, unused; the connection id still names the labels.
        #expect(c.ditto.connectionID == "edge-bridge")
        #expect(c.acks.all == ["edge-bridge:delivered", "edge-bridge:answered"])
        // Without transport, connections.ditto stays MQTT.
        let mqtt = try Self.load(Self.yaml([]).replacingOccurrences(of: "    transport: websocket", with: "    host: broker.lan"))
        #expect(mqtt.connections.ditto.broker?.host == "broker.lan")
        #expect(mqtt.connections.ditto.webSocket == nil)
        let explicit = try Self.load(
            Self.yaml(["host: broker.lan"]).replacingOccurrences(of: "transport: websocket", with: "transport: mqtt"))
        #expect(explicit.connections.ditto.broker?.host == "broker.lan")
    }

    @Test(arguments: [
        ("ws://127.0.0.1:8080", "127.0.0.1", 8080, "/ws/2", false),
        ("ws://localhost/", "localhost", 80, "/ws/2", false),
        ("ws://[::1]:9000?x=1", "::1", 9000, "/ws/2?x=1", false),
        ("WSS://Ditto.Example.com/ws/2?namespaces=a", "Ditto.Example.com", 443, "/ws/2?namespaces=a", true),
        ("wss://10.0.0.5:8443/ditto/ws/2", "10.0.0.5", 8443, "/ditto/ws/2", true),
    ])
    func urls(text: String, host: String, port: Int, path: String, secure: Bool) throws {
        let c = try Self.load(Self.yaml(["url: \"\(text)\""]))
        let ws = try #require(c.connections.ditto.webSocket)
        #expect(ws.host == host)
        #expect(ws.port == port)
        #expect(ws.path == path)
        #expect((ws.tls != nil) == secure)
        #expect(c.warnings.isEmpty, "\(c.warnings)")
    }

    @Test func tokenFileIsResolvedAndChecked() throws {
        try Self.withDirectory { directory in
            try (Self.validToken + "\n").write(to: directory.appendingPathComponent("ditto.jwt"), atomically: true, encoding: .utf8)
            let c = try Self.load(Self.yaml([Self.url, "token-file: ditto.jwt"]), baseDirectory: directory.path)
            #expect(c.warnings.isEmpty, "\(c.warnings)")
            #expect(c.connections.ditto.webSocket?.authentication == .bearer(tokenFile: directory.appendingPathComponent("ditto.jwt").path))
        }
    }

    // MARK: - errors, each with its line and key path

    @Test func urlErrors() {
        expectSingleError(
            Self.yaml(["url: \"http://ditto.example.com/ws/2\""]), line: 4, keyPath: "connections.ditto.url",
            message: "the scheme 'http' is not ws:// or wss://", hint: "wss://ditto.example.com/ws/2")
        expectSingleError(
            Self.yaml(["url: \"wss://:443/ws/2\""]), line: 4, keyPath: "connections.ditto.url", message: "it names no host")
        expectSingleError(
            Self.yaml(["url: \"wss://ditto.example.com:0/ws/2\""]), line: 4, keyPath: "connections.ditto.url",
            message: "'0' is not a port")
        expectSingleError(
            Self.yaml(["url: \"wss://ditto.example.com/ws/2#top\""]), line: 4, keyPath: "connections.ditto.url",
            message: "a fragment")
        expectSingleError(
            Self.yaml(["url: \"wss://ditto example.com/ws/2\""]), line: 4, keyPath: "connections.ditto.url",
            message: "is not a host name or address")
    }

    @Test func credentialsInTheURLAreRefusedWithoutQuotingThem() {
        for url in ["wss://bridge:pa55word@ditto.example.com/ws/2", "wss://bridge:pa/55word@ditto.example.com/ws/2"] {
            let yaml = Self.yaml(["url: \"\(url)\""])
            expectSingleError(
                yaml, line: 4, keyPath: "connections.ditto.url", message: "the URL holds credentials (user:password@)",
                hint: "password-file")
            let (errors, _) = Fixture.diagnose(yaml)
            #expect(!errors.description.contains("55word"), "\(errors)")
        }
    }

    @Test func missingURL() {
        expectSingleError(
            Self.yaml(["keepalive: 5s"]), line: 3, keyPath: "connections.ditto.url", message: "missing required key 'url'",
            hint: "wss://ditto.example.com/ws/2")
    }

    @Test func unknownTransport() {
        expectSingleError(
            Self.yaml([Self.url]).replacingOccurrences(of: "transport: websocket", with: "transport: websockets"),
            line: 3, keyPath: "connections.ditto.transport", message: "'websockets' is not one of: mqtt, websocket",
            hint: "did you mean 'websocket'?")
    }

    @Test func mqttKeysUnderWebSocketAndWebSocketKeysUnderMQTT() {
        expectSingleError(
            Self.yaml([Self.url, "client-id: bridge-1"]), line: 5, keyPath: "connections.ditto.client-id",
            message: "'client-id' is a key of MQTT connections; transport: websocket does not take it")
        expectSingleError(
            Self.yaml([Self.url, "host: ditto.example.com"]), line: 5, keyPath: "connections.ditto.host",
            message: "'host' is a key of MQTT connections")
        let mqtt = Self.yaml(["host: broker.lan", "namespaces: [org.example]"])
            .replacingOccurrences(of: "transport: websocket", with: "transport: mqtt")
        expectSingleError(
            mqtt, line: 5, keyPath: "connections.ditto.namespaces",
            message: "'namespaces' is a key of Ditto's WebSocket binding; this connection is MQTT", hint: "transport: websocket")
        expectSingleError(
            "connections:\n  device:\n    host: broker.lan\n    transport: websocket\nuplink: []", line: 4,
            keyPath: "connections.device.transport", message: "'transport' is a key of connections.ditto only")
    }

    @Test func basicAndTokenTogether() throws {
        try Self.withDirectory { directory in
            try Self.validToken.write(to: directory.appendingPathComponent("ditto.jwt"), atomically: true, encoding: .utf8)
            expectSingleError(
                Self.yaml([Self.url, "username: bridge", "password-env: DITTO_PASSWORD", "token-file: ditto.jwt"]), line: 7,
                keyPath: "connections.ditto.token-file",
                message: "'token-file' and 'username' both authenticate: Ditto takes a bearer token or Basic, not both",
                environment: ["DITTO_PASSWORD": "x"], baseDirectory: directory.path)
        }
    }

    @Test func basicNeedsAPasswordAndAPasswordAUsername() {
        expectSingleError(
            Self.yaml([Self.url, "username: bridge"]), line: 5, keyPath: "connections.ditto.username",
            message: "Basic authentication needs a password")
        expectSingleError(
            Self.yaml([Self.url, "password-env: DITTO_PASSWORD"]), line: 5, keyPath: "connections.ditto.password-env",
            message: "a password needs a username", environment: ["DITTO_PASSWORD": "x"])
        expectSingleError(
            Self.yaml([Self.url, "username: bridge", "password-env: DITTO_PASSWORD", "password-file: /nonexistent"]), line: 6,
            keyPath: "connections.ditto.password-env", message: "'password-file' and 'password-env' both give the password")
    }

    @Test func missingTokenFile() throws {
        try Self.withDirectory { directory in
            expectSingleError(
                Self.yaml([Self.url, "token-file: ditto.jwt"]), line: 5, keyPath: "connections.ditto.token-file",
                message: "'\(directory.appendingPathComponent("ditto.jwt").path)' does not exist", baseDirectory: directory.path)
        }
    }

    @Test(arguments: [
        ("not-a-jwt", "it has 1 part separated by '.', a JWT has 3"),
        ("a.b.c.d", "it has 4 parts"),
        ("", "it is empty"),
        ("ey*J.eyJ9.sig", "its header is not base64url"),
        ("\(WebSocketConfigTests.base64URL("[1]")).\(WebSocketConfigTests.base64URL("{}")).", "its header is not a JSON object"),
        ("\(WebSocketConfigTests.base64URL("{}")).\(WebSocketConfigTests.base64URL("hello")).", "its payload is not a JSON object"),
        ("\(WebSocketConfigTests.base64URL("{}")).\(WebSocketConfigTests.base64URL(#"{"exp":"soon"}"#)).c2ln", "its exp claim is not a number"),
    ])
    func malformedToken(content: String, problem: String) throws {
        try Self.withDirectory { directory in
            let file = directory.appendingPathComponent("ditto.jwt")
            try content.write(to: file, atomically: true, encoding: .utf8)
            let yaml = Self.yaml([Self.url, "token-file: ditto.jwt"])
            expectSingleError(
                yaml, line: 5, keyPath: "connections.ditto.token-file",
                message: "'\(file.path)' does not hold a JWT: \(problem)", hint: "three base64url parts",
                baseDirectory: directory.path)
            if content.count > 3 {
                let (errors, _) = Fixture.diagnose(yaml, baseDirectory: directory.path)
                #expect(!errors.description.contains(content), "\(errors)")
            }
        }
    }

    @Test func expiredTokenIsAWarningThatDoesNotShowTheToken() throws {
        try Self.withDirectory { directory in
            let token = Self.jwt(payload: #"{"sub":"bridge","exp":1600000000.5}"#)
            let file = directory.appendingPathComponent("ditto.jwt")
            try token.write(to: file, atomically: true, encoding: .utf8)
            let c = try Self.load(Self.yaml([Self.url, "token-file: ditto.jwt"]), baseDirectory: directory.path)
            #expect(c.connections.ditto.webSocket?.authentication == .bearer(tokenFile: file.path))
            #expect(c.warnings.count == 1, "\(c.warnings)")
            let warning = try #require(c.warnings.first)
            #expect(warning.line == 5)
            #expect(warning.keyPath == "connections.ditto.token-file")
            #expect(warning.message == "the token in '\(file.path)' expired at 2020-09-13T12:26:40Z: Ditto refuses it")
            #expect(!warning.description.contains(token))
        }
    }

    @Test func badNamespaces() {
        expectSingleError(
            Self.yaml([Self.url, "namespaces:", "  - org.example", "  - 1bad"]), line: 7,
            keyPath: "connections.ditto.namespaces[1]", message: "'1bad' is not a valid Ditto namespace",
            hint: "letter-started parts")
        expectSingleError(
            Self.yaml([Self.url, "namespaces: [org.example, org.example]"]), line: 5,
            keyPath: "connections.ditto.namespaces[1]", message: "namespace 'org.example' is listed twice")
        expectSingleError(
            Self.yaml([Self.url, "namespaces: org.example"]), line: 5, keyPath: "connections.ditto.namespaces",
            message: "expected a list (Ditto namespaces)")
    }

    @Test func ranges() {
        for (line, key, message) in [
            ("rate-limit: 0", "rate-limit", "0 is out of range; allowed: 1 to 1000000"),
            ("rate-limit: 1000001", "rate-limit", "1000001 is out of range; allowed: 1 to 1000000"),
            ("max-inflight: 65536", "max-inflight", "65536 is out of range; allowed: 1 to 65535"),
            ("keepalive: 500ms", "keepalive", "500ms is out of range; allowed: 1s to 1h"),
            ("keepalive: 2h", "keepalive", "2h is out of range; allowed: 1s to 1h"),
            ("connect-timeout: 10", "connect-timeout", "invalid duration '10'"),
            ("reconnect: { initial: 10s, maximum: 1s }", "reconnect.maximum", "maximum (1s) is shorter than initial (10s)"),
        ] {
            expectSingleError(Self.yaml([Self.url, line]), line: 5, keyPath: "connections.ditto.\(key)", message: message)
        }
    }

    @Test func proxyErrors() {
        expectSingleError(
            Self.yaml([Self.url, "proxy:", "  username: gateway", "  password-env: PROXY_PASSWORD"]), line: 6,
            keyPath: "connections.ditto.proxy.url", message: "missing required key 'url'", environment: ["PROXY_PASSWORD": "x"])
        // Each on line 5, `proxy: { ... }`.
        for (proxy, key, message) in [
            (#"url: "http://:3128""#, "url", "it names no host"),
            (#"url: "https://proxy.lan:3128""#, "url", "the scheme 'https' is not http://"),
            (#"url: "http://gw:secret@proxy.lan:3128""#, "url", "the URL holds credentials"),
            (#"url: "http://proxy.lan:3128/x""#, "url", "a proxy URL has no path or query"),
            (#"url: "http://proxy.lan", username: gateway"#, "username", "Proxy-Authorization needs a password"),
            (#"url: "http://proxy.lan", password: x"#, "password", "unknown key 'password'"),
        ] {
            expectSingleError(
                Self.yaml([Self.url, "proxy: { \(proxy) }"]), line: 5, keyPath: "connections.ditto.proxy.\(key)",
                message: message)
        }
    }

    @Test func proxyPortDefaultsToHTTPs() throws {
        let c = try Self.load(Self.yaml([Self.url, "proxy: { url: \"http://proxy.lan\" }"]))
        #expect(c.connections.ditto.webSocket?.proxy == DittoWebSocketConnection.Proxy(host: "proxy.lan", port: 80))
    }

    @Test func tlsOnlyWithWSS() {
        expectSingleError(
            Self.yaml(["url: \"ws://127.0.0.1:8080/ws/2\"", "tls: true"]), line: 5, keyPath: "connections.ditto.tls",
            message: "tls needs a wss:// URL")
        expectSingleError(
            Self.yaml([Self.url, "tls: false"]), line: 5, keyPath: "connections.ditto.tls",
            message: "a wss:// URL always uses TLS; tls: false contradicts it")
    }

    @Test(arguments: ["publish-topic: \"ditto/in/{thingId}\"", "subscribe-filter: \"ditto/out/#\"", "reply-topic: \"x/{thingId}\"", "qos: 0"])
    func mqttTopicSettingsMeanNothingOverWebSocket(setting: String) throws {
        let key = String(setting.prefix { $0 != ":" })
        let yaml = Self.yaml([Self.url], after: ["ditto:", "  connection-id: gateway-7", "  \(setting)"])
        expectSingleError(
            yaml, line: 8, keyPath: "ditto.\(key)",
            message: "'\(key)' is a setting of the MQTT connection to Ditto; with connections.ditto.transport: websocket it means nothing")
        // The connection id is still read: it renders {connectionId} in acknowledgement labels.
        let c = try Self.load(Self.yaml([Self.url], after: ["ditto:", "  connection-id: gateway-7"]))
        #expect(c.ditto.connectionID == "gateway-7")
        #expect(c.acks.all == ["gateway-7:delivered", "gateway-7:answered"])
    }

    // MARK: - acknowledgement labels

    @Test func ackLabelsNeedNoConnectionPrefixOverWebSocket() throws {
        let c = try Self.load(Self.yaml([Self.url], after: ["acks: { delivered: device-delivered, answered: \"{connectionId}-answered\" }"]))
        #expect(c.acks.delivered == "device-delivered")
        #expect(c.acks.answered == "edge-bridge-answered")
        // Over MQTT Ditto's connection still refuses them.
        let mqtt = Self.yaml(["host: broker.lan"], after: ["acks: { delivered: device-delivered }"])
            .replacingOccurrences(of: "    transport: websocket\n", with: "")
        expectSingleError(
            mqtt, line: 5, keyPath: "acks.delivered", message: "Ditto accepts only labels that start with the connection id and ':'")
    }

    @Test func ackLabelSyntaxAndReservedLabelsStillApplyOverWebSocket() {
        expectSingleError(
            Self.yaml([Self.url], after: ["acks: { delivered: live-response }"]), line: 6, keyPath: "acks.delivered",
            message: "'live-response' is reserved for Ditto itself")
        expectSingleError(
            Self.yaml([Self.url], after: ["acks: { answered: \"answered!\" }"]), line: 6, keyPath: "acks.answered",
            message: "invalid acknowledgement label 'answered!'")
        expectSingleError(
            Self.yaml([Self.url], after: ["acks: { answered: ab }"]), line: 6, keyPath: "acks.answered",
            message: "labels are 3 to 100 characters")
    }

    // MARK: - warnings

    @Test func plainWebSocketToAnotherHostIsAWarningAndSoAreCredentialsOverIt() throws {
        let c = try Self.load(
            Self.yaml(["url: \"ws://ditto.lan:8080/ws/2\"", "username: bridge", "password-env: DITTO_PASSWORD"]),
            environment: ["DITTO_PASSWORD": "x"])
        #expect(c.warnings.count == 2, "\(c.warnings)")
        let clear = try #require(c.warnings.first)
        #expect(clear.line == 4)
        #expect(clear.keyPath == "connections.ditto.url")
        #expect(clear.message == "ws:// to ditto.lan is not encrypted: device data and Ditto's commands travel in clear text")
        #expect(clear.hint?.contains("wss://") == true)
        let basic = try #require(c.warnings.last)
        #expect(basic.line == 5)
        #expect(basic.keyPath == "connections.ditto.username")
        #expect(basic.message.contains("the Basic credentials"))
        #expect(basic.message.contains("travel in clear text over ws:// to ditto.lan"))

        let anonymous = try Self.load(Self.yaml(["url: \"ws://ditto.lan:8080/ws/2\""]))
        #expect(anonymous.warnings.count == 1)
        // On this machine, and with TLS, nothing to warn about.
        for url in ["ws://127.0.0.1:8080/ws/2", "ws://localhost:8080", "ws://[::1]:8080", "wss://ditto.lan/ws/2"] {
            let quiet = try Self.load(
                Self.yaml(["url: \"\(url)\"", "username: bridge", "password-env: DITTO_PASSWORD"]),
                environment: ["DITTO_PASSWORD": "x"])
            #expect(quiet.warnings.isEmpty, "\(url): \(quiet.warnings)")
        }
    }

    @Test func defaultNamespaceOutsideTheSubscribedOnesIsAWarning() throws {
        let c = try Self.load(Self.yaml([Self.url, "namespaces: [org.other]"]))
        #expect(c.warnings.count == 1, "\(c.warnings)")
        let warning = try #require(c.warnings.first)
        #expect(warning.line == 5)
        #expect(warning.keyPath == "connections.ditto.namespaces")
        #expect(warning.message.contains("defaults.namespace 'org.example' is not among the namespaces subscribed to"))
        let covered = try Self.load(Self.yaml([Self.url, "namespaces: [org.other, org.example]"]))
        #expect(covered.warnings.isEmpty)
    }

    @Test func sameBrokerLoopChecksAreMQTTOnly() throws {
        func yaml(ditto: String) -> String {
            """
            connections:
              device: { host: 127.0.0.1 }
              ditto: { \(ditto) }
            defaults: { namespace: org.example }
            uplink:
              - name: t
                topic: "ditto/in/{deviceId}"
                thing-id: "{namespace}:{deviceId}"
                event: { path: /features/t/properties/value }
            """
        }
        // On one broker the rule would read the bridge's own publishes to Ditto.
        expectSingleError(
            yaml(ditto: "host: 127.0.0.1"), line: 7, keyPath: "uplink[0].topic",
            message: "also matches the Ditto-side topic ditto.publish-topic")
        // Over WebSocket no Ditto-side topic lives on the device broker.
        let c = try Self.load(yaml(ditto: "transport: websocket, url: \"wss://ditto.example.com\""))
        #expect(c.warnings.isEmpty, "\(c.warnings)")
    }
}

/// The token type `check` and the WebSocket side both read token files with.
struct JSONWebTokenTests {
    @Test func readsTheExpiryAndKeepsTheToken() throws {
        let text = WebSocketConfigTests.jwt(payload: #"{"sub":"a","exp":1700000000}"#)
        let token = try JSONWebToken(parsing: "  \(text)\n")
        #expect(token.token.value == text)
        #expect(token.expiration == 1_700_000_000)
        #expect("\(token.token)" == "<redacted>")
        #expect(try JSONWebToken(parsing: WebSocketConfigTests.jwt(payload: #"{"sub":"a"}"#)).expiration == nil)
        #expect(try JSONWebToken(parsing: WebSocketConfigTests.jwt(payload: #"{"exp":1700000000.9}"#)).expiration == 1_700_000_000)
    }

    @Test func refusesWhatIsNotAJWTWithoutQuotingIt() {
        for text in ["secret-token", "a..b", "eyJ=.eyJ9.x", "Zm9v.YmFy.c2ln"] {
            #expect(throws: JSONWebToken.ParseError.self) { try JSONWebToken(parsing: text) }
            do {
                _ = try JSONWebToken(parsing: text)
            } catch {
                #expect(!error.message.contains(text), "\(error)")
            }
        }
    }
}
