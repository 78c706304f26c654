import Foundation
import MosquittoTestSupport
import Testing

/// Config/ditto/nginx.conf in a real nginx (Debian's) in front of a stub of Ditto's gateway that records what
/// reaches it. The config is the shipped file with mechanical rewrites only: the listen port, the `gateway:8080`
/// upstream, and the pid, log and temp paths into a temp directory; nginx.htpasswd sits next to it as in the
/// compose service's /etc/nginx.
struct NginxTests {
    static let demoUser = SNHTTP.basic("ditto", "ditto")
    static let devops = SNHTTP.basic("devops", "foobar")
    static let thing = "/api/2/things/org.example:sensor-1"

    /// The shipped config with the rewrites above; throws when a rewrite finds nothing to rewrite.
    static func config(port: Int, upstreamPort: Int, directory: SNTempDirectory) throws -> String {
        var text = try SNRepository.text("Config/ditto/nginx.conf")
        guard text.components(separatedBy: "listen 80;").count == 2 else { throw TestFailure("nginx.conf: not one 'listen 80;'") }
        text = text.replacingOccurrences(of: "listen 80;", with: "listen 127.0.0.1:\(port);")
        guard text.contains("http://gateway:8080") else { throw TestFailure("nginx.conf: no http://gateway:8080 upstream") }
        text = text.replacingOccurrences(of: "http://gateway:8080", with: "http://127.0.0.1:\(upstreamPort)")
        guard text.components(separatedBy: "\nhttp {\n").count == 2 else { throw TestFailure("nginx.conf: not one 'http {' line") }
        let paths = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
            .map { "  \($0)_temp_path \(directory.file("\($0)-temp"));" }.joined(separator: "\n")
        text = text.replacingOccurrences(
            of: "\nhttp {\n", with: "\nhttp {\n  access_log \(directory.file("access.log"));\n\(paths)\n")
        return "pid \(directory.file("nginx.pid"));\nerror_log \(directory.file("error.log"));\n" + text
    }

    /// nginx with the shipped config and htpasswd in front of a fresh upstream stub; both stopped afterwards.
    static func withNginx(_ body: (_ port: Int, _ upstream: UpstreamStub) async throws -> Void) async throws {
        let directory = try SNTempDirectory("nginx")
        let upstream = try await UpstreamStub(in: directory)
        var nginx: NginxServer?
        do {
            let port = try TestBroker.freePort()
            _ = try directory.write(try SNRepository.text("Config/ditto/nginx.htpasswd"), to: "nginx.htpasswd")
            nginx = try await NginxServer(config: try config(port: port, upstreamPort: upstream.port, directory: directory),
                                          port: port, directory: directory)
            try await body(port, upstream)
            await nginx?.stop()
            await upstream.stop()
            directory.remove()
        } catch {
            await nginx?.stop()
            await upstream.stop()
            print("nginx test: kept \(directory.path) (config, logs, upstream-requests.jsonl)")
            throw error
        }
    }

    // MARK: - /api: nginx authenticates, Ditto trusts x-ditto-pre-authenticated

    @Test("README: GET /api/2/things/... with -u ditto:ditto reaches the gateway as nginx:ditto, without the Authorization header")
    func apiWithTheDemoUser() async throws {
        try await Self.withNginx { port, upstream in
            let response = try await SNHTTP.request("GET", Self.thing, port: port, headers: [Self.demoUser])
            #expect(response.status == 200, "\(response.status): \(response.body)")
            let requests = try upstream.requests()
            #expect(requests.count == 1)
            let request = try #require(requests.first)
            #expect(request.method == "GET")
            #expect(request.path == Self.thing)
            #expect(request.values("x-ditto-pre-authenticated") == ["nginx:ditto"])
            #expect(request.values("Authorization").isEmpty, "the demo user's password does not travel on")
            #expect(request.values("Host") == ["127.0.0.1:\(port)"])
        }
    }

    @Test("/api without credentials, or with a wrong password: 401 from nginx, nothing reaches the gateway")
    func apiWithoutCredentials() async throws {
        try await Self.withNginx { port, upstream in
            for headers in [[], [SNHTTP.basic("ditto", "wrong")], [SNHTTP.basic("devops", "foobar")],
                            [("x-ditto-pre-authenticated", "nginx:ditto")]] {
                for (method, path) in [("GET", Self.thing), ("PUT", "/api/2/policies/org.example:edge-bridge-demo"),
                                       ("GET", "/api/2/search/things")] {
                    let response = try await SNHTTP.request(method, path, port: port, headers: headers,
                                                            body: method == "PUT" ? "{}" : nil)
                    #expect(response.status == 401, "\(method) \(path) with \(headers.map(\.0)): \(response.status)")
                    #expect(response.header("WWW-Authenticate")?.hasPrefix("Basic") == true)
                }
            }
            let reached = try upstream.requests().map(\.path)
            #expect(reached.isEmpty, "\(reached)")
        }
    }

    @Test("A client's own x-ditto-pre-authenticated header is replaced: nobody impersonates another subject")
    func preAuthenticationCannotBeForged() async throws {
        try await Self.withNginx { port, upstream in
            let response = try await SNHTTP.request(
                "GET", Self.thing, port: port,
                headers: [Self.demoUser, ("x-ditto-pre-authenticated", "nginx:admin"), ("X-Ditto-Pre-Authenticated", "integration:x")])
            #expect(response.status == 200)
            let request = try #require(try upstream.requests().first)
            #expect(request.values("x-ditto-pre-authenticated") == ["nginx:ditto"])
        }
    }

    // MARK: - /api/2/connections: Ditto checks the devops user itself

    @Test("docs/DEPLOYMENT.md step 3: PUT /api/2/connections/edge-bridge with -u devops:PASSWORD reaches the gateway with that Authorization, never pre-authenticated")
    func connectionsWithTheDevopsUser() async throws {
        let connection = try SNRepository.text("Config/ditto-connection.json")
        try await Self.withNginx { port, upstream in
            let put = try await SNHTTP.request(
                "PUT", "/api/2/connections/edge-bridge", port: port,
                headers: [Self.devops, ("Content-Type", "application/json")], body: connection)
            #expect(put.status == 200, "\(put.status): \(put.body)")
            // A client that adds the header nginx sets elsewhere: stripped here, Ditto must see the devops login.
            let forged = try await SNHTTP.request(
                "GET", "/api/2/connections/edge-bridge/status", port: port,
                headers: [Self.devops, ("x-ditto-pre-authenticated", "nginx:ditto")])
            #expect(forged.status == 200, "\(forged.status): \(forged.body)")
            let list = try await SNHTTP.request("GET", "/api/2/connections", port: port, headers: [Self.devops])
            #expect(list.status == 200, "\(list.status): \(list.body)")

            let requests = try upstream.requests()
            #expect(requests.map(\.method) == ["PUT", "GET", "GET"])
            #expect(requests.map(\.path) == ["/api/2/connections/edge-bridge", "/api/2/connections/edge-bridge/status",
                                             "/api/2/connections"])
            for request in requests {
                #expect(request.values("Authorization") == [Self.devops.1], "\(request.path)")
                #expect(request.values("x-ditto-pre-authenticated").isEmpty, "\(request.path): \(request.headers)")
            }
        }
    }

    @Test("Only /api/2/connections and below skip nginx's login: look-alike and dot-dot paths still need it")
    func connectionsLookAlikesNeedTheLogin() async throws {
        try await Self.withNginx { port, upstream in
            for path in ["/api/2/connectionsX", "/api/2/connections-list", "/api/2/connections/../things/org.example:sensor-1",
                         "/api/2/connections/%2e%2e/things/org.example:sensor-1",
                         "/api/2/connections/..%2fthings/org.example:sensor-1", "/api/2/things/org.example:sensor-1?x=/api/2/connections/"] {
                let response = try await SNHTTP.request("GET", path, port: port,
                                                        headers: [("x-ditto-pre-authenticated", "nginx:ditto")])
                #expect(response.status == 401, "\(path): \(response.status)")
            }
            let reached = try upstream.requests().map(\.path)
            #expect(reached.isEmpty, "\(reached)")
        }
    }

    // MARK: - /ws, /health and Ditto's other gateway routes

    @Test("/ws: the WebSocket upgrade headers reach the gateway with nginx:ditto; without a login 401")
    func webSocketUpgrade() async throws {
        try await Self.withNginx { port, upstream in
            let upgrade = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13"),
                           ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]
            let denied = try await SNHTTP.request("GET", "/ws/2", port: port, headers: upgrade)
            #expect(denied.status == 401)
            #expect(try upstream.requests().isEmpty)
            let response = try await SNHTTP.request("GET", "/ws/2", port: port,
                                                    headers: upgrade + [Self.demoUser, ("x-ditto-pre-authenticated", "nginx:admin")])
            #expect(response.status == 200, "the stub answers 200 instead of 101")
            let request = try #require(try upstream.requests().first)
            #expect(request.path == "/ws/2")
            #expect(request.values("Upgrade") == ["websocket"])
            #expect(request.values("Connection").map { $0.lowercased() } == ["upgrade"])
            #expect(request.values("Sec-WebSocket-Key") == ["dGhlIHNhbXBsZSBub25jZQ=="])
            #expect(request.values("x-ditto-pre-authenticated") == ["nginx:ditto"])
            #expect(request.values("Authorization").isEmpty)
        }
    }

    @Test("/health, /status, /stats and /devops reach the gateway without nginx's login (Ditto checks its own), never pre-authenticated")
    func gatewayRoutesWithoutTheLogin() async throws {
        try await Self.withNginx { port, upstream in
            // (path asked, path the gateway gets): Ditto's nginx.conf maps /status to /overall/status.
            let routes = [("/health", "/health"), ("/status", "/overall/status"), ("/stats/things", "/stats/things"),
                          ("/devops/logging", "/devops/logging")]
            for (path, _) in routes {
                let response = try await SNHTTP.request(
                    "GET", path, port: port, headers: [Self.devops, ("x-ditto-pre-authenticated", "nginx:ditto")])
                #expect(response.status == 200, "\(path): \(response.status)")
            }
            let health = try await SNHTTP.request("GET", "/health", port: port)
            #expect(health.status == 200, "/health needs no login at all")
            let requests = try upstream.requests()
            #expect(requests.map(\.path) == routes.map(\.1) + ["/health"])
            for request in requests.prefix(routes.count) {
                #expect(request.values("Authorization") == [Self.devops.1], "\(request.path)")
                #expect(request.values("x-ditto-pre-authenticated").isEmpty, "\(request.path)")
            }
        }
    }
}
