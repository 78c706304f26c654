import BridgeConfig
import MQTT
import Testing

/// Loading reads files and the environment only through its `ConfigSource`: an in-memory one gives the same
/// configuration and the same diagnostics as the file system would, with nothing on disk.
struct ConfigSourceTests {
    struct InMemorySource: ConfigSource {
        var files: [String: String] = [:]
        var directories: Set<String> = []
        var unreadable: Set<String> = []
        var environment: [String: String] = [:]

        func environmentVariable(_ name: String) -> String? { environment[name] }

        func entry(atPath path: String) -> ConfigFileEntry {
            if directories.contains(path) { return .directory(readable: !unreadable.contains(path)) }
            return files[path] == nil ? .missing : .file(readable: !unreadable.contains(path))
        }

        func contents(atPath path: String) -> [UInt8]? {
            unreadable.contains(path) ? nil : files[path].map { Array($0.utf8) }
        }

        var currentDirectory: String { "/work" }
    }

    static let yaml = """
        connections:
          device:
            host: "${DEVICE_HOST}"
            username: bridge
            password-file: device.pass
            tls: { ca-file: ca.pem, ca-path: certs }
          ditto: { host: localhost, username: ditto, password-env: DITTO_BROKER_PASSWORD }
        uplink:
          - name: t
            topic: "devices/{deviceId}/t"
            thing-id: "org.example:{deviceId}"
            event: { path: /features/t/properties/value }
        """

    static let source = InMemorySource(
        files: ["/etc/bridge/bridge.yaml": yaml, "/etc/bridge/device.pass": "s3cret\n", "/etc/bridge/ca.pem": "-"],
        directories: ["/etc/bridge/certs"],
        environment: ["DEVICE_HOST": "broker.local", "DITTO_BROKER_PASSWORD": "p2"])

    @Test func filesAndVariablesComeFromTheSource() throws {
        let c = try BridgeConfiguration.load(path: "/etc/bridge/bridge.yaml", source: Self.source)
        #expect(c.connections.device.host == "broker.local")
        #expect(c.connections.device.password?.value == "s3cret")
        #expect(c.connections.device.tls?.caFile == "/etc/bridge/ca.pem")
        #expect(c.connections.device.tls?.caPath == "/etc/bridge/certs")
        #expect(c.connections.ditto.broker?.password?.value == "p2")
    }

    @Test func relativePathsStartAtTheSourcesCurrentDirectoryWithoutAFile() {
        do {
            _ = try BridgeConfiguration.parse(yaml: Self.yaml, fileName: "test.yaml", source: Self.source)
            Issue.record("loaded")
        } catch {
            #expect(error.errors.map(\.message).contains("password file '/work/device.pass' does not exist"))
        }
    }

    @Test func whatTheSourceCannotReadIsReportedAtItsKey() {
        var source = Self.source
        source.unreadable = ["/etc/bridge/device.pass", "/etc/bridge/ca.pem"]
        source.directories = []
        source.files["/etc/bridge/certs"] = "a file, not a directory"
        do {
            _ = try BridgeConfiguration.load(path: "/etc/bridge/bridge.yaml", source: source)
            Issue.record("loaded")
        } catch {
            let messages = error.errors.map { "\($0.line) \($0.keyPath): \($0.message)" }
            #expect(messages.contains("5 connections.device.password-file: password file '/etc/bridge/device.pass' is not readable"),
                    "\(messages)")
            #expect(messages.contains("6 connections.device.tls.ca-file: '/etc/bridge/ca.pem' is not readable"), "\(messages)")
            #expect(messages.contains("6 connections.device.tls.ca-path: '/etc/bridge/certs' is not a directory"), "\(messages)")
        }
        do {
            _ = try BridgeConfiguration.load(path: "/etc/bridge/missing.yaml", source: source)
            Issue.record("loaded")
        } catch {
            #expect(error.description == "/etc/bridge/missing.yaml: cannot read the config file: the file does not exist")
        }
    }
}
