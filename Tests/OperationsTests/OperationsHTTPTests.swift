import BridgeConfig
import BridgeOperations
import Foundation
import Logging
import MosquittoTestSupport
import Prometheus
import ServiceLifecycle
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The endpoint's own HTTP/1.1 server at the wire: limits, deadlines, strict parsing, keep-alive, IPv6.
/// Every client here is a raw blocking socket on a thread of its own (``onOwnThread``).
struct OperationsHTTPTests {
    static var testCounter: MetricNameDescriptor { MetricNameDescriptor(metricName: "ditto_mqtt_bridge_test", unitName: "total", helpText: "a counter of the tests") }

    static func server(
        _ address: ListenAddress = OperationsServerTests.loopbackAnyPort,
        registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
        limits: OperationsServer.Limits = .standard
    ) throws -> OperationsServer {
        try OperationsServer(
            address: address, registry: registry, logger: .test, readiness: { .notReady("device broker: not connected") },
            limits: limits)
    }

    @Test func aHeadOverTheLimitGets431AndTheServerGoesOn() async throws {
        try await OperationsServerTests.withRunningServer(try Self.server()) { port in
            let oversized = try await onOwnThread {
                let client = try RawHTTPClient(port: port)
                defer { client.close() }
                try client.send("GET /health HTTP/1.1\r\nHost: x\r\nX-Fill: \(String(repeating: "a", count: 9000))\r\n\r\n")
                return try client.readResponse()
            }
            #expect(oversized.status == 431)
            #expect(oversized.headers["connection"] == "close")
            #expect(oversized.body.contains("8192"))

            // Exactly at the limit is still served: 8192 bytes including the final CRLF CRLF.
            let prefix = "GET /health HTTP/1.1\r\nHost: x\r\nX-Fill: "
            let fill = String(repeating: "b", count: 8192 - prefix.utf8.count - 4)
            let atTheLimit = try await onOwnThread {
                let client = try RawHTTPClient(port: port)
                defer { client.close() }
                try client.send(prefix + fill + "\r\n\r\n")
                return try client.readResponse()
            }
            #expect(atTheLimit.status == 200)
            #expect(try await HTTPProbe.get("/health", port: port).status == 200)
        }
    }

    @Test func aSilentClientIsClosedAtTheDeadlineWhileOthersAreServed() async throws {
        // Long enough that the three answers below come well within it even on a loaded machine (a parallel
        // run with builds beside it has taken over 6 s for them), so "served while both held their connections"
        // is not a race.
        let requestTimeout = Duration.seconds(12)
        let limits = OperationsServer.Limits(requestTimeout: requestTimeout)
        try await OperationsServerTests.withRunningServer(try Self.server(limits: limits)) { port in
            // Before the connects, not after the await: the server's deadline cannot start earlier, while the
            // await's return can come late on a busy pool and make the server look early.
            let connected = ContinuousClock.now
            let (silentClient, tricklingClient) = try await onOwnThread {
                (try RawHTTPClient(port: port), try RawHTTPClient(port: port))
            }
            defer {
                silentClient.close()
                tricklingClient.close()
            }
            async let silent = onOwnThread {
                try silentClient.waitForClose()
                return ContinuousClock.now - connected
            }
            async let trickling = onOwnThread {
                // Slowloris: a byte of a valid head every 100 ms never completes within the deadline.
                for byte in "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".utf8 {
                    guard tricklingClient.trySend([byte]) else { break }
                    usleep(100_000)
                }
                try tricklingClient.waitForClose()
                return ContinuousClock.now - connected
            }
            // Served meanwhile, while both hold their connections.
            for _ in 0..<3 {
                let health = try await HTTPProbe.get("/health", port: port)
                #expect(health.status == 200)
            }
            let served = ContinuousClock.now - connected
            let silentFor = try await silent
            let tricklingFor = try await trickling
            #expect(served < silentFor, "served after \(served), the silent client closed after \(silentFor)")
            let earliest = requestTimeout - .milliseconds(500)
            let latest = requestTimeout + .seconds(10)
            #expect(silentFor >= earliest && silentFor < latest, "\(silentFor)")
            #expect(tricklingFor >= earliest && tricklingFor < latest, "\(tricklingFor)")
        }
    }

    @Test func connectionsBeyondTheLimitGet503AndServingGoesOnOnceTheyClose() async throws {
        let limits = OperationsServer.Limits(maxConnections: 3)
        try await OperationsServerTests.withRunningServer(try Self.server(limits: limits)) { port in
            let idle = try await onOwnThread { try (0..<3).map { _ in try RawHTTPClient(port: port) } }
            let refused = try await onOwnThread {
                // The answer comes without a request: the server refuses as it accepts. (A request already
                // sent is read first; one sent after the close would make the kernel reset the connection.)
                let client = try RawHTTPClient(port: port)
                defer { client.close() }
                let answer = try client.readResponse()
                try client.waitForClose()
                return answer
            }
            #expect(refused.status == 503)
            #expect(refused.headers["connection"] == "close")
            // The open ones are still served.
            let stillServed = try await onOwnThread {
                try idle[0].send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                return try idle[0].readResponse()
            }
            #expect(stillServed.status == 200)
            for client in idle { client.close() }
            // Their closes free the slots: a new client is served (the closes may take a moment to be seen).
            var status = 0
            for _ in 0..<50 where status != 200 {
                status = try await HTTPProbe.get("/health", port: port).status
                if status != 200 { try await Task.sleep(for: .milliseconds(20)) }
            }
            #expect(status == 200)
        }
    }

    @Test func headHasTheGetHeadersAndNoBody() async throws {
        let registry = PrometheusCollectorRegistry()
        registry.makeCounter(descriptor: Self.testCounter).increment()
        try await OperationsServerTests.withRunningServer(try Self.server(registry: registry)) { port in
            let (getMetrics, headMetrics, headHealth, afterHead) = try await onOwnThread {
                let client = try RawHTTPClient(port: port)
                defer { client.close() }
                try client.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                let getMetrics = try client.readResponse()
                try client.send("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                let headMetrics = try client.readResponse(head: true)
                try client.send("HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n")
                let headHealth = try client.readResponse(head: true)
                // Had the HEAD answers carried a body, this answer would start with it.
                try client.send("GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
                let afterHead = try client.readResponse()
                return (getMetrics, headMetrics, headHealth, afterHead)
            }
            #expect(getMetrics.status == 200)
            #expect(getMetrics.body.contains("ditto_mqtt_bridge_test_total 1"))
            #expect(headMetrics.status == 200)
            #expect(headMetrics.headers["content-length"] == "\(getMetrics.body.utf8.count)")
            #expect(headMetrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
            #expect(headMetrics.headers["cache-control"] == "no-store")
            #expect(headHealth.status == 200)
            #expect(headHealth.headers["content-length"] == "3")
            #expect(afterHead.status == 503)
            #expect(afterHead.body == "not ready: device broker: not connected\n")
        }
    }

    @Test func otherMethodsGet405WithAllow() async throws {
        try await OperationsServerTests.withRunningServer(try Self.server()) { port in
            let (post, nextOnSameConnection, postWithBody, bodyConnectionClosed) = try await onOwnThread {
                let client = try RawHTTPClient(port: port)
                defer { client.close() }
                try client.send("DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                let post = try client.readResponse()
                try client.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                let next = try client.readResponse()

                // A body is never read: the answer closes the connection instead of parsing the body as a request.
                let other = try RawHTTPClient(port: port)
                defer { other.close() }
                let body = "GET /health HTTP/1.1\r\n\r\n"
                try other.send("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body)
                let withBody = try other.readResponse()
                let closed = (try? other.waitForClose()) != nil
                return (post, next, withBody, closed)
            }
            #expect(post.status == 405)
            #expect(post.headers["allow"] == "GET, HEAD")
            #expect(post.headers["connection"] == nil)
            #expect(nextOnSameConnection.status == 200)
            #expect(postWithBody.status == 405)
            #expect(postWithBody.headers["allow"] == "GET, HEAD")
            #expect(postWithBody.headers["connection"] == "close")
            #expect(bodyConnectionClosed)
        }
    }

    @Test(arguments: [
        ("GET  /health HTTP/1.1\r\nHost: x\r\n\r\n", 400, "request line"),
        ("GET /health\r\nHost: x\r\n\r\n", 400, "request line"),
        ("GET health HTTP/1.1\r\nHost: x\r\n\r\n", 400, "not a path"),
        ("GET http://x/health HTTP/1.1\r\nHost: x\r\n\r\n", 400, "not a path"),
        ("GET /health HTTP/1.1 \r\nHost: x\r\n\r\n", 400, "request line"),
        ("GET /he alth HTTP/1.1\r\nHost: x\r\n\r\n", 400, "request line"),
        ("G@T /health HTTP/1.1\r\nHost: x\r\n\r\n", 400, "method"),
        ("GET /health HTTP/1.1\r\n\r\n", 400, "Host"),
        ("GET /health HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400, "Host"),
        ("GET /health HTTP/1.1\r\nHost : x\r\n\r\n", 400, "header name"),
        ("GET /health HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400, "folding"),
        ("GET /health HTTP/1.1\r\nHost: x\r\nNo-Colon\r\n\r\n", 400, "colon"),
        ("GET /health HTTP/1.1\r\nHost: x\u{01}\r\n\r\n", 400, "control character"),
        ("GET /health HTTP/1.1\nHost: x\n\n", 400, "LF without CR"),
        ("GET /health HTTP/1.1\r\nHost: x\rY: z\r\n\r\n", 400, "CR without LF"),
        ("GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 2x\r\n\r\n", 400, "Content-Length"),
        ("GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 400, "no body"),
        ("GET /health HTTP/2.0\r\nHost: x\r\n\r\n", 505, "HTTP/2.0"),
        ("GET /health HTTP/1\r\nHost: x\r\n\r\n", 400, "version"),
        ("GET /health http/1.1\r\nHost: x\r\n\r\n", 400, "version"),
    ])
    func malformedRequestsAreRefused(request: String, status: Int, reason: String) async throws {
        try await OperationsServerTests.withRunningServer(try Self.server()) { port in
            let answer = try await onOwnThread {
                let client = try RawHTTPClient(port: port)
                defer { client.close() }
                try client.send(request)
                let answer = try client.readResponse()
                try client.waitForClose()
                return answer
            }
            #expect(answer.status == status)
            #expect(answer.body.contains(reason), "\(answer.body)")
            #expect(answer.headers["connection"] == "close")
            // One bad client does not disturb the next.
            #expect(try await HTTPProbe.get("/health", port: port).status == 200)
        }
    }

    @Test func thePathIsMatchedWithoutTheQuery() async throws {
        try await OperationsServerTests.withRunningServer(try Self.server()) { port in
            let ready = try await HTTPProbe.get("/ready?x=1", port: port)
            #expect(ready.status == 503)
            #expect(ready.body == "not ready: device broker: not connected\n")
            #expect(try await HTTPProbe.get("/health?", port: port).status == 200)
            #expect(try await HTTPProbe.get("/metrics?name[]=x", port: port).status == 200)
            #expect(try await HTTPProbe.get("/ready/?x=1", port: port).status == 404)
            #expect(try await HTTPProbe.get("/?/ready", port: port).status == 404)
        }
    }

    @Test func keepAliveServesSeveralRequestsOnOneConnection() async throws {
        try await OperationsServerTests.withRunningServer(try Self.server()) { port in
            let answers = try await onOwnThread {
                let client = try RawHTTPClient(port: port)
                defer { client.close() }
                var answers: [HTTPProbeResponse] = []
                try client.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                answers.append(try client.readResponse())
                try client.send("GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
                answers.append(try client.readResponse())
                // Pipelined, with an empty line before the second request line (allowed), in one write.
                try client.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n\r\nGET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
                answers.append(try client.readResponse())
                answers.append(try client.readResponse())
                // The last one asks to close.
                try client.send("GET /health HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n")
                answers.append(try client.readResponse())
                try client.waitForClose()
                return answers
            }
            #expect(answers.map(\.status) == [200, 503, 200, 404, 200])
            #expect(answers.prefix(4).allSatisfy { $0.headers["connection"] == nil })
            #expect(answers[4].headers["connection"] == "close")
            #expect(answers.allSatisfy { $0.headers["date"]?.hasSuffix(" GMT") == true && $0.headers["content-length"] != nil })
        }
    }

    @Test func http10IsAnsweredAndClosed() async throws {
        try await OperationsServerTests.withRunningServer(try Self.server()) { port in
            let answer = try await onOwnThread {
                let client = try RawHTTPClient(port: port)
                defer { client.close() }
                // No Host needed in HTTP/1.0.
                try client.send("GET /health HTTP/1.0\r\n\r\n")
                let answer = try client.readResponse()
                try client.waitForClose()
                return answer
            }
            #expect(answer.status == 200)
            #expect(answer.body == "ok\n")
            #expect(answer.headers["connection"] == "close")
        }
    }

    @Test func aLargeAnswerReachesASlowReader() async throws {
        // About a megabyte of metrics against a 4 KiB receive buffer: the server writes in many parts.
        let registry = PrometheusCollectorRegistry()
        for index in 0..<10_000 {
            registry.makeCounter(descriptor: Self.testCounter, labels: [("series", "s\(index)-\(String(repeating: "x", count: 60))")])
                .increment()
        }
        try await OperationsServerTests.withRunningServer(try Self.server(registry: registry)) { port in
            let answer = try await onOwnThread {
                let client = try RawHTTPClient(port: port, receiveBuffer: 4096)
                defer { client.close() }
                try client.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                usleep(200_000)
                return try client.readResponse()
            }
            #expect(answer.status == 200)
            #expect(answer.body.utf8.count > 700_000)
            #expect(answer.headers["content-length"] == "\(answer.body.utf8.count)")
            #expect(answer.body.contains(#"series="s9999-"#))
        }
    }

    @Test func servesIPv6() async throws {
        let server = try Self.server(ListenAddress(host: "::1", port: 0, family: .ipv6))
        try await OperationsServerTests.withRunningServer(server) { port in
            let bound = try await server.waitUntilListening()
            #expect(bound.family == .ipv6)
            #expect(bound.host == "::1")
            let answer = try await onOwnThread {
                let client = try RawHTTPClient(port: port, ipv6: true)
                defer { client.close() }
                try client.send("GET /health HTTP/1.1\r\nHost: [::1]\r\n\r\n")
                return try client.readResponse()
            }
            #expect(answer.status == 200)
            #expect(answer.body == "ok\n")
            let probed = try await onOwnThread {
                try OperationsProbe.get("/ready", at: ListenAddress(host: "::1", port: port, family: .ipv6), timeoutSeconds: 30)
            }
            #expect(probed.status == 503)
        }
    }

    @Test func gracefulShutdownClosesOpenConnections() async throws {
        // The idle client would hold its connection until this deadline; the stop must not wait for it.
        let requestTimeout = Duration.seconds(60)
        let server = try Self.server(limits: OperationsServer.Limits(requestTimeout: requestTimeout))
        let group = ServiceGroup(configuration: .init(services: [server], gracefulShutdownSignals: [], logger: .test))
        // Bound before the group's tasks run, as in withRunningServer: a busy pool cannot delay the listen.
        let port = try server.start().port
        let running = Task { try await group.run() }
        let idle = try await onOwnThread {
            let client = try RawHTTPClient(port: port)
            try client.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            _ = try client.readResponse()
            return client
        }
        defer { idle.close() }
        let began = ContinuousClock.now
        await group.triggerGracefulShutdown()
        try await running.value
        // A bound far from the deadline, not a tight one: a loaded machine's pool may take seconds to run the stop.
        #expect(ContinuousClock.now - began < requestTimeout / 4)
        try await onOwnThread { try idle.waitForClose() }
        await #expect(throws: OperationsServerError.self) { try await server.waitUntilListening(timeout: 0.1) }
    }

    @Test func aNonLocalAddressIsAClearError() async throws {
        // 192.0.2.1 (TEST-NET-1) is on no interface here: bind fails, nothing is sent anywhere.
        let server = try Self.server(ListenAddress(host: "192.0.2.1", port: 9464, family: .ipv4))
        let error = await #expect(throws: OperationsServerError.self) { try await server.run() }
        #expect(error?.description.contains("cannot listen on 192.0.2.1:9464") == true, "\(String(describing: error))")
        #expect(error?.description.contains("bind failed: Cannot assign requested address") == true, "\(String(describing: error))")
    }

    @Test func aPortInUseOnIPv6IsAClearError() async throws {
        let first = try Self.server(ListenAddress(host: "::1", port: 0, family: .ipv6))
        try await OperationsServerTests.withRunningServer(first) { port in
            let second = try Self.server(ListenAddress(host: "::1", port: port, family: .ipv6))
            let error = await #expect(throws: OperationsServerError.self) { try await second.run() }
            #expect(error?.description.contains("cannot listen on [::1]:\(port)") == true, "\(String(describing: error))")
            #expect(error?.description.contains("Address already in use") == true, "\(String(describing: error))")
        }
    }
}

/// A blocking HTTP/1.1 client that sends exactly the bytes it is given and reads answers by their
/// Content-Length, so several can share a connection. 30 s socket timeouts (the parallel test run).
final class RawHTTPClient: Sendable {
    let fd: Int32

    init(port: Int, ipv6: Bool = false, receiveBuffer: Int32? = nil) throws {
        let fd = socket(ipv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HTTPProbeError.connect("socket: errno \(errno)") }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        if var size = receiveBuffer {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        let result: Int32
        if ipv6 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = in_port_t(UInt16(port).bigEndian)
            address.sin6_addr = in6addr_loopback
            result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        } else {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        guard result == 0 else {
            let reason = String(cString: strerror(errno))
            _ = Glibc.close(fd)
            throw HTTPProbeError.connect(reason)
        }
        self.fd = fd
        buffer = Shared([])
    }

    /// Bytes read past the last answer (the start of the next one).
    private let buffer: Shared<[UInt8]>

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw HTTPProbeError.io("send: \(String(cString: strerror(errno)))") }
            sent += n
        }
    }

    /// Whether the bytes went out (false once the server has closed).
    func trySend(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    private func receive() throws -> [UInt8] {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 { throw HTTPProbeError.io("recv: \(String(cString: strerror(errno)))") }
        return Array(chunk[0..<n])
    }

    /// One answer: the head, then Content-Length bytes of body (none when `head`).
    func readResponse(head: Bool = false) throws -> HTTPProbeResponse {
        var data = buffer.value
        var headEnd: Int?
        while true {
            if let end = Self.find([13, 10, 13, 10], in: data) { headEnd = end; break }
            let more = try receive()
            if more.isEmpty { throw HTTPProbeError.malformed("closed before a whole head: \(String(decoding: data, as: UTF8.self))") }
            data += more
        }
        let headText = String(decoding: data[0..<headEnd!], as: UTF8.self)
        let lines = headText.components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ", maxSplits: 2)
        guard statusParts.count >= 2, statusParts[0] == "HTTP/1.1", let status = Int(statusParts[1]) else {
            throw HTTPProbeError.malformed(lines[0])
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { throw HTTPProbeError.malformed(line) }
            let name = line[..<colon].lowercased()
            guard headers[name] == nil else { throw HTTPProbeError.malformed("\(name) twice") }
            headers[name] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        guard let lengthText = headers["content-length"], let length = Int(lengthText) else {
            throw HTTPProbeError.malformed("no Content-Length: \(headText)")
        }
        let bodyStart = headEnd! + 4
        let bodyLength = head ? 0 : length
        while data.count < bodyStart + bodyLength {
            let more = try receive()
            if more.isEmpty { throw HTTPProbeError.malformed("closed within the body") }
            data += more
        }
        buffer.update { $0 = Array(data[(bodyStart + bodyLength)...]) }
        return HTTPProbeResponse(
            status: status, headers: headers,
            body: String(decoding: data[bodyStart..<(bodyStart + bodyLength)], as: UTF8.self))
    }

    /// Reads until the server closes; throws when it sends bytes instead, or nothing happens for 30 s.
    func waitForClose() throws {
        if !buffer.value.isEmpty { throw HTTPProbeError.malformed("unread bytes before the close") }
        while true {
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return }
            if n < 0 {
                if errno == ECONNRESET { return }
                throw HTTPProbeError.io("recv: \(String(cString: strerror(errno)))")
            }
            throw HTTPProbeError.malformed("bytes instead of a close: \(String(decoding: chunk[0..<n], as: UTF8.self))")
        }
    }

    private let closed = Shared(false)

    /// Closes once, however often it is called (a descriptor number is reused at once).
    func close() {
        if closed.update({ closed in defer { closed = true }; return !closed }) { _ = Glibc.close(fd) }
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for start in 0...(haystack.count - needle.count) where haystack[start..<(start + needle.count)].elementsEqual(needle) {
            return start
        }
        return nil
    }
}
