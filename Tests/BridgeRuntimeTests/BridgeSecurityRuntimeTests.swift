import BridgeRuntime
import DittoProtocol
import Foundation
import Logging
import MQTT
import Mosquitto
import MosquittoTestSupport
import Synchronization
import Testing

/// What the bridge logs, kept for a test to read.
struct CollectingLogHandler: LogHandler {
    struct Entry: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }

    final class Store: Sendable {
        let entries = Mutex<[Entry]>([])
        var all: [Entry] { entries.withLock { $0 } }
    }

    let store: Store
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        store.entries.withLock {
            $0.append(Entry(level: event.level, message: "\(event.message)", metadata: merged.mapValues { "\($0)" }))
        }
    }

    static func logger() -> (Logger, Store) {
        let store = Store()
        return (Logger(label: "bridge-security-test") { _ in CollectingLogHandler(store: store) }, store)
    }
}

/// Issue 21 on real brokers: a device names only response topics of its own, and `x-ditto-*` headers cross in
/// neither direction unless a rule names them.
@Suite("The bridge's own security rules on real brokers", .serialized)
struct BridgeSecurityRuntimeTests {
    @Test("asker names victim's command topic as its response topic: refused, logged, counted; the victim gets nothing")
    func responseTopicOfAnotherDevice() async throws {
        let (logger, logs) = CollectingLogHandler.logger()
        let harness = try await BridgeHarness(yaml: downlinkConfig, logger: logger)
        // Ditto answers every request it gets: without the confinement its answer would go to the victim.
        DeviceRequestTests().answerEveryRequest(harness, value: ["pwned": true])
        let (_, victimInbox) = try await harness.device("victim", subscribe: ["devices/victim/#"])
        let (asker, answers) = try await harness.device("asker", subscribe: ["devices/asker/answers"])

        try await asker.publish(to: "devices/asker/ask/config", payload: Array("{}".utf8),
                                properties: PublishProperties(responseTopic: "devices/victim/inbox/pwned",
                                                              correlationData: Array("attack-1".utf8)))
        #expect(await eventually(timeout: .seconds(10)) {
            harness.bridge.metrics["uplink.dropped.response-topic-refused"] == 1
        })
        // The legitimate request after it: forwarded and answered on the device's own topic.
        try await asker.publish(to: "devices/asker/ask/config", payload: Array("{}".utf8),
                                properties: PublishProperties(responseTopic: "devices/asker/answers",
                                                              correlationData: Array("own-1".utf8)))
        let answer = try #require(await answers.first { _ in true })
        #expect(answer.properties.correlationData == Array("own-1".utf8))
        #expect(try JSON.parse(answer.payload) == ["pwned": true])

        // Only the legitimate request reached Ditto, and nothing reached the victim.
        let forwarded = harness.fromBridge.messages.compactMap { try? Envelope.decode($0.payload) }
        #expect(forwarded.map(\.headers.correlationID) == ["own-1"])
        try await Task.sleep(for: .milliseconds(300))
        #expect(victimInbox.messages.isEmpty, "\(victimInbox.messages.map(\.topic))")
        #expect(harness.bridge.metrics["uplink.dropped.response-topic-refused"] == 1)

        let refusal = try #require(logs.all.first { $0.metadata["drop.kind"] == "response-topic-refused" })
        #expect(refusal.level == .warning)
        #expect(refusal.metadata["mqtt.topic"] == "devices/asker/ask/config")
        #expect(refusal.metadata["mqtt.response-topic"] == "devices/victim/inbox/pwned")
        #expect(refusal.metadata["rule"] == "requests")
        #expect(refusal.metadata["reason"]?.contains("devices/{deviceId}/#") == true)
        await harness.stop()
    }

    @Test("The reply-topic fallback still answers: an MQTT 3.1.1 device, and an MQTT 5 device that names no response topic")
    func replyTopicFallback() async throws {
        let harness = try await BridgeHarness(yaml: downlinkConfig)
        DeviceRequestTests().answerEveryRequest(harness, value: "ok")
        for (id, version) in [("old", MQTTVersion.v311), ("new", MQTTVersion.v5)] {
            let (device, inbox) = try await harness.device(id, version: version, subscribe: ["legacy/\(id)/answer/#"])
            try await device.publish(to: "legacy/\(id)/ask/req-\(id)/firmware", payload: Array("{}".utf8))
            let answer = try #require(await inbox.first { _ in true })
            #expect(answer.topic == "legacy/\(id)/answer/req-\(id)/200")
            #expect(answer.payload == Array(#""ok""#.utf8))
            await device.disconnect()
        }
        #expect(harness.bridge.metrics["uplink.dropped.response-topic-refused"] == 0)
        await harness.stop()
    }

    static let headerConfig = baseConnections + """

        headers: { allow: ["*"] }
        uplink:
          - name: telemetry
            topic: "devices/{deviceId}/telemetry"
            thing-id: "{namespace}:{deviceId}"
            event: { path: /features/t/properties/value }
          - name: telemetry-named
            topic: "named/{deviceId}/telemetry"
            thing-id: "{namespace}:{deviceId}"
            event: { path: /features/t/properties/value }
            headers: { allow: ["*", "x-ditto-pre-authenticated"] }
        downlink:
          - name: inbox
            match: { messages: { subject: "*" } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/inbox/{subject}"
            reply: { mode: none }
          - name: inbox-named
            priority: 1
            match: { messages: { subject: "named-*" } }
            thing-id: "{namespace}:{deviceId}"
            topic: "named/{deviceId}/inbox/{subject}"
            reply: { mode: none }
            headers: { allow: ["*", "x-ditto-foo"] }
        """

    @Test("A device's x-ditto-pre-authenticated user property does not reach Ditto unless the rule names it")
    func dittoExtensionHeadersFromDevices() async throws {
        let harness = try await BridgeHarness(yaml: Self.headerConfig)
        let (device, _) = try await harness.device("d1")
        var properties = PublishProperties()
        properties.userProperties = [UserProperty(name: "x-ditto-pre-authenticated", value: "nginx:admin"),
                                     UserProperty(name: "X-Ditto-Foo", value: "1"), UserProperty(name: "x-other", value: "kept")]
        try await device.publish(to: "devices/d1/telemetry", payload: Array("1".utf8), properties: properties)
        try await device.publish(to: "named/d1/telemetry", payload: Array("2".utf8), properties: properties)
        let events = try await harness.envelopes(count: 2)
        let plain = try #require(events.first { $0.value == 1 })
        #expect(plain.headers["x-ditto-pre-authenticated"] == nil)
        #expect(plain.headers["x-ditto-foo"] == nil)
        #expect(plain.headers["x-other"] == "kept")
        let named = try #require(events.first { $0.value == 2 })
        #expect(named.headers["x-ditto-pre-authenticated"] == "nginx:admin")
        #expect(named.headers["x-ditto-foo"] == nil)
        await device.disconnect()
        await harness.stop()
    }

    @Test("A Ditto header x-ditto-foo does not reach the device unless the rule names it")
    func dittoExtensionHeadersToDevices() async throws {
        let harness = try await BridgeHarness(yaml: Self.headerConfig)
        let (device, inbox) = try await harness.device("d2", subscribe: ["devices/d2/inbox/#", "named/d2/inbox/#"])
        let headers = [("x-ditto-foo", "from-ditto"), ("X-Ditto-Pre-Authenticated", "a"), ("x-other", "kept"),
                       ("response-required", "false")]
        try await harness.sendFromDitto(try liveMessage("org.example:d2", subject: "plain", correlationID: "h-1", headers: headers),
                                        thingID: "org.example:d2", correlationID: "h-1")
        try await harness.sendFromDitto(try liveMessage("org.example:d2", subject: "named-1", correlationID: "h-2", headers: headers),
                                        thingID: "org.example:d2", correlationID: "h-2")
        let received = await inbox.wait(for: 2)
        let plain = try #require(received.first { $0.topic == "devices/d2/inbox/plain" })
        let plainNames = plain.properties.userProperties.map { $0.name.lowercased() }
        #expect(!plainNames.contains { $0.hasPrefix("x-ditto-") }, "\(plainNames)")
        #expect(plainNames.contains("x-other"))
        let named = try #require(received.first { $0.topic == "named/d2/inbox/named-1" })
        #expect(named.properties.userProperties.contains(UserProperty(name: "x-ditto-foo", value: "from-ditto")))
        #expect(!named.properties.userProperties.contains { $0.name.lowercased() == "x-ditto-pre-authenticated" })
        await device.disconnect()
        await harness.stop()
    }
}
