import BridgeConfig
import Testing

struct TopicTemplateTests {
    @Test(arguments: [
        ("", "a topic cannot be empty"),
        ("a/#/b", "'#' must be the last level"),
        ("a/+x", "a wildcard must fill a whole level"),
        ("a/b#", "a wildcard must fill a whole level"),
        ("a/{rest...}/b", "must be the last level"),
        ("a/{header:x}", "topic levels cannot use headers"),
        ("a/{x", "'{' without a matching '}'"),
    ])
    func invalidTopics(_ text: String, _ message: String) {
        do {
            _ = try TopicTemplate(text)
            Issue.record("'\(text)' compiled")
        } catch {
            #expect(error.description.contains(message), "\(error)")
        }
    }

    @Test func publishTopicsRejectWildcards() {
        #expect(throws: TemplateError.self) { try TopicTemplate("ditto/in/+", allowWildcards: false) }
        #expect(throws: TemplateError.self) { try TopicTemplate("ditto/#", allowWildcards: false) }
    }

    @Test func renderInsertsValuesAndRefusesWildcardCharacters() throws {
        let t = try TopicTemplate("devices/{deviceId}/inbox/{subject}", allowWildcards: false)
        #expect(try t.render(["deviceId": "d1", "subject": "a/b"]) == "devices/d1/inbox/a/b")
        #expect(throws: TemplateError(.invalidTopicValue(placeholder: "subject", value: "a+b"))) {
            try t.render(["deviceId": "d1", "subject": "a+b"])
        }
        #expect(throws: TemplateError.self) { try t.render(["deviceId": "d1"]) }
        #expect(throws: TemplateError.self) { try TopicTemplate("a/+").render([:]) }
    }

    @Test func specificityPrefersLiteralLevels() throws {
        let exact = try TopicTemplate("devices/{id}/telemetry/temperature").specificity
        let named = try TopicTemplate("devices/{id}/telemetry/{sensor}").specificity
        let partial = try TopicTemplate("devices/{id}/telemetry/t-{sensor}").specificity
        let open = try TopicTemplate("devices/{id}/telemetry/#").specificity
        let deeper = try TopicTemplate("devices/{id}/{a}/{b}/{c}").specificity
        #expect(exact > partial)
        #expect(partial > named)
        #expect(named > open)
        #expect(named > deeper)  // two literal levels beat one
    }

    @Test(arguments: [
        ("devices/{id}/telemetry/{s}", "devices/+/telemetry/temp", true),
        ("devices/{id}/telemetry/{s}", "devices/+/status", false),
        ("devices/#", "devices/a/b/c", true),
        ("devices/{rest...}", "devices", false),
        ("devices/#", "devices", true),
        ("a/dev-{id}", "a/dev-1", true),
        ("a/dev-{id}", "a/sensor-1", false),
        ("ditto/in/{thingId}", "{kind}/{deviceId}/{sensor}", true),
        ("ditto/in/{thingId}", "devices/{id}/x", false),
    ])
    func overlaps(_ a: String, _ b: String, _ expected: Bool) throws {
        let x = try TopicTemplate(a)
        let y = try TopicTemplate(b)
        #expect(x.overlaps(y) == expected)
        #expect(y.overlaps(x) == expected)
    }

}
