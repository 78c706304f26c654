import BridgeConfig
import BridgeMapping
import DittoProtocol
import Testing

/// Events built from device payloads hold Ditto's thing model like pass-through does: a definition, a policy id or a
/// whole thing Ditto refuses is dropped with Ditto's error, by the full mapping and by the event template's fast
/// path alike (which must never publish what the full mapping refuses).
@Suite struct EventValueRulesTests {
    static let yaml = """
        defaults: { namespace: org.example }
        uplink:
          - name: feature
            topic: "devices/{deviceId}/feature/{feature}"
            thing-id: "{namespace}:{deviceId}"
            event: { action: modified, path: "/features/{feature}" }
            payload: json
          - name: feature-definition
            topic: "devices/{deviceId}/feature-definition/{feature}"
            thing-id: "{namespace}:{deviceId}"
            event: { action: created, path: "/features/{feature}/definition" }
            payload: json
          - name: thing
            topic: "devices/{deviceId}/thing"
            thing-id: "{namespace}:{deviceId}"
            event: { action: modified, path: "/" }
            payload: json
          - name: definition
            topic: "devices/{deviceId}/definition"
            thing-id: "{namespace}:{deviceId}"
            event: { action: modified, path: "/definition" }
            payload: text
          - name: policy
            topic: "devices/{deviceId}/policy"
            thing-id: "{namespace}:{deviceId}"
            event: { action: modified, path: "/policyId" }
            payload: text
        """

    static let cases: [(topic: String, payload: String, code: String?)] = [
        ("devices/d1/feature/f", #"{"definition":["org.example:sensor:1.0.0"],"properties":{"t":1}}"#, nil),
        ("devices/d1/feature/f", #"{"definition":["bad"]}"#, "things:definition.identifier.invalid"),
        ("devices/d1/feature/f", #"{"definition":[]}"#, "things:feature.definition.empty"),
        ("devices/d1/feature/f", #"{"properties":5}"#, "json.invalid"),
        ("devices/d1/feature/f", "null", nil),
        ("devices/d1/feature-definition/f", #"["https://models.example.com/sensor-1.0.0.tm.jsonld"]"#, nil),
        ("devices/d1/feature-definition/f", #"["a:b"]"#, "things:definition.identifier.invalid"),
        ("devices/d1/thing", #"{"thingId":"org.example:d1","attributes":{"a":1}}"#, nil),
        ("devices/d1/thing", #"{"attributes":{"a":1}}"#, "json.format.invalid"),
        ("devices/d1/thing", #"{"thingId":"org.example:d1","policyId":"bad"}"#, "policies:id.invalid"),
        ("devices/d1/definition", "org.example:pump:2.1.0", nil),
        ("devices/d1/definition", "not a def", "things:definition.identifier.invalid"),
        ("devices/d1/policy", "org.example:d1", nil),
        ("devices/d1/policy", "bad", "policies:id.invalid"),
    ]

    @Test func fullMappingAndTemplateAgreeWithDitto() throws {
        let configuration = try configuration(Self.yaml)
        let mapper = UplinkMapper(configuration: configuration)
        for (topic, payload, code) in Self.cases {
            let message = publication(topic, payload)
            let route = try #require(try DittoPublication.route(topic: topic, mapper: mapper, ditto: configuration.ditto))
            let full = Result { try DittoPublication.uplink(message, route: route, mapper: mapper, environment: fixedEnvironment) }
            let fast = Result { try DittoPublication.encodedUplink(message, route: route, mapper: mapper, environment: fixedEnvironment) }
            if let code {
                guard case .failure(let error as MappingError) = full else {
                    Issue.record("\(topic) \(payload): mapped, Ditto refuses it with \(code)")
                    continue
                }
                #expect(error.kind == .invalidPayload, "\(topic) \(payload)")
                #expect(error.dittoError.error == code, "\(topic) \(payload): \(error)")
                // The fast path leaves it to the full mapping (nil) or refuses it the same way.
                switch fast {
                case .success(let encoded): #expect(encoded == nil, "\(topic) \(payload): the template published it")
                case .failure(let error as MappingError): #expect(error.dittoError.error == code)
                case .failure(let error): Issue.record("\(error)")
                }
            } else {
                let published = try full.get()
                #expect(try Envelope.decode(published.encoded.payload).topic.action != nil, "\(topic) \(payload)")
            }
        }
    }
}
