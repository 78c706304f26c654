import BridgeConfig
import BridgeMapping
import DittoProtocol
import Foundation
import MQTT
import Testing

/// README.md's "Using it": the minimal config and its two messages are what the mapping does, byte for byte.
struct ReadmeExampleTests {
    /// The README's fenced blocks after "A minimal config": the YAML, then the three JSON messages in order.
    static func blocks() throws -> (yaml: String, json: [String]) {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        let start = try #require(readme.range(of: "A minimal config"), "README.md has no minimal config")
        var yaml: String?
        var json: [String] = []
        var fence: (language: String, lines: [String])?
        for line in readme[start.upperBound...].split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("## ") { break }
            if line.hasPrefix("```") {
                if let open = fence {
                    if open.language == "yaml", yaml == nil { yaml = open.lines.joined(separator: "\n") }
                    if open.language == "json" { json.append(open.lines.joined(separator: "\n")) }
                    fence = nil
                } else {
                    fence = (String(line.dropFirst(3)), [])
                }
            } else if fence != nil {
                fence?.lines.append(String(line))
            }
        }
        return (try #require(yaml, "no yaml block after the minimal config"), json)
    }

    @Test func theMinimalConfigLoadsAndMapsTheREADMEsMessages() throws {
        let (yaml, json) = try Self.blocks()
        try #require(json.count == 3, "the README shows an event, Ditto's request and the response")
        let config = try configuration(yaml)

        // Device -> Ditto: `map --revision 1 --timestamp 2026-12-07T09:00:00Z` with the README's correlation id.
        let event = try DittoPublication.uplink(
            publication("devices/sensor-1/telemetry/temperature", #"{"value": 21.5}"#), configuration: config,
            environment: UplinkEnvironment(nextRevision: { _ in 1 }, timestamp: { "2026-12-07T09:00:00Z" },
                                           newCorrelationID: { "71f031be-5dce-478d-94a6-0036b7768740" }))
        #expect(event.topic == "ditto/in/org.example:sensor-1")
        #expect(text(event.envelope.encoded()) == json[0])

        // Ditto -> device: the live message, its publish to the device, the device's answer, Ditto's response.
        let mapper = DownlinkMapper(configuration: config)
        let request = try envelope(json[1])
        let route = try mapper.route(request)
        let published = try mapper.devicePublication(for: request, route: route, messageExpiry: 10)
        #expect(published.topic == "devices/sensor-1/inbox/ping")
        #expect(text(published.payload) == #"{"n":1}"#)
        #expect(published.properties.responseTopic == "devices/sensor-1/reply")
        #expect(published.properties.correlationData == bytes("c-1"))
        #expect(published.properties.contentType == "application/json")
        #expect(published.properties.messageExpiryInterval == 10)
        let answer = publication("devices/sensor-1/reply", #"{"pong":1}"#,
                                 properties: PublishProperties(correlationData: bytes("c-1")))
        let reply = try #require(mapper.reply(from: answer))
        let response = try mapper.response(to: request, route: route, reply: reply)
        #expect(text(response.encoded()) == json[2])
    }
}
