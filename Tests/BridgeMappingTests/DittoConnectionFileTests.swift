import BridgeConfig
import BridgeMapping
import DittoProtocol
import Foundation
import MQTT
import Testing

/// Config/ditto-connection.json is the Ditto side of Config/bridge.yaml; they must agree.
struct DittoConnectionFileTests {
    @Test func connectionJSONMatchesBridgeYAML() throws {
        let directory = shippedConfigDirectory
        let data = try Data(contentsOf: directory.appendingPathComponent("ditto-connection.json"))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let c = try BridgeConfiguration.load(path: directory.appendingPathComponent("bridge.yaml").path, environment: [:])

        #expect(json["connectionType"] as? String == "mqtt-5")
        #expect(json["id"] as? String == c.ditto.connectionID)
        let source = try #require((json["sources"] as? [[String: Any]])?.first)
        let target = try #require((json["targets"] as? [[String: Any]])?.first)
        #expect(source["qos"] as? Int == Int(c.ditto.qos.rawValue))
        #expect(target["qos"] as? Int == Int(c.ditto.qos.rawValue))

        // The bridge publishes where the source listens, and on exactly the address enforcement expects.
        let thing = ["thingId": "org.example:sensor-1", "namespace": "org.example", "thingName": "sensor-1"]
        let published = try c.ditto.publishTopic.render(thing)
        let addresses = try #require(source["addresses"] as? [String])
        #expect(try addresses.contains { try TopicTemplate($0).match(published) != nil })
        let enforcement = try #require(source["enforcement"] as? [String: Any])
        let filters = try #require(enforcement["filters"] as? [String])
        #expect(filters.map { $0.replacingOccurrences(of: "{{ thing:id }}", with: "org.example:sensor-1") }.contains(published))

        // What the target publishes reaches the bridge's subscription.
        let targetAddress = try #require(target["address"] as? String)
        #expect(c.ditto.subscribeFilter.match(targetAddress.replacingOccurrences(of: "{{ thing:id }}", with: "org.example:sensor-1")) != nil)

        // Every label the bridge may issue is declared.
        let declared = try #require(source["declaredAcks"] as? [String])
        let resolved = declared.map { $0.replacingOccurrences(of: "{{connection:id}}", with: c.ditto.connectionID) }
        for label in c.acks.all { #expect(resolved.contains(label), "\(label) is not declared") }
    }
}
