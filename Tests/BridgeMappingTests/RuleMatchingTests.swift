import BridgeConfig
import BridgeMapping
import DittoProtocol
import Testing

struct RuleMatchingTests {
    static let config = """
        defaults: { namespace: org.example }
        uplink:
          - name: telemetry
            topic: "devices/{deviceId}/telemetry/{sensor}"
            thing-id: "{namespace}:{deviceId|lower}"
            event: { path: "/features/{sensor}/properties/value" }
          - name: sites
            topic: "sites/{namespace}/{deviceId}"
            thing-id: "{namespace}:{deviceId}"
            event: { path: /features/state/properties }
        downlink:
          - name: inbox
            match: { messages: { subject: "set-*", feature: "*" } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/inbox/{feature}/{subject}"
          - name: thing-inbox
            match: { messages: {} }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/inbox/{subject}"
          - name: props
            match: { commands: { actions: [modify], path: "/features/{feature}/properties/{property...}" } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/set/{feature}/{property}"
        """

    @Test func uplinkMatchRendersTheThingAndItsValues() throws {
        let c = try configuration(Self.config)
        let rule = try #require(c.uplinkRule(forTopic: "devices/Pump-1/telemetry/flow"))
        #expect(rule.name == "telemetry")
        let m = try #require(try rule.match(topic: "devices/Pump-1/telemetry/flow"))
        #expect(m.thingID.description == "org.example:pump-1")
        #expect(m.values == [
            "deviceId": "Pump-1", "sensor": "flow", "namespace": "org.example", "thingId": "org.example:pump-1",
            "thingName": "pump-1",
        ])
        guard case .event(let event) = rule.action else {
            Issue.record("not an event rule")
            return
        }
        let path = try event.path.render(m.values)
        #expect(path == "/features/flow/properties/value")
        #expect(try rule.match(topic: "devices/x/status") == nil)
    }

    @Test func capturedNamespaceWinsOverTheDefault() throws {
        let c = try configuration(Self.config)
        let m = try #require(try c.uplink[1].match(topic: "sites/com.acme/d7"))
        #expect(m.thingID.namespace == "com.acme")
    }

    @Test func topicLevelsThatMakeAnInvalidThingIDAreReported() throws {
        let c = try configuration(Self.config)
        #expect(throws: RuleMatchError.invalidThingID("org.example:müller")) {
            try c.uplink[0].match(topic: "devices/Müller/telemetry/t")
        }
        #expect(throws: RuleMatchError.invalidThingID("bad ns:d7")) { try c.uplink[1].match(topic: "sites/bad ns/d7") }
    }

    @Test func downlinkRulesServeTheirNamespaceOnly() throws {
        let c = try configuration(Self.config)
        let rule = c.downlink[0]
        #expect(rule.values(for: try ThingID("org.example:lamp-1"))?["deviceId"] == "lamp-1")
        #expect(rule.values(for: try ThingID("com.other:lamp-1")) == nil)
    }

    @Test func messagesMatchBySubjectAndFeature() throws {
        let c = try configuration(Self.config)
        #expect(c.downlink[0].matchMessage(subject: "set-color", feature: "lamp") == ["subject": "set-color", "feature": "lamp"])
        #expect(c.downlink[0].matchMessage(subject: "get-color", feature: "lamp") == nil)
        #expect(c.downlink[0].matchMessage(subject: "set-color", feature: nil) == nil)
        #expect(c.downlink[1].matchMessage(subject: "reboot", feature: nil) == ["subject": "reboot"])
        #expect(c.downlink[1].matchMessage(subject: "reboot", feature: "lamp") == nil)
        #expect(c.downlink[1].matchCommand(action: .modify, path: "/") == nil)
    }

    @Test func commandsMatchByActionAndPath() throws {
        let c = try configuration(Self.config)
        let rule = c.downlink[2]
        let values = try #require(rule.matchCommand(action: .modify, path: "/features/lamp/properties/color/r"))
        #expect(values == ["feature": "lamp", "property": "color/r", "action": "modify", "path": "/features/lamp/properties/color/r"])
        #expect(rule.matchCommand(action: .retrieve, path: "/features/lamp/properties/on") == nil)
        #expect(rule.matchCommand(action: .modify, path: "/attributes/x") == nil)
        let all = (try #require(rule.values(for: try ThingID("org.example:lamp-1")))).merging(values) { a, _ in a }
        #expect(try rule.topic.render(all) == "devices/lamp-1/set/lamp/color/r")
    }
}
