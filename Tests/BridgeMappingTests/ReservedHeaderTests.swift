import BridgeConfig
import BridgeMapping
import DittoProtocol
import MQTT
import Testing

/// Each reserved header trying to pass each way that is not an MQTT 5 user property: the 3.1.1 JSON wrapper
/// (both directions), a pass-through envelope from a Ditto-native device, and an envelope to one.
@Suite struct ReservedHeaderTests {
    static let yaml = """
        connections: { device: { host: 127.0.0.1, mqtt-version: "3.1.1" } }
        defaults: { namespace: org.example }
        headers: { mqtt311: wrapper }
        uplink:
          - name: wrapped
            topic: "devices/{deviceId}/telemetry/{sensor}"
            thing-id: "{namespace}:{deviceId}"
            event: { path: "/features/{sensor}/properties/value" }
            payload: json
          - name: native
            topic: "devices/{deviceId}/ditto"
            thing-id: "{namespace}:{deviceId}"
            passthrough: true
        downlink:
          - name: inbox
            match: { messages: { subject: "*" } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/inbox/{subject}"
            reply: { mode: topic, topic: "devices/{deviceId}/res/{correlationId}" }
          - name: native-in
            match: { commands: { actions: [modify] } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/ditto-in"
            payload: envelope
        """

    /// Values Ditto's header validators accept for every sample, so only the reservation can drop them.
    static func value(for name: String) -> JSONValue {
        switch name.lowercased() {
        case "ditto-auth-context", "ditto-metadata", "historical-headers", "ditto-partial-access-paths",
             "ditto-pre-defined-extra-fields-read-grant": ["a": 1]
        case "ditto-read-subjects", "ditto-read-revoked-subjects", "ditto-expected-response-types",
             "ditto-event-journal-tags", "ditto-pre-defined-extra-fields": ["a"]
        case "ditto-dry-run", "ditto-weak-ack", "ditto-sudo", "ditto-retrieve-deleted", "live-channel-condition-matched": true
        case "ditto-reply-target", "entity-revision", "status": 1
        case "channel": "live"
        case "timestamp": "2026-01-01T00:00:00Z"
        default: "v"
        }
    }

    func headersJSON(_ name: String, extra: [(String, JSONValue)]) -> String {
        var object = JSONObject()
        for (key, value) in extra { object[key] = value }
        object[name] = Self.value(for: name)
        return JSON.serializeToString(.object(object))
    }

    @Test func wrapperHeadersFollowDittosHeaderRules() throws {
        let mapper = UplinkMapper(configuration: try configuration(Self.yaml))
        let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        let payload = #"{"headers": {"X-Mode": "a", "x-mode": "b", "x-place": "Zürich 東京", "traceparent": "\#(trace)", "correlation-id": "w-9"}, "value": 1}"#
        let event = try redecoded(try mapper.map(publication("devices/d/telemetry/t", payload), environment: fixedEnvironment).envelope)
        #expect(event.headers.names.filter { $0.lowercased() == "x-mode" } == ["x-mode"])
        #expect(event.headers["X-MODE"] == "b")
        #expect(event.headers["x-place"] == "Zürich 東京")
        #expect(event.headers["traceparent"] == trace)
        #expect(event.headers.correlationID == "w-9")

        let big = String(repeating: "z", count: 6_000)
        let tooLarge = mappingError {
            _ = try mapper.map(publication("devices/d/telemetry/t", #"{"headers": {"x-big": "\#(big)"}, "value": 1}"#),
                               environment: fixedEnvironment)
        }
        #expect(tooLarge?.dittoError.status == 431)
        let invalid = mappingError {
            _ = try mapper.map(publication("devices/d/telemetry/t", #"{"headers": {"dry-run": "yes"}, "value": 1}"#),
                               environment: fixedEnvironment)
        }
        #expect(invalid?.dittoError.status == 400)
        #expect(invalid?.dittoError.error == "header.invalid")
    }

    @Test func wrapperToTheDeviceKeepsValuesAndSpelling() throws {
        let mapper = DownlinkMapper(configuration: try configuration(Self.yaml))
        let request = try envelope(#"{"topic":"org.example/d/things/live/messages/hi","headers":{"correlation-id":"c","X-Place":"Zürich 東京","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","timeout":"5s"},"path":"/inbox/messages/hi","value":1}"#)
        let published = try mapper.devicePublication(for: request, route: try mapper.route(request), messageExpiry: nil)
        let headers = try #require(try JSON.parse(published.payload)["headers"]?.objectValue)
        #expect(headers["X-Place"] == "Zürich 東京")
        #expect(headers["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        #expect(headers["timeout"] == "5s")
        #expect(published.properties.contentType == "application/json")
    }

    @Test(arguments: reservedSamples)
    func fromAWrapper(_ name: String) throws {
        let mapper = UplinkMapper(configuration: try configuration(Self.yaml))
        let payload = #"{"headers": \#(headersJSON(name, extra: [("x-a", "1")])), "value": 1}"#
        let event = try redecoded(try mapper.map(publication("devices/d/telemetry/t", payload), environment: fixedEnvironment).envelope)
        #expect(event.headers[name] == nil)
        #expect(event.headers["x-a"] == "1")
    }

    @Test(arguments: reservedSamples.filter { !["status", "channel", "Channel"].contains($0) })
    func fromAPassThroughEnvelope(_ name: String) throws {
        let mapper = UplinkMapper(configuration: try configuration(Self.yaml))
        let headers = headersJSON(name, extra: [("x-a", "1"), ("correlation-id", "p")])
        let json = #"{"topic":"org.example/d/things/live/events/modified","headers":\#(headers),"path":"/attributes/a","value":1,"revision":1}"#
        let event = try redecoded(try mapper.map(publication("devices/d/ditto", json), environment: fixedEnvironment).envelope)
        #expect(event.headers[name] == nil)
        #expect(event.headers["x-a"] == "1")
        #expect(event.headers.correlationID == "p")
    }

    @Test(arguments: reservedSamples)
    func intoAWrapper(_ name: String) throws {
        let mapper = DownlinkMapper(configuration: try configuration(Self.yaml))
        var request = try envelope(#"{"topic":"org.example/d/things/live/messages/hi","headers":{"correlation-id":"c","x-a":"1"},"path":"/inbox/messages/hi","value":1}"#)
        request.headers[name] = "v"
        let published = try mapper.devicePublication(for: request, route: try mapper.route(request), messageExpiry: nil)
        let headers = try #require(try JSON.parse(published.payload)["headers"]?.objectValue)
        #expect(!headers.keys.contains { $0.lowercased() == name.lowercased() })
        #expect(headers["x-a"] == "1")
        #expect(headers["correlation-id"] == "c")
    }

    @Test(arguments: reservedSamples)
    func intoAnEnvelope(_ name: String) throws {
        let mapper = DownlinkMapper(configuration: try configuration(Self.yaml))
        var request = try envelope(#"{"topic":"org.example/d/things/live/commands/modify","headers":{"correlation-id":"c","x-a":"1"},"path":"/attributes/a","value":1}"#)
        request.headers[name] = "v"
        let published = try mapper.devicePublication(for: request, route: try mapper.route(request), messageExpiry: nil)
        let forwarded = try Envelope.decode(published.payload)
        #expect(forwarded.headers[name] == nil)
        #expect(forwarded.headers["x-a"] == "1")
    }

    @Test(arguments: reservedSamples)
    func fromAWrappedReply(_ name: String) throws {
        let mapper = DownlinkMapper(configuration: try configuration(Self.yaml))
        let request = try envelope(#"{"topic":"org.example/d/things/live/messages/hi","headers":{"correlation-id":"c"},"path":"/inbox/messages/hi","value":1}"#)
        let route = try mapper.route(request)
        let answer = #"{"headers": \#(headersJSON(name, extra: [("x-b", "2")])), "value": "ok"}"#
        let reply = try #require(mapper.reply(from: publication("devices/d/res/c", answer)))
        let response = try redecoded(try mapper.response(to: request, route: route, reply: reply))
        #expect(response.headers[name] == nil)
        #expect(response.headers["x-b"] == "2")
        #expect(response.headers.correlationID == "c")
    }
}
