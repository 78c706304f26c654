import BridgeConfig
import Foundation
import BridgeMapping
import DittoProtocol
import MQTT

/// `bridge-bench mapping`: the per-message work without I/O, with the data-path benchmark's rules and payloads.
/// Uplink: match, map, encode the envelope and build the publish properties, as `DataPlane` does per message;
/// downlink: a live message's round trip through the mapper.
enum MappingBenchmarks {
    static func run() throws {
        let filter = CommandLine.arguments.count > 2 ? CommandLine.arguments[2] : nil
        let yaml = Datapath.bridgeConfig(devicePort: 1883, ditto: .broker(port: 1883), qos: .atLeastOnce, spool: nil, cycledTopics: true)
        let configuration = try BridgeConfiguration.parse(yaml: yaml, environment: [:])
        let mapper = UplinkMapper(configuration: configuration)
        let environment = UplinkEnvironment(
            nextRevision: { _ in 1 }, timestamp: { "2026-11-28T12:00:00.123Z" }, newCorrelationID: { CorrelationID.generate() })
        let topics = (0..<20).map { "devices/device-\($0)/telemetry/temperature" }
        let payloads = (0..<20).map { Telemetry.payload(device: $0, phase: 2, sequence: 12_345, timestamp: 1_234_567_890_123) }
        print("bridge-bench mapping (one core; the data-path benchmark's rule and \(Telemetry.size)-byte payload)")
        var index = 0
        ProtocolBenchmarks.measure("uplink map+encode (telemetry -> live event)", filter: filter) {
            index = (index + 1) % 20
            let message = MQTTMessage(topic: topics[index], payload: payloads[index], qos: .atLeastOnce)
            guard let mapped = try? DittoPublication.uplink(message, mapper: mapper, ditto: configuration.ditto,
                                                            environment: environment) else { return 0 }
            let properties = DittoPublication.properties(for: mapped.envelope)
            return mapped.envelope.encoded().count + mapped.topic.utf8.count + (properties.correlationData?.count ?? 0)
        }
        // As `DataPlane` runs it: the route of each topic kept, only the payload mapped per message.
        let routes = topics.compactMap { try? DittoPublication.route(topic: $0, mapper: mapper, ditto: configuration.ditto) }
        ProtocolBenchmarks.measure("uplink map+encode, route kept per topic", filter: filter) {
            index = (index + 1) % 20
            let message = MQTTMessage(topic: topics[index], payload: payloads[index], qos: .atLeastOnce)
            guard let mapped = try? DittoPublication.uplink(message, route: routes[index], mapper: mapper,
                                                            environment: environment) else { return 0 }
            let properties = DittoPublication.properties(for: mapped.envelope)
            return mapped.envelope.encoded().count + mapped.topic.utf8.count + (properties.correlationData?.count ?? 0)
        }
        // The same through the topic's event template, as `DataPlane` runs a message without headers of its own.
        ProtocolBenchmarks.measure("uplink through the topic's event template", filter: filter) {
            index = (index + 1) % 20
            let message = MQTTMessage(topic: topics[index], payload: payloads[index], qos: .atLeastOnce)
            guard let encoded = try? DittoPublication.encodedUplink(message, route: routes[index], mapper: mapper,
                                                                    environment: environment) else { return 0 }
            return encoded.payload.count + encoded.topic.utf8.count + (encoded.properties.correlationData?.count ?? 0)
        }
        func residentBytes() -> Int {
            let fields = (try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8))?.split(separator: " ") ?? []
            return (fields.count > 1 ? Int(fields[1]) ?? 0 : 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
        }
        // Kept until both tables are measured: freed pages would hide the second table from resident memory.
        var kept: [String: DittoPublication.Route] = [:]
        var keptPoints: [String: DittoPublication.Route] = [:]
        if filter == nil || "route memory".contains(filter ?? "") {
            // What the mapping's routes cost per device topic kept whole in a dictionary (resident memory): with the
            // path rendered per topic (the telemetry rule's `{sensor}`), and with a path all topics share (the
            // topics scenarios' rule, a gateway's topic per point). The runtime keeps less (its routes without
            // their thing, topics in an arena): `KeptDecisionsTests` counts that.
            func measure(_ name: String, into table: inout [String: DittoPublication.Route], topic: (Int) -> String) {
                let before = residentBytes()
                for device in 0..<20_000 {
                    let topic = topic(device)
                    table[topic] = try? DittoPublication.route(topic: topic, mapper: mapper, ditto: configuration.ditto)
                }
                let perTopic = Double(residentBytes() - before) / Double(table.count)
                print("route memory, \(name): \(Int(perTopic)) bytes per kept topic (\(table.count) topics)")
            }
            measure("path per topic", into: &kept) { "devices/device-\($0)/telemetry/temperature" }
            measure("path shared", into: &keptPoints) { Datapath.Scenario.cycledTopic($0, of: 1_000_000) }
        }
        // The downlink's per-round-trip work, as `DataPlane` does it: decode Ditto's live message, route it, build
        // the device's publish, take the device's MQTT 5 answer and build and encode Ditto's response.
        let downlink = DownlinkMapper(configuration: configuration)
        let things = (0..<20).map { String(format: "dev-%02d", $0) }
        let requests = try things.enumerated().map { index, device in
            try Datapath.request(phase: "measured", index: index, thing: "org.bench:" + device)
        }
        // `DataPlane` keeps each signal's target (rule and captures) and each reply topic's matches.
        var targets: [Int: DownlinkTarget] = [:]
        var replyMatches: [Int: [DownlinkMapper.ReplyTopicMatch]] = [:]
        ProtocolBenchmarks.measure("downlink round trip mapping", filter: filter) {
            index = (index + 1) % 20
            guard let request = try? Envelope.decode(requests[index]), (try? downlink.checkRoutable(request)) != nil,
                  let target = targets[index] ?? (try? downlink.target(request))
            else { return 0 }
            targets[index] = target
            let route = downlink.route(request, to: target)
            guard let publication = try? downlink.devicePublication(for: request, route: route, messageExpiry: 10)
            else { return 0 }
            let answer = MQTTMessage(
                topic: publication.properties.responseTopic ?? "", payload: Array(#""pong""#.utf8),
                properties: PublishProperties(contentType: "application/json", correlationData: publication.properties.correlationData))
            let matches = replyMatches[index] ?? downlink.replyTopicMatches(answer.topic)
            replyMatches[index] = matches
            guard let reply = downlink.reply(from: answer, matches: matches), downlink.isAnswer(reply, on: answer.topic, to: route),
                  let response = try? downlink.response(to: request, route: route, reply: reply)
            else { return 0 }
            let properties = DittoPublication.properties(for: response)
            return publication.payload.count + response.encoded().count + (properties.correlationData?.count ?? 0)
        }
        if filter == nil || "target memory".contains(filter ?? "") {
            // What the runtime's table of kept downlink targets costs per Ditto signal (topic and path).
            let before = residentBytes()
            var kept: [DownlinkSignal: DownlinkTarget] = [:]
            for device in 0..<20_000 {
                guard let request = try? Envelope.decode(Datapath.request(phase: "memory", index: device,
                                                                          thing: "org.bench:" + String(format: "dev-%05d", device))),
                      let target = try? downlink.target(request)
                else { continue }
                kept[DownlinkSignal(request)] = target
            }
            let perSignal = Double(residentBytes() - before) / Double(kept.count)
            print("target memory: \(Int(perSignal)) bytes per kept downlink signal (\(kept.count) signals)")
        }
        withExtendedLifetime((kept, keptPoints)) {}
        ProtocolBenchmarks.measure("uplink rule match", filter: filter) {
            index = (index + 1) % 20
            return (try? mapper.rules[0].match(topic: topics[index]))?.values.count ?? 0
        }
        if let mapped = try? DittoPublication.uplink(MQTTMessage(topic: topics[0], payload: payloads[0]), mapper: mapper,
                                                     ditto: configuration.ditto, environment: environment) {
            ProtocolBenchmarks.measure("uplink envelope encode", filter: filter) { mapped.envelope.encoded().count }
            print(String(decoding: mapped.envelope.encoded(), as: UTF8.self))
        }
    }
}
