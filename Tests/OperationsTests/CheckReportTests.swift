import BridgeConfig
import BridgeOperations
import Foundation
import Testing

/// `check --format json` and the text form, on files written to a temp dir.
struct CheckReportTests {
    static func write(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("check-\(UUID().uuidString).yaml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func errorsAndWarningsInJSON() throws {
        let path = try Self.write("""
            connections:
              device:
                host: localhost
                username: u
                password: inline
                keepalive: 30
            uplink:
              - name: t
                topic: "devices/{deviceId}/t"
                thing-id: "org.example:{device}"
                event: { path: "/features/t/properties/value" }
            """)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let report = CheckReport(path: path, environment: [:])
        #expect(!report.ok)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(report.json.utf8)) as? [String: Any])
        #expect(object["file"] as? String == path)
        #expect(object["ok"] as? Bool == false)
        let errors = try #require(object["errors"] as? [[String: Any]])
        #expect(errors.count == 2)
        #expect(errors.first?["key"] as? String == "connections.device.keepalive")
        #expect(errors.first?["line"] as? Int == 6)
        #expect(errors.first?["column"] as? Int == 16)
        #expect(errors.first?["file"] as? String == path)
        #expect(errors.first?["severity"] as? String == "error")
        #expect((errors.first?["message"] as? String)?.contains("invalid duration '30'") == true)
        #expect(errors.last?["key"] as? String == "uplink[0].thing-id")
        #expect(errors.last?["line"] as? Int == 10)
        let warnings = try #require(object["warnings"] as? [[String: Any]])
        #expect(warnings.map { $0["key"] as? String } == ["connections.device.password"])
        #expect(warnings.first?["severity"] as? String == "warning")

        // Text: one stream, by position, then a summary.
        let lines = report.textLines
        #expect(lines.count == 4)
        #expect(lines[0].hasPrefix("\(path):5:"))
        #expect(lines[0].contains("warning: connections.device.password"))
        #expect(lines[1].hasPrefix("\(path):6:16: connections.device.keepalive"))
        #expect(lines[2].hasPrefix("\(path):10:"))
        #expect(lines[3] == "\(path): 2 errors, 1 warning")
    }

    @Test func aUsableFile() throws {
        let report = CheckReport(path: Repository.file("Config/bridge.yaml").path, environment: [:])
        #expect(report.ok, "\(report.textLines)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(report.json.utf8)) as? [String: Any])
        #expect(object["ok"] as? Bool == true)
        #expect((object["errors"] as? [Any])?.isEmpty == true)
        #expect(report.textLines.last?.contains("OK (2 uplink rules, 2 downlink rules") == true, "\(report.textLines)")
    }

    @Test func aMissingFile() throws {
        let report = CheckReport(path: "/nonexistent/bridge.yaml", environment: [:])
        #expect(!report.ok)
        #expect(report.json.contains(#""line":0"#))
        #expect(report.json.contains("cannot read the config file: the file does not exist"))
    }
}
