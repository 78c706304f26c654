import BridgeConfig
import Testing

/// `check` warns when devices and Ditto's connection share one broker listener that nobody authenticates on.
struct SharedListenerTests {
    static func yaml(device: String, ditto: String) -> String {
        """
        connections:
          device: { \(device) }
          ditto: { \(ditto) }
        defaults: { namespace: org.example }
        uplink:
          - name: telemetry
            topic: "devices/{deviceId}/telemetry"
            thing-id: "{namespace}:{deviceId}"
            event: { path: /features/t/properties/value }
        """
    }

    static func warnings(device: String, ditto: String) -> [ConfigDiagnostic] {
        let (errors, warnings) = Fixture.diagnose(yaml(device: device, ditto: ditto), environment: ["PW": "secret"])
        #expect(errors.isEmpty, "\(errors)")
        return warnings
    }

    @Test func oneAnonymousListenerForBothSidesIsAWarning() throws {
        let warnings = Self.warnings(device: "host: broker.lan, port: 1883", ditto: "host: Broker.LAN, port: 1883")
        #expect(warnings.count == 1)
        let warning = try #require(warnings.first)
        #expect(warning.severity == .warning)
        #expect(warning.line == 3)
        #expect(warning.keyPath == "connections.ditto")
        #expect(warning.message.contains("connections.device and connections.ditto are the same listener (Broker.LAN:1883)"))
        #expect(warning.message.contains("act as Ditto"))
        #expect(warning.hint?.contains("listener of its own") == true)
        // The default port counts as written.
        #expect(Self.warnings(device: "host: broker.lan", ditto: "host: broker.lan").count == 1)
    }

    @Test func credentialsOrAnotherListenerOrLoopbackAreQuiet() {
        for (device, ditto) in [
            ("host: broker.lan, username: bridge, password-env: PW", "host: broker.lan"),
            ("host: broker.lan", "host: broker.lan, username: bridge"),
            ("host: broker.lan", "host: broker.lan, port: 1884"),
            ("host: broker.lan", "host: other.lan"),
            ("host: 127.0.0.1", "host: 127.0.0.1"),
            ("host: localhost", "host: localhost"),
            ("host: \"::1\"", "host: \"::1\""),
        ] {
            #expect(Self.warnings(device: device, ditto: ditto).isEmpty, "\(device) / \(ditto)")
        }
    }
}
