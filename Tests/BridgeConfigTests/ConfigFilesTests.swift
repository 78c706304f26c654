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

/// Config/ditto-connection.json is the Ditto side of Config/bridge.yaml; they must agree.
struct DittoConnectionFileTests {
    @Test func connectionJSONMatchesBridgeYAML() throws {
        let directory = ConfigFilesTests.configDirectory
        let data = try Data(contentsOf: directory.appendingPathComponent("ditto-connection.json"))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let c = try BridgeConfiguration.load(path: directory.appendingPathComponent("bridge.yaml").path, environment: [:])

        #expect(json["connectionType"] as? String == "mqtt-5")
        #expect(json["id"] as? String == c.ditto.connectionID)
        let source = try #require((json["sources"] as? [[String: Any]])?.first)
        let target = try #require((json["targets"] as? [[String: Any]])?.first)
        #expect(source["qos"] as? Int == Int(c.ditto.qos.rawValue))
        #expect(target["qos"] as? Int == Int(c.ditto.qos.rawValue))

        // The bridge publishes where the source listens, and on exactly the address enforcement expects.
        let thing = ["thingId": "org.example:sensor-1", "namespace": "org.example", "thingName": "sensor-1"]
        let published = try c.ditto.publishTopic.render(thing)
        let addresses = try #require(source["addresses"] as? [String])
        #expect(try addresses.contains { try TopicTemplate($0).match(published) != nil })
        let enforcement = try #require(source["enforcement"] as? [String: Any])
        let filters = try #require(enforcement["filters"] as? [String])
        #expect(filters.map { $0.replacingOccurrences(of: "{{ thing:id }}", with: "org.example:sensor-1") }.contains(published))

        // What the target publishes reaches the bridge's subscription.
        let targetAddress = try #require(target["address"] as? String)
        #expect(c.ditto.subscribeFilter.match(targetAddress.replacingOccurrences(of: "{{ thing:id }}", with: "org.example:sensor-1")) != nil)

        // Every label the bridge may issue is declared.
        let declared = try #require(source["declaredAcks"] as? [String])
        let resolved = declared.map { $0.replacingOccurrences(of: "{{connection:id}}", with: c.ditto.connectionID) }
        for label in c.acks.all { #expect(resolved.contains(label), "\(label) is not declared") }
    }
}
