import MQTT
import Testing

@Suite struct MQTTTopicTests {
    @Test(arguments: ["a/b", "a", "/", "a//b", "/a/", "$SYS/broker", "Grüße/東京", String(repeating: "x", count: 65_535)])
    func validTopicNames(_ topic: String) throws {
        try MQTTTopic.validateTopicName(topic)
        #expect(MQTTTopic.isValidTopicName(topic))
    }

    @Test(arguments: [
        ("", TopicViolation.empty), ("a/+", .wildcardInTopicName), ("a/#", .wildcardInTopicName),
        ("+", .wildcardInTopicName), ("a/#/b", .wildcardInTopicName), ("x+y", .wildcardInTopicName),
        ("a\u{0}b", .containsNUL), (String(repeating: "a", count: 65_536), .tooLong(bytes: 65_536)),
        // The limit counts bytes of UTF-8, not characters.
        (String(repeating: "é", count: 32_768), .tooLong(bytes: 65_536)),
    ])
    func invalidTopicNames(_ topic: String, _ violation: TopicViolation) {
        #expect(throws: violation) { try MQTTTopic.validateTopicName(topic) }
        #expect(!MQTTTopic.isValidTopicName(topic))
    }

    @Test func topicNameParts() {
        #expect(MQTTTopic.isTopicNamePart(""))
        #expect(MQTTTopic.isTopicNamePart("a/b"))
        #expect(!MQTTTopic.isTopicNamePart("a+"))
        #expect(!MQTTTopic.isTopicNamePart("#"))
        #expect(!MQTTTopic.isTopicNamePart("\u{0}"))
    }

    @Test(arguments: [
        "#", "+", "+/x/#", "a/+/b", "+/+", "/#", "a//b", "//", "a/+/", "/+", "$SYS/#", "$share/g/a/+", "$share/g/#",
        "$share/g/$share/h/x", String(repeating: "x", count: 65_535),
    ])
    func validFilters(_ filter: String) throws {
        try MQTTTopic.validateFilter(filter)
    }

    @Test(arguments: [
        ("", TopicViolation.empty), ("a/#/b", .misplacedWildcard), ("#/a", .misplacedWildcard), ("a#", .misplacedWildcard),
        ("a/b#", .misplacedWildcard), ("a/#/", .misplacedWildcard), ("##", .misplacedWildcard),
        ("a/+b", .misplacedWildcard), ("a/b+", .misplacedWildcard), ("++", .misplacedWildcard),
        ("+#", .misplacedWildcard), ("a\u{0}b", .containsNUL), ("$share//a", .invalidSharedSubscription),
        ("$share/g+/a", .invalidSharedSubscription), ("$share/g#/a", .invalidSharedSubscription),
        ("$share/g", .invalidSharedSubscription), ("$share/g/", .invalidSharedSubscription),
        ("$share/g/a/#/b", .misplacedWildcard), (String(repeating: "x", count: 65_536), .tooLong(bytes: 65_536)),
    ])
    func invalidFilters(_ filter: String, _ violation: TopicViolation) {
        #expect(throws: violation) { try MQTTTopic.validateFilter(filter) }
    }

    @Test func shareNames() {
        #expect(MQTTTopic.isValidShareName("group-1"))
        #expect(!MQTTTopic.isValidShareName(""))
        #expect(!MQTTTopic.isValidShareName("a/b"))
        #expect(!MQTTTopic.isValidShareName("g+"))
        #expect(!MQTTTopic.isValidShareName("g#"))
        #expect(MQTTTopic.sharedFilter(group: "bridges", filter: "devices/+/telemetry") == "$share/bridges/devices/+/telemetry")
    }

    @Test(arguments: [
        ("sensors/+/temp", "sensors/a/temp", true),
        ("sensors/#", "sensors", true),
        ("sensors/#", "sensors/a/b", true),
        ("sensors/+", "sensors/a/b", false),
        ("sensors/+", "sensors", false),
        ("sensors/+", "sensors/", true),
        ("+/+", "/", true),
        ("/+", "/a", true),
        ("+", "/a", false),
        ("a//b", "a//b", true),
        ("a//b", "a/b", false),
        ("a/+/#", "a/b", true),
        ("a/b", "a/b/", false),
        ("#", "a", true),
        ("#", "/", true),
        ("$share/g/sensors/+", "sensors/a", true),
        ("$share/g/#", "x/y", true),
        // Wildcards in the first level do not match topics starting with `$`; literal `$` levels do.
        ("#", "$SYS/x", false),
        ("+/x", "$SYS/x", false),
        ("+", "$SYS", false),
        ("$SYS/#", "$SYS/x", true),
        ("$SYS/+", "$SYS/x", true),
        ("a/+", "a/$x", true),
        ("a/#", "a/$x", true),
        // Invalid on either side: no match.
        ("a/#/b", "a/x/b", false),
        ("a/+b", "a/+b", false),
        ("#", "a/+", false),
        ("#", "", false),
        ("", "a", false),
        ("#", "a\u{0}b", false),
    ])
    func matching(_ filter: String, _ topic: String, _ matches: Bool) {
        #expect(MQTTTopic.matches(filter: filter, topic: topic) == matches)
    }
}
