import BridgeConfig
import BridgeMapping
import DittoProtocol
import Foundation
import Testing

/// Topics and paths matched against their templates.
struct TopicTemplateMatchingTests {
    @Test func compilesNamedLevelsToAFilter() throws {
        let t = try TopicTemplate("devices/{deviceId}/telemetry/{sensor}")
        #expect(t.filter == "devices/+/telemetry/+")
        #expect(t.placeholders == ["deviceId", "sensor"])
        #expect(t.match("devices/d1/telemetry/temp") == ["deviceId": "d1", "sensor": "temp"])
        #expect(t.match("devices/d1/telemetry") == nil)
        #expect(t.match("devices/d1/telemetry/temp/x") == nil)
        #expect(t.match("devices/d1/status/temp") == nil)
    }

    @Test func wildcardsPassThrough() throws {
        let t = try TopicTemplate("+/{deviceId}/#")
        #expect(t.filter == "+/+/#")
        #expect(t.hasWildcards)
        #expect(t.match("site/d1/a/b") == ["deviceId": "d1"])
        #expect(t.match("site/d1") == ["deviceId": "d1"])  // '#' also matches the parent level
        #expect(t.match("site") == nil)
    }

    @Test func multiLevelCaptureTakesTheRest() throws {
        let t = try TopicTemplate("devices/{deviceId}/{path...}")
        #expect(t.filter == "devices/+/#")
        #expect(t.match("devices/d1/a/b/c") == ["deviceId": "d1", "path": "a/b/c"])
        #expect(t.match("devices/d1") == nil)  // a capture needs at least one level
        #expect(try t.render(["deviceId": "d1", "path": "x/y"]) == "devices/d1/x/y")
    }

    @Test func partialLevelsMatchTheirLiteralText() throws {
        let t = try TopicTemplate("plant/dev-{id}/state")
        #expect(t.filter == "plant/+/state")
        #expect(t.match("plant/dev-42/state") == ["id": "42"])
        #expect(t.match("plant/x-42/state") == nil)
    }

    @Test func emptyLevelsAreLevels() throws {
        let t = try TopicTemplate("/a/{b}")
        #expect(t.filter == "/a/+")
        #expect(t.match("/a/x") == ["b": "x"])
        #expect(t.match("a/x") == nil)
        #expect(t.match("/a/") == nil)  // a capture takes no empty level
        let wildcard = try TopicTemplate("a/+/c")
        #expect(wildcard.match("a//c") == [:])  // '+' does
        #expect(wildcard.match("a/b/c/") == nil)
        let rest = try TopicTemplate("a/{rest...}")
        #expect(rest.match("a/b//c/") == ["rest": "b//c/"])
        #expect(rest.match("a/") == ["rest": ""])
        #expect(try TopicTemplate("{only}").match("") == nil)
        #expect(try TopicTemplate("+").match("") == [:])
    }

    @Test func dollarTopicsAreNotMatchedByLeadingWildcards() throws {
        #expect(try TopicTemplate("#").match("$SYS/broker/uptime") == nil)
        #expect(try TopicTemplate("{a}/broker/#").match("$SYS/broker/uptime") == nil)
        #expect(try TopicTemplate("$SYS/#").match("$SYS/broker/uptime") == [:])
    }

    @Test func pathTemplates() throws {
        let p = try PathTemplate("/features/{feature}/properties/{property...}")
        #expect(p.placeholders == ["feature", "property"])
        #expect(p.match("/features/lamp/properties/color/r") == ["feature": "lamp", "property": "color/r"])
        #expect(p.match("/features/lamp") == nil)
        #expect(p.match("/attributes/x") == nil)
        #expect(try p.render(["feature": "lamp", "property": "on"]) == "/features/lamp/properties/on")
        let root = try PathTemplate("/")
        #expect(root.match("/") == [:])
        #expect(root.match("/features") == nil)
        #expect(throws: TemplateError.self) { try PathTemplate("features/x") }
        #expect(throws: TemplateError.self) { try PathTemplate("/features//x") }
    }
}
