import BridgeConfig
import BridgeMapping
import DittoProtocol
import MQTT
import Testing

/// Issue #22, item 1, in the mapping: a number Ditto cannot read never reaches an envelope, whichever way the
/// payload is read, and the refusal names it; what Ditto never sees does not matter.
@Suite struct DittoNumberMappingTests {
    static let yaml = """
        connections:
          device: { host: 127.0.0.1, port: 1883 }
          ditto: { host: 127.0.0.1, port: 1883 }
        defaults: { namespace: org.example }
        uplink:
          - { name: pointer, topic: "p/{deviceId}", thing-id: "{namespace}:{deviceId}",
              event: { path: /attributes/v }, payload: { format: json, pointer: /value } }
          - { name: fields, topic: "f/{deviceId}", thing-id: "{namespace}:{deviceId}",
              event: { action: merged, path: /features/f/properties }, payload: { format: json, fields: { t: /t } } }
          - { name: whole, topic: "w/{deviceId}", thing-id: "{namespace}:{deviceId}",
              event: { path: /features/f/properties }, payload: json }
          - { name: number, topic: "n/{deviceId}", thing-id: "{namespace}:{deviceId}",
              event: { path: /attributes/n }, payload: number }
          - { name: message, topic: "m/{deviceId}", thing-id: "{namespace}:{deviceId}",
              message: { subject: s }, payload: json }
          - { name: wrapped, topic: "x/{deviceId}", thing-id: "{namespace}:{deviceId}",
              event: { path: /attributes/x }, payload: json, headers: { mqtt311: wrapper } }
          - { name: native, topic: "native/{deviceId}", thing-id: "{namespace}:{deviceId}", passthrough: {} }
        """

    func map(_ topic: String, _ payload: String) throws(MappingError) -> UplinkResult {
        let mapper = UplinkMapper(configuration: try! BridgeConfiguration.parse(yaml: Self.yaml, environment: [:]))
        return try mapper.map(MQTTMessage(topic: topic, payload: Array(payload.utf8)), environment: UplinkEnvironment(
            nextRevision: { _ in 1 }, timestamp: { "2026-01-01T00:00:00Z" }, newCorrelationID: { "c" }))
    }

    func refusal(_ topic: String, _ payload: String) -> MappingError? {
        do {
            _ = try map(topic, payload)
            return nil
        } catch {
            return error
        }
    }

    @Test func refusedOnEveryPathWithTheNumberNamed() {
        let big = "12345678901234567890"
        for (topic, payload) in [("p/d", #"{"value": \#(big)}"#), ("p/d", #"{"value": [1, \#(big)]}"#),
                                 ("f/d", #"{"t": \#(big)}"#), ("w/d", #"{"a":\#(big)}"#), ("w/d", #"{ "a": \#(big) }"#),
                                 ("n/d", " \(big)\n"), ("m/d", #"{"a":\#(big)}"#),
                                 ("x/d", #"{"headers": {}, "value": \#(big)}"#)] {
            let error = refusal(topic, payload)
            #expect(error?.kind == .invalidPayload, "\(topic) \(payload)")
            #expect(error?.reason.contains("Number \(big) is out of the range Ditto reads") == true, "\(String(describing: error))")
        }
        let envelope = #"{"topic":"org.example/d/things/live/events/modified","headers":{},"path":"/attributes/a","value":1e309,"revision":1}"#
        let error = refusal("native/d", envelope)
        #expect(error?.kind == .invalidProtocol)
        #expect(error?.dittoError.error == "json.invalid")
        #expect(error?.reason.contains("Number 1e309 is out of the range Ditto reads") == true)
    }

    @Test func whatDittoNeverSeesDoesNotMatter() throws {
        let big = "123456789012345678901234567890"
        #expect(try map("p/d", #"{"serial": \#(big), "value": 7}"#).envelope.value == 7)
        #expect(try map("f/d", #"{"serial": \#(big), "t": 7}"#).envelope.value == ["t": 7])
        let wrapped = try map("x/d", #"{"headers": {"x-serial": \#(big)}, "value": 7}"#).envelope
        #expect(wrapped.value == 7)
        #expect(wrapped.headers["x-serial"] == big)
        #expect(try map("n/d", "9223372036854775807").envelope.value == .number(JSONNumber(Int64.max)))
    }
}
