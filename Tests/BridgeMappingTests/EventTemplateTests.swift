import BridgeConfig
import BridgeMapping
import DittoProtocol
import MQTT
import Synchronization
import Testing

/// The uplink's template path (`DittoPublication.encodedUplink`) against the full mapping: the same topic, bytes
/// and properties, and the same calls to the environment; nil (nothing drawn) wherever the template must not be
/// used.
@Suite struct EventTemplateTests {
    static let yaml = """
        defaults: { namespace: org.example }
        uplink:
          - name: whole
            topic: "devices/{deviceId}/whole/{sensor}"
            thing-id: "{namespace}:{deviceId}"
            event: { action: modified, path: "/features/{sensor}/properties/value" }
            payload: json
            headers: { static: { x-gateway: "gw-{deviceId}", x-thing: "{thingId}", x-quote: "a\\"b\\\\c" } }
          - name: typed
            topic: "devices/{deviceId}/typed"
            thing-id: "{namespace}:{deviceId}"
            event: { action: modified, path: "/features/typed/properties/value" }
            payload: json
            headers: { static: { dry-run: "false", x-n: "{deviceId}" } }
          - name: pointer
            topic: "devices/{deviceId}/pointer"
            thing-id: "{namespace}:{deviceId}"
            event: { action: created, path: "/features/env/properties" }
            payload: { format: json, pointer: /value }
          - name: fields
            topic: "devices/{deviceId}/fields"
            thing-id: "{namespace}:{deviceId}"
            event: { action: merged, path: "/features/env/properties" }
            payload: { format: json, fields: { temperature: /t, humidity: /h/value } }
          - name: text
            topic: "devices/{deviceId}/label"
            thing-id: "{namespace}:{deviceId}"
            event: { path: "/attributes/label" }
            payload: text
          - name: bytes
            topic: "devices/{deviceId}/frame"
            thing-id: "{namespace}:{deviceId}"
            event: { path: "/attributes/frame" }
            payload: bytes
          - name: number
            topic: "devices/{deviceId}/number"
            thing-id: "{namespace}:{deviceId}"
            event: { path: "/features/n/properties/value" }
            payload: number
          - name: attributes
            topic: "devices/{deviceId}/attributes"
            thing-id: "{namespace}:{deviceId}"
            event: { action: modified, path: "/attributes" }
            payload: json
          - name: deleted
            topic: "devices/{deviceId}/gone"
            thing-id: "{namespace}:{deviceId}"
            event: { action: deleted, path: "/attributes/x" }
            payload: json
          - name: echo
            topic: "devices/{deviceId}/echo"
            thing-id: "{namespace}:{deviceId}"
            event: { path: "/attributes/echo" }
            payload: json
            headers: { static: { x-echo: "{header:correlation-id}" } }
          - name: wrapped
            topic: "devices/{deviceId}/wrapped"
            thing-id: "{namespace}:{deviceId}"
            event: { path: "/attributes/wrapped" }
            payload: json
            headers: { mqtt311: wrapper }
          - name: correlated
            topic: "devices/{deviceId}/correlated/{correlationId}"
            thing-id: "{namespace}:{deviceId}"
            event: { path: "/attributes/correlated" }
            payload: json
          - name: message
            topic: "devices/{deviceId}/message"
            thing-id: "{namespace}:{deviceId}"
            message: { subject: hello }
            payload: json
        """

    /// Revisions, timestamps and correlation ids from counters, counting the calls.
    final class Environment: Sendable {
        private let calls = Atomic<Int>(0)
        let ids: [String]

        init(ids: [String]) {
            self.ids = ids
        }

        var callCount: Int { calls.load(ordering: .relaxed) }

        var environment: UplinkEnvironment {
            UplinkEnvironment(
                nextRevision: { _ in Int64(self.calls.add(1, ordering: .relaxed).newValue) * 1_000_003 },
                timestamp: { "2026-11-29T03:\(10 + self.calls.add(1, ordering: .relaxed).newValue % 50):00.000Z" },
                newCorrelationID: {
                    let call = self.calls.add(1, ordering: .relaxed).newValue
                    return self.ids[call % self.ids.count]
                })
        }
    }

    enum Expected { case template, fullMapping }

    static let cases: [(topic: String, payload: String, expected: Expected)] = [
        ("devices/d1/whole/temp", #"{"v":21.5,"unit":"°C","ok":true,"list":[1,2,{"a":null}]}"#, .template),
        ("devices/d1/whole/temp", #" { "v" : 21.5 , "escaped" : "\u00e9\n\/" } "#, .template),
        ("devices/d1/whole/temp", #"{"v":1,"v":2}"#, .template),
        ("devices/d1/whole/temp", "17", .template),
        ("devices/d1/whole/temp", #""a string""#, .template),
        ("devices/d1/whole/temp", "null", .template),
        ("devices/d1/whole/temp", "{not json", .fullMapping),
        ("devices/d2/typed", #"{"a":1}"#, .template),
        ("devices/d1/pointer", #"{"value":{"t":20},"other":1}"#, .template),
        ("devices/d1/pointer", #"{"other":1}"#, .fullMapping),
        ("devices/d1/pointer", #"{"value":5}"#, .fullMapping),
        ("devices/d1/fields", #"{"t":20,"h":{"value":40}}"#, .template),
        ("devices/d1/label", "Küche \"1\"\t\\", .template),
        ("devices/d1/frame", "\u{1}\u{2}binary", .template),
        ("devices/d1/number", " -3.25e2\n", .template),
        ("devices/d1/number", "twelve", .fullMapping),
        ("devices/d1/attributes", #"{"location":"hall"}"#, .template),
        ("devices/d1/attributes", "[1,2]", .fullMapping),
        ("devices/d1/gone", "[1,2]", .template),
        ("devices/d1/echo", #"{"a":1}"#, .fullMapping),
        ("devices/d1/wrapped", #"{"headers":{"x-a":"1"},"value":{"a":1}}"#, .fullMapping),
        ("devices/d1/correlated/abc", #"{"a":1}"#, .fullMapping),
        ("devices/d1/message", #"{"a":1}"#, .fullMapping),
    ]

    static let generatedLike = "0f8e1c2a-1111-4222-8333-000000000001"

    /// Both ways for every case, with ids the bridge generates and ids that need escaping.
    @Test(arguments: [[generatedLike], [#"id "quoted" \ back"#, "ü名😀", "tab\there"]])
    func theTemplateEncodesWhatTheMappingEncodes(ids: [String]) throws {
        let configuration = try configuration(Self.yaml)
        let mapper = UplinkMapper(configuration: configuration)
        for (topic, payload, expected) in Self.cases {
            let message = publication(topic, payload)
            let route = try #require(try DittoPublication.route(topic: topic, mapper: mapper, ditto: configuration.ditto))
            let full = Environment(ids: ids)
            let fast = Environment(ids: ids)
            let mapped = Result { try DittoPublication.uplink(message, route: route, mapper: mapper, environment: full.environment) }
            let encoded = try DittoPublication.encodedUplink(message, route: route, mapper: mapper, environment: fast.environment)
            switch expected {
            case .template:
                let publication = try #require(encoded, "\(topic) \(payload): no template")
                let reference = try mapped.get().encoded
                #expect(text(publication.payload) == text(reference.payload), "\(topic) \(payload)")
                #expect(publication.properties == reference.properties, "\(topic) \(payload)")
                #expect(publication.topic == reference.topic)
                #expect(publication.rule == reference.rule)
                #expect(fast.callCount == full.callCount && fast.callCount == 3, "\(topic) \(payload)")
            case .fullMapping:
                #expect(encoded == nil, "\(topic) \(payload)")
                #expect(fast.callCount == 0, "\(topic) \(payload): drew from the environment")
            }
        }
    }

    /// Ids the template was not made for (empty, over 128 characters) take the full mapping with the values
    /// already drawn: the same bytes, or the same error.
    @Test func idsTheTemplateDoesNotTakeAreMappedInFull() throws {
        let configuration = try configuration(Self.yaml)
        let mapper = UplinkMapper(configuration: configuration)
        let message = publication("devices/d1/whole/temp", #"{"v":1}"#)
        let route = try #require(try DittoPublication.route(topic: message.topic, mapper: mapper, ditto: configuration.ditto))

        let long = String(repeating: "x", count: Envelope.EventTemplate.maximumCorrelationIDLength + 1)
        let fast = try #require(try DittoPublication.encodedUplink(
            message, route: route, mapper: mapper, environment: Environment(ids: [long]).environment))
        let full = try DittoPublication.uplink(message, route: route, mapper: mapper,
                                               environment: Environment(ids: [long]).environment).encoded
        #expect(fast.payload == full.payload)
        #expect(fast.properties == full.properties)

        let fullError = mappingError {
            _ = try DittoPublication.uplink(message, route: route, mapper: mapper, environment: Environment(ids: [""]).environment)
        }
        let fastError = mappingError {
            _ = try DittoPublication.encodedUplink(message, route: route, mapper: mapper, environment: Environment(ids: [""]).environment)
        }
        #expect(fullError != nil && fastError == fullError)
    }

    /// A message whose MQTT 5 properties become headers takes the full mapping; one whose properties do not
    /// (an expiry, a payload format) keeps the template.
    @Test func propertiesThatBecomeHeadersTakeTheFullMapping() throws {
        let configuration = try configuration(Self.yaml)
        let mapper = UplinkMapper(configuration: configuration)
        let topic = "devices/d1/whole/temp"
        let route = try #require(try DittoPublication.route(topic: topic, mapper: mapper, ditto: configuration.ditto))
        var withHeaders: [PublishProperties] = []
        var properties = PublishProperties()
        properties.userProperties = userProperties([("x-trace", "1")])
        withHeaders.append(properties)
        properties = PublishProperties()
        properties.correlationData = bytes("device-id")
        withHeaders.append(properties)
        properties = PublishProperties()
        properties.contentType = "application/json"
        withHeaders.append(properties)
        for properties in withHeaders {
            let environment = Environment(ids: [Self.generatedLike])
            let message = publication(topic, "1", properties: properties)
            #expect(try DittoPublication.encodedUplink(message, route: route, mapper: mapper, environment: environment.environment) == nil)
            #expect(environment.callCount == 0)
            #expect(!HeaderMapper.takesNoHeaders(fromEvent: properties))
        }
        var harmless = PublishProperties()
        harmless.messageExpiryInterval = 30
        harmless.payloadFormatIndicator = 1
        harmless.correlationData = []
        harmless.contentType = ""
        #expect(HeaderMapper.takesNoHeaders(fromEvent: harmless))
        let message = publication(topic, "1", properties: harmless)
        let fast = try #require(try DittoPublication.encodedUplink(
            message, route: route, mapper: mapper, environment: Environment(ids: [Self.generatedLike]).environment))
        let full = try DittoPublication.uplink(message, route: route, mapper: mapper,
                                               environment: Environment(ids: [Self.generatedLike]).environment).encoded
        #expect(fast.payload == full.payload)
        #expect(fast.properties == full.properties)
    }
}
