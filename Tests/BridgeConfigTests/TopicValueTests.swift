import BridgeConfig
import Testing

/// A value rendered into a topic a bridge publishes to may not carry MQTT wildcards or NUL: a thing name
/// `a#b` (valid in Ditto) must not become the topic `devices/a#b/inbox` (scripts/mutants.sh M14, which survived
/// its first run).
struct TopicValueTests {
    @Test(arguments: ["a#b", "#", "a+b", "+", "a\u{0}b"])
    func wildcardsAndNULAreRefused(_ value: String) throws {
        let template = try TopicTemplate("devices/{deviceId}/inbox")
        #expect(throws: TemplateError.self) { try template.render(["deviceId": value]) }
    }

    @Test func ordinaryValuesRender() throws {
        let template = try TopicTemplate("devices/{deviceId}/inbox")
        #expect(try template.render(["deviceId": "a b-é"]) == "devices/a b-é/inbox")
    }
}
