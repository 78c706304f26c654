import DittoProtocol
import Foundation
import MQTT
import Yams

extension ConfigLoader {
    /// `connections.ditto`: `transport` chooses the binding, and each binding takes its own keys.
    func dittoConnection(_ v: YAMLValue) -> DittoConnection {
        var transport = "mqtt"
        if let t = reader.peekMapping(v)?["transport"] {
            // The rest would be read against the wrong key set: one error is clearer than a list of unknown keys.
            guard let choice = reader.choice(t, ["mqtt", "websocket"]) else {
                return .mqtt(defaultConnection(clientID: "ditto-bridge-ditto"))
            }
            transport = choice
        }
        if transport == "websocket" { return .webSocket(webSocketConnection(v)) }
        return .mqtt(
            connection(
                v, role: "ditto", defaultClientID: "ditto-bridge-ditto", keys: ConfigSchema.dittoMQTT,
                misplaced: { key in
                    ConfigSchema.dittoWebSocket.contains(key)
                        ? ("'\(key)' is a key of Ditto's WebSocket binding; this connection is MQTT (transport: mqtt, the default)",
                           "write transport: websocket to connect to Ditto's /ws/2 endpoint, or remove '\(key)'")
                        : nil
                }))
    }

    /// `connections.ditto` with `transport: websocket`.
    func webSocketConnection(_ v: YAMLValue) -> DittoWebSocketConnection {
        var c = DittoWebSocketConnection(url: "", tls: nil, host: "", port: 443, path: EndpointURL.dittoWebSocketPath)
        guard
            let m = reader.mapping(
                v, keys: ConfigSchema.dittoWebSocket,
                misplaced: { key in
                    ConfigSchema.connection.contains(key)
                        ? ("'\(key)' is a key of MQTT connections; transport: websocket does not take it",
                           "remove it; the WebSocket keys are \(ConfigSchema.dittoWebSocket.joined(separator: ", "))")
                        : nil
                })
        else { return c }

        // nil: the URL is missing or wrong (reported), so whether it is wss:// is unknown.
        var secure: Bool?
        if let u = m["url"] {
            if let text = expanded(u), let url = endpointURL(text, at: u, schemes: ["ws": 80, "wss": 443]) {
                c.url = text
                c.host = url.host
                c.port = url.port
                c.path = url.target == "" || url.target == "/" ? EndpointURL.dittoWebSocketPath
                    : url.target.hasPrefix("?") ? EndpointURL.dittoWebSocketPath + url.target : url.target
                secure = url.scheme == "wss"
            }
        } else if !m.suggestedKeys.contains("url") {
            sink.error(
                v.location, v.child("url"), "missing required key 'url'",
                hint: "Ditto's WebSocket endpoint, e.g. url: wss://ditto.example.com/ws/2")
        }

        if let t = m["tls"] {
            let settings = tls(t)
            if secure == false {
                reader.error(t, "tls needs a wss:// URL", hint: "write wss:// in url (TLS), or remove tls")
            } else if settings == nil, case .scalar = t.node, t.node.tagName == .bool, reader.bool(t) == false {
                reader.error(t, "a wss:// URL always uses TLS; tls: false contradicts it", hint: "remove tls: false, or write ws://")
            } else {
                c.tls = settings
            }
        }
        // wss:// without a tls block: the system's CAs, host name verified.
        if secure == true, c.tls == nil { c.tls = TLSSettings() }

        c.authentication = webSocketAuthentication(m)
        if secure == false, !Self.isLoopback(c.host), let u = m["url"] {
            reader.warning(
                u, "ws:// to \(c.host) is not encrypted: device data and Ditto's commands travel in clear text",
                hint: "use wss:// (TLS); ws:// suits a Ditto on this machine only")
            let credential: (key: String, what: String)? = switch c.authentication {
            case .none: nil
            case .basic: ("username", "the Basic credentials (user name and password, only base64-encoded)")
            case .bearer: ("token-file", "the bearer token")
            }
            if let credential, let at = m[credential.key] {
                reader.warning(
                    at, "\(credential.what) travel in clear text over ws:// to \(c.host): anyone on the path can reuse them",
                    hint: "use wss:// (TLS)")
            }
        }

        if let p = m["proxy"] { c.proxy = proxy(p) }
        if let n = m["namespaces"], let items = reader.sequence(n, what: "Ditto namespaces") {
            for item in items {
                guard let namespace = namespace(item) else { continue }
                if c.namespaces.contains(namespace) {
                    reader.error(item, "namespace '\(namespace)' is listed twice")
                } else {
                    c.namespaces.append(namespace)
                }
            }
        }
        if let r = m["rate-limit"], let limit = reader.int(r, range: 1...1_000_000) { c.rateLimit = limit }
        if let mi = m["max-inflight"], let maximum = reader.int(mi, range: 1...65_535) { c.maxInflight = maximum }
        if let k = m["keepalive"], let keepalive = reader.duration(k, range: .seconds(1)...(.seconds(3600))) {
            c.keepalive = keepalive
        }
        if let t = m["connect-timeout"], let timeout = reader.duration(t, range: .seconds(1)...(.seconds(300))) {
            c.connectTimeout = timeout
        }
        if let r = m["reconnect"] { c.reconnect = reconnectPolicy(r, default: c.reconnect) }
        return c
    }

    /// Basic (`username` and a password) or a bearer token (`token-file`), never both.
    private func webSocketAuthentication(_ m: MappingView) -> DittoWebSocketConnection.Authentication {
        let basicKeys = ["username", "password-file", "password-env", "password"]
        if let tv = m["token-file"] {
            if let basic = basicKeys.first(where: m.has) {
                reader.error(
                    tv, "'token-file' and '\(basic)' both authenticate: Ditto takes a bearer token or Basic, not both",
                    hint: "keep token-file (a JWT), or username with password-file, password-env or password (Basic)")
                return .none
            }
            return bearerTokenFile(tv).map { .bearer(tokenFile: $0) } ?? .none
        }
        let username = m["username"].flatMap { expanded($0) }
        let password = password(in: m, hasUsername: username != nil)
        guard let username, let u = m["username"] else { return .none }
        guard Self.givesPassword(m) else {
            reader.error(
                u, "Basic authentication needs a password",
                hint: "add password-file, password-env or password; or token-file for a bearer token")
            return .none
        }
        guard let (secret, source) = password, let secret else { return .none }
        return .basic(username: username, password: secret, source: source)
    }

    /// The token file's absolute path, after checking that it holds a JWT; a token that has already expired is a
    /// warning (the bridge re-reads the file when it changes). Messages name the file, never the token.
    private func bearerTokenFile(_ v: YAMLValue) -> String? {
        let (path, usable) = existingPath(v)
        guard let path, usable else { return nil }
        guard let bytes = source.contents(atPath: path) else {
            reader.error(v, "'\(path)' is not readable")
            return nil
        }
        do {
            let token = try JSONWebToken(parsing: String(decoding: bytes, as: UTF8.self))
            if let expiration = token.expiration, Double(expiration) < Date().timeIntervalSince1970 {
                let date = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(expiration)))
                reader.warning(
                    v, "the token in '\(path)' expired at \(date): Ditto refuses it",
                    hint: "put a fresh token in the file; the bridge reads it again when it changes")
            }
        } catch {
            reader.error(
                v, "'\(path)' does not hold a JWT: \(error.message)",
                hint: "the file holds one token: three base64url parts joined by '.' (header.payload.signature)")
            return nil
        }
        return path
    }

    /// `proxy`: `url: http://host:port` and optional `Proxy-Authorization` credentials.
    private func proxy(_ v: YAMLValue) -> DittoWebSocketConnection.Proxy? {
        guard let m = reader.mapping(v, keys: ConfigSchema.proxy) else { return nil }
        var proxy: DittoWebSocketConnection.Proxy?
        if let u = m["url"] {
            if let text = expanded(u), let url = endpointURL(text, at: u, schemes: ["http": 80]) {
                if url.target == "" || url.target == "/" {
                    proxy = DittoWebSocketConnection.Proxy(host: url.host, port: url.port)
                } else {
                    reader.error(u, "a proxy URL has no path or query", hint: "write http://HOST:PORT, e.g. http://proxy.example.com:3128")
                }
            }
        } else if !m.suggestedKeys.contains("url") {
            sink.error(
                v.location, v.child("url"), "missing required key 'url'",
                hint: "the proxy's address, e.g. url: http://proxy.example.com:3128")
        }
        let username = m["username"].flatMap { expanded($0) }
        let password = password(in: m, hasUsername: username != nil)
        if username != nil, !Self.givesPassword(m), let u = m["username"] {
            reader.error(u, "Proxy-Authorization needs a password", hint: "add password-file or password-env")
        }
        proxy?.username = username
        proxy?.password = password?.0
        return proxy
    }

    /// Whether a block names a password source (a wrong one is reported where it is read).
    private static func givesPassword(_ m: MappingView) -> Bool {
        ["password-file", "password-env", "password"].contains(where: m.has)
    }

    /// Parses a URL key's text and reports what is wrong with it, never quoting a URL with credentials in it.
    private func endpointURL(_ text: String, at v: YAMLValue, schemes: [String: Int]) -> EndpointURL? {
        do {
            return try EndpointURL(parsing: text, schemes: schemes)
        } catch .credentials {
            reader.error(
                v, "the URL holds credentials (user:password@); they would appear in logs",
                hint: v.path.hasSuffix("proxy.url")
                    ? "write the user name in username and the password in password-file or password-env"
                    : "write the user name in username and the password in password-file or password-env, or use token-file")
        } catch {
            let forms = schemes.keys.sorted().map { "\($0)://" }.joined(separator: " or ")
            reader.error(v, "invalid URL '\(text)': \(error)", hint: "a \(forms) URL such as \(schemes["wss"] != nil ? "wss://ditto.example.com/ws/2" : "http://proxy.example.com:3128")")
        }
        return nil
    }
}

/// `scheme://host[:port][/path][?query]`, as the WebSocket `url` and the proxy `url` are written.
struct EndpointURL: Equatable {
    /// Ditto's WebSocket endpoint (Ditto Protocol version 2), used when the URL names no path.
    static let dittoWebSocketPath = "/ws/2"

    /// Lower case.
    var scheme: String
    /// A name or an address; an IPv6 address without its brackets.
    var host: String
    /// The URL's port, or the scheme's.
    var port: Int
    /// The path and query as written (`""` when the URL ends after the authority).
    var target: String

    enum ParseError: Error, CustomStringConvertible {
        /// `user:password@` (an `@` before the query).
        case credentials
        case other(String)

        var description: String {
            switch self {
            case .credentials: "it holds credentials"
            case .other(let message): message
            }
        }
    }

    init(parsing text: String, schemes: [String: Int]) throws(ParseError) {
        let forms = schemes.keys.sorted().map { "\($0)://" }.joined(separator: " or ")
        guard let separator = text.range(of: "://") else { throw .other("it does not start with \(forms)") }
        let scheme = text[..<separator.lowerBound].lowercased()
        guard let defaultPort = schemes[scheme] else { throw .other("the scheme '\(scheme)' is not \(forms)") }
        let rest = text[separator.upperBound...]
        // Before the query, not only in the authority: a password may hold a '/', and no part of it may be quoted.
        if rest.prefix(while: { $0 != "?" && $0 != "#" }).contains("@") { throw .credentials }
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        let target = String(rest[authorityEnd...])
        if target.contains("#") { throw .other("a fragment (#...) is never sent to the server") }
        if target.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value >= 0x7F }) {
            throw .other("the path holds spaces, control or non-ASCII characters; percent-encode them")
        }
        var host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw .other("'[' without a closing ']'") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw .other("unexpected text after the IPv6 address") }
                portText = after.dropFirst()
            }
            guard host.contains(":"), host.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else {
                throw .other("'\(host)' is not an IPv6 address")
            }
        } else {
            host = authority
            if let colon = authority.firstIndex(of: ":") {
                host = authority[..<colon]
                portText = authority[authority.index(after: colon)...]
                if portText?.contains(":") == true { throw .other("an IPv6 address must be written in brackets") }
            }
            guard host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "." || $0 == "_") })
            else { throw .other("'\(host)' is not a host name or address") }
        }
        guard !host.isEmpty else { throw .other("it names no host") }
        var port = defaultPort
        if let portText {
            guard portText.allSatisfy({ $0.isASCII && $0.isNumber }), let number = Int(portText), (1...65535).contains(number)
            else { throw .other("'\(portText)' is not a port (1–65535)") }
            port = number
        }
        self.scheme = scheme
        self.host = String(host)
        self.port = port
        self.target = target
    }
}
