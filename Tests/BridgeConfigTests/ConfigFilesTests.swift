import BridgeConfig
import Foundation
import Testing

/// The shipped files under Config/ are what users copy; each must load without errors.
struct ConfigFilesTests {
    static let configDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Config")

    static func yamlFiles() -> [String] {
        guard let enumerator = FileManager.default.enumerator(atPath: configDirectory.path) else { return [] }
        return enumerator.compactMap { $0 as? String }
            .filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }
            .sorted()
    }

    @Test func configDirectoryHasTheDocumentedFiles() {
        let files = Set(Self.yamlFiles())
        for expected in [
            "bridge.yaml", "bridge.websocket.yaml", "examples/json-sensors.yaml", "examples/plain-values.yaml", "examples/binary-frames.yaml",
            "examples/ditto-native.yaml", "examples/request-response.yaml",
        ] {
            #expect(files.contains(expected), "missing Config/\(expected)")
        }
    }

    @Test(arguments: yamlFiles())
    func shippedConfigLoads(_ file: String) throws {
        let path = Self.configDirectory.appendingPathComponent(file).path
        // The container config reads the bridge's password from the compose secret /run/secrets/bridge-password
        // (BRIDGE_PASSWORD_FILE overrides it), the WebSocket config Ditto's Basic password from
        // /etc/ditto-mqtt-bridge/ditto-password (DITTO_PASSWORD_FILE overrides it); a temporary file stands in.
        let passwordVariable: String? = switch file {
        case "bridge.docker.yaml": "BRIDGE_PASSWORD_FILE"
        case "bridge.websocket.yaml": "DITTO_PASSWORD_FILE"
        default: nil
        }
        var environment: [String: String] = [:]
        if let passwordVariable {
            let secret = FileManager.default.temporaryDirectory.appendingPathComponent("bridge-password-\(UUID().uuidString)")
            try "stand-in\n".write(to: secret, atomically: true, encoding: .utf8)
            environment[passwordVariable] = secret.path
        }
        defer { if let secret = passwordVariable.flatMap({ environment[$0] }) { try? FileManager.default.removeItem(atPath: secret) } }
        do {
            let configuration = try BridgeConfiguration.load(path: path, environment: environment)
            if file == "bridge.websocket.yaml" {
                let webSocket = try #require(configuration.connections.ditto.webSocket)
                #expect(webSocket.host == "ditto.example.com" && webSocket.path == "/ws/2" && webSocket.tls != nil)
                guard case .basic(username: "ditto", password: Secret("stand-in"), source: .file) = webSocket.authentication else {
                    Issue.record("\(webSocket.authentication)")
                    return
                }
            }
            #expect(!configuration.uplink.isEmpty || !configuration.downlink.isEmpty)
            #expect(configuration.warnings.isEmpty, "\(configuration.warnings.map(\.description))")
        } catch {
            Issue.record("\(error)")
        }
    }
}
