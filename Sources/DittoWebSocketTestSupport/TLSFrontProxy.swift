import Foundation
#if canImport(Glibc)
import Glibc
#endif
import MosquittoTestSupport

/// TLS in front of a plain server on 127.0.0.1 (a ``DittoWebSocketServer``), as Ditto's nginx terminates `wss://`:
/// Debian's nginx, started for the test on a port of its own and stopped by ``stop()``, forwards each connection
/// over HTTP/1.1 with the `Upgrade` and `Connection` headers.
public final class TLSFrontProxy: Sendable {
    public struct Options: Sendable {
        /// The server certificate and key; by default ``TestCertificates``' for 127.0.0.1 and localhost.
        public var certificateFile: String?
        public var keyFile: String?
        /// nginx's `ssl_verify_client on` with the test CA: a client without a certificate of it gets 400.
        public var requireClientCertificate: Bool
        /// nginx's `ssl_protocols`.
        public var protocols: [String]

        public init(certificateFile: String? = nil, keyFile: String? = nil, requireClientCertificate: Bool = false,
                    protocols: [String] = ["TLSv1.2", "TLSv1.3"]) {
            self.certificateFile = certificateFile
            self.keyFile = keyFile
            self.requireClientCertificate = requireClientCertificate
            self.protocols = protocols
        }
    }

    public static let executable = "/usr/sbin/nginx"

    public let port: Int
    public let certificates: TestCertificates
    /// The nginx config, logs and temp files.
    public let directory: String
    private let reservation: PortReservation
    private let process: ChildProcess

    /// Starts nginx in front of 127.0.0.1:`upstreamPort` and waits until it accepts connections (blocking: async
    /// callers use ``start(upstreamPort:certificates:options:)``).
    public init(upstreamPort: Int, certificates: TestCertificates, options: Options = Options()) throws {
        guard FileManager.default.isExecutableFile(atPath: Self.executable) else {
            throw TestFailure("\(Self.executable) is missing (apt-get install nginx-light)")
        }
        self.certificates = certificates
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tls-front-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // Held while nginx runs: no other test's port-0 bind gets it (nginx binds with SO_REUSEADDR too).
        reservation = try PortReservation()
        port = reservation.port
        let config = directory + "/nginx.conf"
        try Self.config(port: port, upstreamPort: upstreamPort, certificates: certificates, options: options,
                        directory: directory).write(toFile: config, atomically: true, encoding: .utf8)
        // -e: the error log before the config is read (the built-in /var/log/nginx is not the test's).
        let arguments = ["-p", directory + "/", "-c", config, "-e", directory + "/error.log", "-g", "daemon off;"]
        process = try ChildProcess(Self.executable, arguments, standardOutput: .file(directory + "/nginx.out"),
                                   standardError: .standardOutput)
        let deadline = ContinuousClock.now + .seconds(10)
        while !Self.accepts(port: port) {
            guard process.isRunning, ContinuousClock.now < deadline else {
                process.kill9()
                let log = (try? String(contentsOfFile: directory + "/error.log", encoding: .utf8)) ?? ""
                throw TestFailure("nginx did not listen on 127.0.0.1:\(port): \(log)")
            }
            usleep(20_000)
        }
    }

    /// ``init(upstreamPort:certificates:options:)`` on a thread of its own.
    public static func start(upstreamPort: Int, certificates: TestCertificates,
                             options: Options = Options()) async throws -> TLSFrontProxy {
        try await onOwnThread { try TLSFrontProxy(upstreamPort: upstreamPort, certificates: certificates, options: options) }
    }

    deinit {
        process.kill9()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Stops nginx (SIGTERM, its fast shutdown; the master stops its workers before it exits).
    public func stop() async {
        await process.terminate(gracePeriod: .seconds(10))
    }

    /// nginx's error log, for a failing test's message.
    public var errorLog: String { (try? String(contentsOfFile: directory + "/error.log", encoding: .utf8)) ?? "" }

    static func config(port: Int, upstreamPort: Int, certificates: TestCertificates, options: Options,
                       directory: String) -> String {
        let temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map { "    \($0)_temp_path \(directory)/\($0)-temp;" }
        let clientCertificate = options.requireClientCertificate
            ? ["        ssl_client_certificate \(certificates.caFile);", "        ssl_verify_client on;"] : []
        return ([
            "pid \(directory)/nginx.pid;",
            "error_log \(directory)/error.log info;",
            "worker_processes 1;",
            "events { worker_connections 64; }",
            "http {",
            "    access_log \(directory)/access.log;",
        ] + temp + [
            "    server {",
            "        listen 127.0.0.1:\(port) ssl;",
            "        ssl_certificate \(options.certificateFile ?? certificates.serverCertFile);",
            "        ssl_certificate_key \(options.keyFile ?? certificates.serverKeyFile);",
            "        ssl_protocols \(options.protocols.joined(separator: " "));",
        ] + clientCertificate + [
            "        location / {",
            "            proxy_pass http://127.0.0.1:\(upstreamPort);",
            "            proxy_http_version 1.1;",
            "            proxy_set_header Upgrade $http_upgrade;",
            "            proxy_set_header Connection \"upgrade\";",
            "            proxy_set_header Host $http_host;",
            "            proxy_buffering off;",
            "            proxy_read_timeout 1h;",
            "        }",
            "    }",
            "}",
        ]).joined(separator: "\n") + "\n"
    }

    private static func accepts(port: Int) -> Bool {
        guard let fd = try? Loopback.connect(port: port, timeoutSeconds: 1) else { return false }
        close(fd)
        return true
    }
}
