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
        do {
            let configuration = try BridgeConfiguration.load(path: path, environment: [:])
            #expect(!configuration.uplink.isEmpty || !configuration.downlink.isEmpty)
            #expect(configuration.warnings.isEmpty, "\(configuration.warnings.map(\.description))")
        } catch {
            Issue.record("\(error)")
        }
    }
}
