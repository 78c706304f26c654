import BridgeConfig
import Foundation
import MQTT
import Testing

/// `operations.listen` and environment variables in path-valued keys.
struct OperationsConfigTests {
    static let rules = """
        uplink:
          - name: telemetry
            topic: "devices/{deviceId}/telemetry"
            thing-id: "org.example:{deviceId}"
            event: { path: "/features/t/properties/value" }
        """

    static func file(_ operations: String) -> String { "\(rules)\n\(operations)" }

    @Test func offWhenLeftOut() throws {
        #expect(try Fixture.load(Self.rules).operations.listen == nil)
        #expect(try Fixture.load(Self.file("operations:\n  listen: null")).operations.listen == nil)
        #expect(try Fixture.load(Self.file("operations:\n  listen: false")).operations.listen == nil)
        #expect(try Fixture.load(Self.file("operations: {}")).operations.listen == nil)
    }

    @Test(arguments: [
        ("127.0.0.1:9464", "127.0.0.1", 9464, ListenAddress.Family.ipv4, true),
        ("0.0.0.0:9464", "0.0.0.0", 9464, .ipv4, false),
        ("[::1]:9100", "::1", 9100, .ipv6, true),
        ("[::]:1", "::", 1, .ipv6, false),
    ])
    func listenAddresses(text: String, host: String, port: Int, family: ListenAddress.Family, loopback: Bool) throws {
        let c = try Fixture.load(Self.file("operations:\n  listen: \"\(text)\""))
        let listen = try #require(c.operations.listen)
        #expect(listen.host == host)
        #expect(listen.port == port)
        #expect(listen.family == family)
        #expect(listen.isLoopback == loopback)
        #expect(listen.description == text)
    }

    @Test func listenFromTheEnvironment() throws {
        let file = Self.file("operations:\n  listen: \"${METRICS:-127.0.0.1:9464}\"")
        #expect(try Fixture.load(file).operations.listen?.port == 9464)
        #expect(try Fixture.load(file, environment: ["METRICS": "0.0.0.0:9500"]).operations.listen?.description == "0.0.0.0:9500")
    }

    @Test(arguments: [
        ("localhost:9464", "'localhost' is not a numeric IP address"),
        ("9464", "no port"),
        ("127.0.0.1:", "'' is not a port"),
        ("127.0.0.1:0", "'0' is not a port (1–65535)"),
        ("127.0.0.1:70000", "'70000' is not a port"),
        ("::1:9464", "an IPv6 address must be written in brackets"),
        ("[::1:9464", "'[' without a closing ']'"),
        (":9464", "no address before the port"),
    ])
    func badListenAddresses(text: String, message: String) {
        expectSingleError(
            Self.file("operations:\n  listen: \"\(text)\""), line: 7, column: 11, keyPath: "operations.listen",
            message: message, hint: "write IP:PORT")
    }

    @Test func listenTrueIsNotAnAddress() {
        expectSingleError(
            Self.file("operations:\n  listen: true"), line: 7, column: 11, keyPath: "operations.listen",
            message: "listen takes an address, not true")
    }

    @Test func unknownOperationsKey() {
        expectSingleError(
            Self.file("operations:\n  lisen: \"127.0.0.1:9464\""), line: 7, column: 3, keyPath: "operations.lisen",
            message: "unknown key 'lisen'", hint: "did you mean 'listen'?")
    }

    @Test func passwordFileFromTheCredentialsDirectory() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("creds-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "s3cret\n".write(to: directory.appendingPathComponent("device-password"), atomically: true, encoding: .utf8)
        let yaml = """
            connections:
              device:
                host: localhost
                username: bridge
                password-file: "${CREDENTIALS_DIRECTORY}/device-password"
            \(Self.rules)
            """
        let c = try Fixture.load(yaml, environment: ["CREDENTIALS_DIRECTORY": directory.path])
        #expect(c.connections.device.password?.value == "s3cret")
        #expect(c.connections.device.passwordSource == .file(directory.path + "/device-password"))

        expectSingleError(
            yaml, line: 5, column: 20, keyPath: "connections.device.password-file",
            message: "environment variable CREDENTIALS_DIRECTORY is not set", hint: "${CREDENTIALS_DIRECTORY:-value}")
    }

    @Test func tlsFilesExpandVariables() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "not checked at load".write(to: directory.appendingPathComponent("ca.pem"), atomically: true, encoding: .utf8)
        let yaml = """
            connections:
              ditto:
                host: broker.example
                tls: { ca-file: "${CERTS:-/nonexistent}/ca.pem" }
            \(Self.rules)
            """
        let c = try Fixture.load(yaml, environment: ["CERTS": directory.path])
        #expect(c.connections.ditto.broker?.tls?.caFile == directory.path + "/ca.pem")
        let (errors, _) = Fixture.diagnose(yaml)
        #expect(errors.map(\.message) == ["'/nonexistent/ca.pem' does not exist"])
    }
}
