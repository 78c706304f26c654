import BridgeOperations
import Foundation
import Logging
import Testing

struct JSONLogHandlerTests {
    static func logger(_ collector: LineCollector, level: Logger.Level = .info) -> Logger {
        var logger = Logger(label: "ditto-mqtt-bridge") { label in
            JSONLogHandler(label: label, sink: { collector.append($0) })
        }
        logger.logLevel = level
        return logger
    }

    static func object(_ line: String) throws -> [String: Any] {
        #expect(line.hasSuffix("}\n"))
        #expect(line.dropLast().contains("\n") == false, "one event per line")
        let value = try JSONSerialization.jsonObject(with: Data(line.utf8))
        return try #require(value as? [String: Any])
    }

    @Test func oneObjectPerEventWithMetadataAsFields() throws {
        let collector = LineCollector()
        var logger = Self.logger(collector)
        logger[metadataKey: "component"] = "uplink"
        logger.warning(
            "dropped: no rule matches",
            metadata: [
                LogMetadataKey.topic: "devices/sensor-1/x", LogMetadataKey.rule: "telemetry",
                LogMetadataKey.thingID: "org.example:sensor-1", LogMetadataKey.correlationID: "abc-1",
                "attempt": .stringConvertible(3), "sides": ["device", "ditto"], "nested": ["a": "b"],
            ])
        logger.debug("below the level")
        #expect(collector.lines.count == 1)
        let object = try Self.object(try #require(collector.lines.first))
        #expect(object["level"] as? String == "warning")
        #expect(object["label"] as? String == "ditto-mqtt-bridge")
        #expect(object["message"] as? String == "dropped: no rule matches")
        #expect(object["mqtt.topic"] as? String == "devices/sensor-1/x")
        #expect(object["rule"] as? String == "telemetry")
        #expect(object["thing-id"] as? String == "org.example:sensor-1")
        #expect(object["correlation-id"] as? String == "abc-1")
        #expect(object["component"] as? String == "uplink")
        #expect(object["attempt"] as? String == "3")
        #expect(object["sides"] as? [String] == ["device", "ditto"])
        #expect(object["nested"] as? [String: String] == ["a": "b"])
        let timestamp = try #require(object["timestamp"] as? String)
        #expect(timestamp.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/) != nil, "\(timestamp)")
        // Fixed fields first, in this order.
        #expect(collector.lines[0].hasPrefix(#"{"timestamp":""#))
        #expect(collector.lines[0].contains(#"","level":"warning","label":"ditto-mqtt-bridge","message":"#))
    }

    @Test func escapingAndCollisions() throws {
        let line = JSONLogHandler.line(
            timestamp: Date(timeIntervalSince1970: 1_764_350_000.5), level: .error, label: "l",
            message: "quote \" backslash \\ newline \n tab \t bell \u{7} ü 🚀",
            metadata: ["message": "shadow", "level": "x", "ok": "y"])
        #expect(line.hasPrefix(#"{"timestamp":"2025-11-28T17:13:20.500Z","level":"error""#), "\(line)")
        #expect(line.contains(#"\u0007"#))
        let object = try Self.object(line)
        #expect(object["message"] as? String == "quote \" backslash \\ newline \n tab \t bell \u{7} ü 🚀")
        #expect(object["level"] as? String == "error")
        #expect(object["metadata.message"] as? String == "shadow")
        #expect(object["metadata.level"] as? String == "x")
        #expect(object["ok"] as? String == "y")
    }

    @Test func providerAndCallMetadataMerge() throws {
        let collector = LineCollector()
        let provider = Logger.MetadataProvider { ["trace": "t-1", "rule": "from-provider"] }
        var logger = Logger(label: "x") { label in
            JSONLogHandler(label: label, metadataProvider: provider, sink: { collector.append($0) })
        }
        logger[metadataKey: "side"] = "device"
        logger.info("hello", metadata: ["rule": "from-call"])
        let object = try Self.object(try #require(collector.lines.first))
        #expect(object["trace"] as? String == "t-1")
        #expect(object["side"] as? String == "device")
        #expect(object["rule"] as? String == "from-call")
    }
}
