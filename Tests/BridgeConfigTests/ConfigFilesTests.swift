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
            "bridge.yaml", "examples/json-sensors.yaml", "examples/plain-values.yaml", "examples/binary-frames.yaml",
            "examples/ditto-native.yaml", "examples/request-response.yaml",
        ] {
            #expect(files.contains(expected), "missing Config/\(expected)")
        }
    }

    @Test(arguments: yamlFiles())
    func shippedConfigLoads(_ file: String) throws {
        let path = Self.configDirectory.appendingPathComponent(file).path
        // The container config reads the bridge's password from the compose secret /run/secrets/bridge-password
        // (BRIDGE_PASSWORD_FILE overrides it); a temporary file stands in for it here.
        var environment: [String: String] = [:]
        if file == "bridge.docker.yaml" {
            let secret = FileManager.default.temporaryDirectory.appendingPathComponent("bridge-password-\(UUID().uuidString)")
            try "stand-in\n".write(to: secret, atomically: true, encoding: .utf8)
            environment["BRIDGE_PASSWORD_FILE"] = secret.path
        }
        defer { if let secret = environment["BRIDGE_PASSWORD_FILE"] { try? FileManager.default.removeItem(atPath: secret) } }
        do {
            let configuration = try BridgeConfiguration.load(path: path, environment: environment)
            #expect(!configuration.uplink.isEmpty || !configuration.downlink.isEmpty)
            #expect(configuration.warnings.isEmpty, "\(configuration.warnings.map(\.description))")
        } catch {
            Issue.record("\(error)")
        }
    }
}
