import BridgeConfig
@testable import BridgeMapping
import DittoProtocol
import Foundation
import MQTT
import Testing

/// What a kept route shares with the other topics of its rule (the rule's event route with its template, the
/// Ditto-side topic's template) and what it keeps of its own, and that sharing changes no byte of the output.
@Suite struct SharedRouteTests {
    static let yaml = """
        defaults: { namespace: org.example }
        ditto: { publish-topic: "ditto/in/{namespace}/{thingName}/{thingId}" }
        uplink:
          - name: points
            topic: "dev/{deviceId}/telemetry"
            thing-id: "{namespace}:point-{deviceId}"
            event: { action: modified, path: "/features/telemetry/properties/value" }
            payload: json
            headers: { static: { x-gateway: "gw-1" } }
          - name: sensors
            topic: "dev/{deviceId}/sensors/{sensor}"
            thing-id: "{namespace}:point-{deviceId}"
            event: { action: modified, path: "/features/{sensor}/properties/value" }
            payload: json
          - name: wrapped
            topic: "dev/{deviceId}/wrapped"
            thing-id: "{namespace}:point-{deviceId}"
            event: { path: "/attributes/wrapped" }
            payload: json
            headers: { mqtt311: wrapper }
        """

    static func route(_ topic: String, _ mapper: UplinkMapper, _ configuration: BridgeConfiguration) throws
        -> DittoPublication.Route {
        try #require(try DittoPublication.route(topic: topic, mapper: mapper, ditto: configuration.ditto))
    }

    @Test func topicsOfARuleWithAConstantPathShareItsEventAndTopicTemplate() throws {
        let configuration = try configuration(Self.yaml)
        let mapper = UplinkMapper(configuration: configuration)
        // Device IDs that JSON escapes, in the topic's thing name.
        let topics = ["dev/1/telemetry", #"dev/a"b\c/telemetry"#, "dev/名🙂/telemetry"]
        let routes = try topics.map { try Self.route($0, mapper, configuration) }
        let shared = try #require(routes[0].uplink.event)
        for (topic, route) in zip(topics, routes) {
            #expect(route.uplink.event === shared)
            #expect(route.uplink.rule === routes[0].uplink.rule)
            // The values are made again where a message needs them: the same as the rule's match gives.
            let rule = try #require(mapper.rules.first { $0.name == "points" })
            var values = try #require(try rule.match(topic: topic)).values
            values["topic"] = topic
            #expect(route.uplink.variables(topic: topic) == values)
            #expect(try route.topic.get() == DittoPublication.render(configuration.ditto.publishTopic, for: route.uplink.thingID))
            let message = publication(topic, #"{"v":[1,"x"]}"#)
            let fast = try #require(try DittoPublication.encodedUplink(message, route: route, mapper: mapper,
                                                                       environment: Self.environment))
            let full = try DittoPublication.uplink(message, route: route, mapper: mapper, environment: Self.environment)
            #expect(fast == full.encoded)
            #expect(full.envelope.topic.thingID == route.uplink.thingID)
        }
    }

    @Test func aPathWithTheTopicsValuesIsKeptPerTopic() throws {
        let configuration = try configuration(Self.yaml)
        let mapper = UplinkMapper(configuration: configuration)
        let a = try Self.route("dev/1/sensors/t", mapper, configuration)
        let b = try Self.route("dev/2/sensors/t", mapper, configuration)
        #expect(a.uplink.event !== b.uplink.event)
        #expect(try a.uplink.event?.shape.get().path == "/features/t/properties/value")
        let message = publication("dev/2/sensors/t", "21.5")
        let fast = try #require(try DittoPublication.encodedUplink(message, route: b, mapper: mapper,
                                                                   environment: Self.environment))
        #expect(fast == (try DittoPublication.uplink(message, route: b, mapper: mapper, environment: Self.environment)).encoded)
    }

    /// A rule whose events never take the template (a 3.1.1 header wrapper) shares its path but keeps its topics'
    /// values, which every message renders with.
    @Test func aRuleWithoutTemplateKeepsItsTopicsValues() throws {
        let configuration = try configuration(Self.yaml)
        let mapper = UplinkMapper(configuration: configuration)
        let a = try Self.route("dev/1/wrapped", mapper, configuration)
        let b = try Self.route("dev/2/wrapped", mapper, configuration)
        #expect(a.uplink.event === b.uplink.event)
        #expect(try a.uplink.event?.shape.get().template == nil)
        #expect(a.uplink.variables(topic: "ignored")["deviceId"] == "1")
    }

    /// A Ditto-side topic whose template transforms the thing's values is rendered per topic, as before.
    @Test func aTransformedDittoTopicIsRenderedPerTopic() throws {
        let yaml = Self.yaml.replacingOccurrences(of: "{namespace}/{thingName}/{thingId}\"", with: "{thingName|upper}\"")
        let configuration = try configuration(yaml)
        let mapper = UplinkMapper(configuration: configuration)
        let route = try Self.route("dev/x1/telemetry", mapper, configuration)
        #expect(try route.topic.get() == "ditto/in/POINT-X1")
    }

    /// What a kept route stores in the runtime's table: the thing and a few references, nothing on the heap of
    /// its own where its rule's topics share their event and Ditto-side topic template. Fails when a field is
    /// added to what is kept per topic.
    @Test func aKeptRouteOfASharedRuleIsSmall() throws {
        let configuration = try configuration(Self.yaml)
        let mapper = UplinkMapper(configuration: configuration)
        let route = try Self.route("dev/123456/telemetry", mapper, configuration)
        #expect(MemoryLayout<DittoPublication.Route>.size <= 64, "\(MemoryLayout<DittoPublication.Route>.size) bytes")
        // Without its thing, four references.
        #expect(MemoryLayout<DittoPublication.Route.Parts?>.size <= 32, "\(MemoryLayout<DittoPublication.Route.Parts?>.size) bytes")
        #expect(route.uplink.event != nil && route.uplink.event === route.uplink.rule.event)
        #expect(route.uplink.variables(topic: "dev/123456/telemetry")["deviceId"] == "123456")
        let text = try route.topic.get()
        #expect(text == "ditto/in/org.example/point-123456/org.example:point-123456")
    }

    /// A route kept as its parts and its thing apart is the same route again: the same topic, values and bytes,
    /// for a shared Ditto-side topic and one rendered per topic, with shared and kept values.
    @Test(arguments: ["{namespace}/{thingName}/{thingId}", "{thingName|upper}"])
    func aRoutePutTogetherFromItsPartsIsTheSame(publishTopic: String) throws {
        let yaml = Self.yaml.replacingOccurrences(of: "{namespace}/{thingName}/{thingId}\"", with: publishTopic + "\"")
        let configuration = try configuration(yaml)
        let mapper = UplinkMapper(configuration: configuration)
        for topic in ["dev/7/telemetry", "dev/7/sensors/t", "dev/7/wrapped"] {
            let route = try Self.route(topic, mapper, configuration)
            let again = DittoPublication.Route(route.parts, thingID: route.uplink.thingID)
            #expect(try again.topic.get() == route.topic.get())
            #expect(again.uplink.rule === route.uplink.rule && again.uplink.event === route.uplink.event)
            #expect(again.uplink.variables(topic: topic) == route.uplink.variables(topic: topic))
            // A JSON object any of the rules takes (the wrapper's headers and value).
            let message = publication(topic, #"{"headers":{},"value":21.5}"#)
            let a = try DittoPublication.uplink(message, route: route, mapper: mapper, environment: Self.environment)
            let b = try DittoPublication.uplink(message, route: again, mapper: mapper, environment: Self.environment)
            #expect(a.encoded == b.encoded)
        }
    }

    static let environment = UplinkEnvironment(
        nextRevision: { _ in 42 }, timestamp: { "2026-12-07T10:00:00.000Z" }, newCorrelationID: { "c-1" })
}
