import BridgeConfig
import BridgeMapping
import DittoProtocol
import MQTT
import Testing

/// A configuration from YAML text; a config error fails the test with the loader's messages.
func configuration(_ yaml: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws -> BridgeConfiguration {
    do {
        return try BridgeConfiguration.parse(yaml: yaml, fileName: "test.yaml", environment: [:])
    } catch {
        Issue.record("config rejected: \(error)", sourceLocation: sourceLocation)
        throw error
    }
}

/// Fixed revision, timestamp and correlation id, so expectations are exact.
let fixedEnvironment = UplinkEnvironment(
    nextRevision: { _ in 42 },
    timestamp: { "2026-11-23T10:00:00.000Z" },
    newCorrelationID: { "generated-id" })

/// Encodes the envelope and decodes it again with Ditto's checks; the test fails if Ditto would reject it.
@discardableResult
func redecoded(_ envelope: Envelope, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws -> Envelope {
    do {
        let decoded = try Envelope.decode(envelope.encoded())
        #expect(decoded.topic == envelope.topic, sourceLocation: sourceLocation)
        #expect(decoded.path == envelope.path, sourceLocation: sourceLocation)
        #expect(decoded.status == envelope.status, sourceLocation: sourceLocation)
        return decoded
    } catch {
        Issue.record("Ditto would reject \(String(decoding: envelope.encoded(), as: UTF8.self)): \(error)",
                     sourceLocation: sourceLocation)
        throw error
    }
}

/// A Ditto Protocol envelope from JSON text (what Ditto would send).
func envelope(_ json: String) throws -> Envelope {
    try Envelope.decode(Array(json.utf8))
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

/// The mapping error a throwing call produces, or a recorded issue when it does not throw one.
func mappingError(sourceLocation: Testing.SourceLocation = #_sourceLocation,
                  _ body: () throws -> Void) -> MappingError? {
    do {
        try body()
        Issue.record("expected a MappingError", sourceLocation: sourceLocation)
        return nil
    } catch let error as MappingError {
        return error
    } catch {
        Issue.record("expected a MappingError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

func publication(_ topic: String, _ payload: String, properties: PublishProperties = .init()) -> MQTTMessage {
    MQTTMessage(topic: topic, payload: bytes(payload), properties: properties)
}

func userProperties(_ pairs: [(String, String)]) -> [UserProperty] {
    pairs.map { UserProperty(name: $0.0, value: $0.1) }
}

/// Every reserved header the bridge must never forward, in either direction. Ditto's headers docs name them.
let reservedSamples: [String] = [
    "ditto-auth-context", "ditto-dry-run", "ditto-read-subjects", "ditto-read-revoked-subjects", "ditto-origin",
    "ditto-reply-target", "ditto-expected-response-types", "ditto-inbound-payload-mapper", "ditto-originator",
    "ditto-entity-id", "ditto-connection-id", "ditto-metadata", "ditto-weak-ack", "ditto-event-journal-tags",
    "ditto-sudo", "ditto-retrieve-deleted", "ditto-ackgregator-address", "ditto-pre-defined-extra-fields",
    "ditto-partial-access-paths", "ditto-policy-view-fields-selector", "ditto-message-direction",
    "ditto-message-subject", "ditto-message-thing-id", "ditto-message-feature-id", "Ditto-Custom-Anything",
    "channel", "raw-request-url", "raw-request-uri", "read-subjects", "subject", "timeout-access", "authorization",
    "reply-to", "etag", "www-authenticate", "if-match", "if-none-match", "entity-revision", "historical-headers",
    "live-channel-condition-matched", "divert-response-to-connection", "divert-expected-response-types",
    "diverted-response-from-connection", "status", "timestamp", "mqtt.topic", "mqtt.qos", "mqtt.retain",
    "mqtt.message-expiry-interval", "Channel", "AUTHORIZATION",
]
