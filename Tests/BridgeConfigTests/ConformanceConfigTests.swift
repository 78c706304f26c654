import BridgeConfig
import DittoProtocol
import Foundation
import Testing

/// `check` for issue 10: payload-mode correlation that cannot collide, RFC 6901 device pointers, pass-through
/// twin opt-in, passwords that must be strings.
struct ConformanceConfigTests {
    static func payloadMode(_ replyLines: String) -> String {
        """
        connections: { device: { host: 127.0.0.1, mqtt-version: "3.1.1" } }
        defaults: { namespace: org.example }
        downlink:
          - name: settings
            match: { commands: { actions: [modify] } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/cmd"
            reply:
              mode: payload
              topic: "devices/{deviceId}/cmd-reply"
        \(replyLines)
        """
    }

    @Test func payloadModeWithSiblingPointersIsAccepted() throws {
        let c = try Fixture.load(Self.payloadMode("      correlation-pointer: /id"))
        #expect(c.downlink[0].reply.effectiveValuePointer?.description == "/value")
        _ = try Fixture.load(Self.payloadMode("      correlation-pointer: /meta/id\n      value-pointer: /data\n      status-pointer: /meta/status"))
        // Array indexes and escapes are RFC 6901 (the request builds objects; the device reads them back alike).
        _ = try Fixture.load(Self.payloadMode("      correlation-pointer: /a~1b\n      value-pointer: /a~0b"))
    }

    @Test func payloadModeRefusesAValueAroundTheID() {
        expectSingleError(
            Self.payloadMode("      correlation-pointer: /id\n      value-pointer: \"\""), line: 12,
            keyPath: "downlink[0].reply.value-pointer", message: "must not be empty")
    }

    @Test(arguments: [
        ("/id", "/id"), ("/id", "/id/inner"), ("/data/id", "/data"), ("/a~1b", "/a~1b/c"),
    ])
    func payloadModeRefusesOverlappingPointers(_ correlation: String, _ value: String) {
        expectSingleError(
            Self.payloadMode("      correlation-pointer: \(correlation)\n      value-pointer: \(value)"), line: 12,
            keyPath: "downlink[0].reply.value-pointer", message: "overlap")
    }

    @Test func payloadModeRefusesAStatusAtTheID() {
        expectSingleError(
            Self.payloadMode("      correlation-pointer: /meta\n      status-pointer: /meta/status"), line: 12,
            keyPath: "downlink[0].reply.status-pointer", message: "overlap")
    }

    @Test func payloadModeNeedsNoCorrelationLevelInTheTopic() throws {
        // The id travels in the request payload, so a 3.1.1 device needs no {correlationId} level.
        let c = try Fixture.load(Self.payloadMode("      correlation-pointer: /id"))
        #expect(c.warnings.isEmpty)
    }

    @Test(arguments: ["value", "/a~2", "/a~"])
    func invalidDevicePointers(_ pointer: String) {
        expectSingleError(
            BrokenConfigTests.telemetry(replacing: 9, with: "    payload: { format: json, pointer: \"\(pointer)\" }"),
            line: 9, keyPath: "uplink[0].payload.pointer", message: "is not a JSON pointer")
    }

    @Test(arguments: ["/readings/0", "/a~1b", "/a~0b", "/", "", "/a//b"])
    func rfc6901DevicePointers(_ pointer: String) throws {
        _ = try Fixture.load(BrokenConfigTests.telemetry(replacing: 9, with: "    payload: { format: json, pointer: \"\(pointer)\" }"))
    }

    static func message(contentType: String, payload: String) -> String {
        """
        defaults: { namespace: org.example }
        uplink:
          - name: blob
            topic: "devices/{deviceId}/blob"
            thing-id: "{namespace}:{deviceId}"
            message: { subject: blob, content-type: "\(contentType)" }
            payload: \(payload)
        """
    }

    /// `check` classifies content types as Ditto does (one rule, `ContentTypeStrategy`): merge-patch is not JSON
    /// for a message payload, and nothing is trimmed.
    @Test func contentTypesAreClassifiedAsDittoDoes() throws {
        _ = try Fixture.load(Self.message(contentType: "application/merge-patch+json", payload: "bytes"))
        _ = try Fixture.load(Self.message(contentType: "application/vnd.acme+json", payload: "json"))
        _ = try Fixture.load(Self.message(contentType: "text/csv; charset=utf-8", payload: "text"))
        expectSingleError(
            Self.message(contentType: "application/merge-patch+json", payload: "json"), line: 6,
            keyPath: "uplink[0].message.content-type", message: "a JSON value needs a JSON content type")
        expectSingleError(
            Self.message(contentType: " application/json", payload: "json"), line: 6,
            keyPath: "uplink[0].message.content-type", message: "is not a media type")
        expectSingleError(
            Self.message(contentType: "application/json ;charset=utf-8", payload: "json"), line: 6,
            keyPath: "uplink[0].message.content-type", message: "is not a media type")
    }

    static func password(_ value: String) -> String {
        """
        connections:
          device:
            host: 127.0.0.1
            username: bridge
            password: \(value)
        uplink: []
        """
    }

    /// A password written as a YAML number (or boolean, or null) is an error at its line and column, and the
    /// message does not repeat it.
    @Test(arguments: ["12345", "0x1F", "1e3", "true", "~", "[a]"])
    func passwordsMustBeText(_ value: String) {
        expectSingleError(
            Self.password(value), line: 5, column: 15, keyPath: "connections.device.password",
            message: "expected a text, found", hint: "quote it")
        let (errors, _) = Fixture.diagnose(Self.password(value))
        #expect(errors.allSatisfy { !$0.description.contains(value) || value.count < 2 })
    }

    @Test func quotedPasswordsAreText() throws {
        let c = try Fixture.load(Self.password("\"12345\""))
        #expect(c.connections.device.username == "bridge")
        #expect(c.warnings.contains { $0.message.contains("password is written in the config file") })
    }
}
