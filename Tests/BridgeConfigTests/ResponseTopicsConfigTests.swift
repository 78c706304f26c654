import BridgeConfig
import Testing

/// `response-topics` as the loader checks them (which topics they admit: BridgeMappingTests.ResponseTopicsTests).
struct ResponseTopicsConfigTests {
    static func rule(_ ruleYAML: String, device: String = "") -> String {
        """
        connections:
          device: { host: 127.0.0.1\(device) }
        defaults: { namespace: org.example }
        uplink:
        \(ruleYAML)
        """
    }

    static let requests = """
          - name: requests
            topic: "devices/{deviceId}/requests/{subject}"
            thing-id: "{namespace}:{deviceId}"
            message: { subject: "{subject}", response: true }
        """

    @Test func aRequestRuleWithoutADeviceIDMustNameItsResponseTopics() throws {
        let yaml = Self.rule("""
              - name: sensors
                topic: "sensors/{name}/ask"
                thing-id: "org.example:{name}"
                message: { subject: ask, response: true }
            """)
        expectSingleError(yaml, line: 8, keyPath: "uplink[0].message.response",
                          message: "captures no {deviceId}", hint: "response-topics: [\"answers/{name}/#\"]")
        // Named: fine. An MQTT 3.1.1 device names no response topic (its answers go to reply-topic).
        #expect(Fixture.diagnose(yaml + "\n    response-topics: [\"sensors/{name}/#\"]").errors.isEmpty)
        let legacy = Self.rule("""
              - name: sensors
                topic: "sensors/{name}/ask/{correlationId}"
                thing-id: "org.example:{name}"
                message: { subject: ask, response: true, reply-topic: "sensors/{name}/answer/{correlationId}" }
            """, device: ", mqtt-version: \"3.1.1\"")
        #expect(Fixture.diagnose(legacy).errors.isEmpty, "\(Fixture.diagnose(legacy).errors)")
    }

    @Test func badFiltersAreReportedAtTheirEntry() {
        for (filter, message) in [
            ("devices/#/x", "'#' must be the last level"),
            ("devices/{deviceId}/a+b", "a wildcard must fill a whole level"),
            ("devices/{device}/#", "{device}"),
            ("devices/{rest...}", "{rest...} is not a filter level"),
            ("", "must not be empty"),
        ] {
            let yaml = Self.requests + "\n    response-topics: [\"ok/{deviceId}\", \"\(filter)\"]"
            expectSingleError(Self.rule(yaml), line: 9, keyPath: "uplink[0].response-topics[1]", message: message)
        }
        expectSingleError(Self.rule(Self.requests + "\n    response-topics: devices/{deviceId}/#"), line: 9,
                          keyPath: "uplink[0].response-topics", message: "list")
    }

    @Test func anEventRuleHasNoResponseTopics() {
        let yaml = Self.rule("""
              - name: telemetry
                topic: "devices/{deviceId}/telemetry"
                thing-id: "org.example:{deviceId}"
                event: { path: /features/t/properties/value }
                response-topics: ["devices/{deviceId}/#"]
            """)
        expectSingleError(yaml, line: 9, keyPath: "uplink[0].response-topics", message: "only used by message and passthrough rules")
    }

    @Test func aFilterWithoutACaptureIsAWarning() {
        let (errors, warnings) = Fixture.diagnose(Self.rule(Self.requests + "\n    response-topics: [\"answers/#\", \"fixed/topic\"]"))
        #expect(errors.isEmpty)
        #expect(warnings.map(\.keyPath) == ["uplink[0].response-topics[0]"])
        #expect(warnings.first?.message.contains("another device's too") == true)
    }
}
