import BridgeMapping
import MQTT
import Testing

@Suite struct TopicTokenTests {
    @Test(arguments: ["c-1", "Grüße", "550e8400-e29b-41d4-a716-446655440000", "with space", "dots.and:colons"])
    func safeIDsAreUsedAsTheyAre(_ id: String) {
        #expect(TopicToken.encode(id) == id)
        #expect(TopicToken.decode(id) == id)
    }

    @Test(arguments: ["a/b", "x+y", "#z", "", "b64-abc", "tab\there", "nul\u{0}", String(repeating: "l", count: 201),
                      "/+/#/", "東京/大阪"])
    func unsafeIDsBecomeOneSafeLevelAndComeBack(_ id: String) {
        let token = TopicToken.encode(id)
        #expect(token.hasPrefix("b64-"))
        #expect(!token.contains("/") && !token.contains("+") && !token.contains("#") && !token.contains("="))
        #expect(MQTTTopic.isValidTopicName("devices/d/res/\(token)/200"))
        #expect(TopicToken.decode(token) == id)
    }

    @Test func aTokenThatIsNotBase64IsKept() {
        #expect(TopicToken.decode("b64-!!!") == "b64-!!!")
        #expect(TopicToken.decode("b64-_w") == "b64-_w")  // 0xFF: not UTF-8
    }
}
