import Foundation
import MosquittoTestSupport

/// Certificates for TLS tests, made by the `openssl` command line in a directory of their own (removed with this
/// value): a CA, a server certificate for 127.0.0.1 and localhost, one for another name, a client certificate,
/// and a second CA that signed none of them.
public final class TestCertificates: Sendable {
    public let directory: String

    /// The CA that signed every certificate here.
    public var caFile: String { directory + "/ca.crt" }
    /// A CA that signed nothing here: a client trusting only it must refuse the server.
    public var otherCAFile: String { directory + "/other-ca.crt" }
    /// Subject alternative names IP:127.0.0.1 and DNS:localhost.
    public var serverCertFile: String { directory + "/server.crt" }
    public var serverKeyFile: String { directory + "/server.key" }
    /// Signed by the CA for DNS:other.example only: a client checking 127.0.0.1 or localhost must refuse it.
    public var otherNameCertFile: String { directory + "/other-name.crt" }
    public var otherNameKeyFile: String { directory + "/other-name.key" }
    public var clientCertFile: String { directory + "/client.crt" }
    public var clientKeyFile: String { directory + "/client.key" }

    /// Makes them all (several `openssl` runs, blocking: async callers use ``make()``).
    public init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("test-certificates-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        do {
            try makeAll()
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
    }

    /// ``init()`` on a thread of its own.
    public static func make() async throws -> TestCertificates {
        try await onOwnThread { try TestCertificates() }
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    private func makeAll() throws {
        func openssl(_ arguments: [String]) throws { try TestBroker.run("/usr/bin/openssl", arguments) }
        let newKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for ca in ["ca", "other-ca"] {
            try openssl(["req", "-x509"] + newKey + ["-days", "2", "-subj", "/CN=test \(ca)",
                                                     "-keyout", "\(directory)/\(ca).key", "-out", "\(directory)/\(ca).crt"])
        }
        let signed = [
            ("server", "/CN=localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
            ("other-name", "/CN=other.example", "subjectAltName=DNS:other.example"),
            ("client", "/CN=test-client", "extendedKeyUsage=clientAuth"),
        ]
        for (name, subject, extensions) in signed {
            let extensionsFile = "\(directory)/\(name).ext"
            try (extensions + "\n").write(toFile: extensionsFile, atomically: true, encoding: .utf8)
            try openssl(["req"] + newKey + ["-subj", subject, "-keyout", "\(directory)/\(name).key",
                                            "-out", "\(directory)/\(name).csr"])
            try openssl(["x509", "-req", "-in", "\(directory)/\(name).csr", "-CA", caFile, "-CAkey", "\(directory)/ca.key",
                         "-CAcreateserial", "-days", "2", "-extfile", extensionsFile, "-out", "\(directory)/\(name).crt"])
        }
    }
}
