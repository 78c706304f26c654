import MQTT
import Testing

@Suite struct MQTTMessageTests {
    @Test func qosOrderAndWireValues() {
        #expect(QoS.allCases.map(\.rawValue) == [0, 1, 2])
        #expect(QoS.atMostOnce < .atLeastOnce && QoS.atLeastOnce < .exactlyOnce)
        #expect(QoS(rawValue: 3) == nil)
    }

    @Test func propertiesAreEmptyUntilOneIsSet() {
        #expect(PublishProperties().isEmpty)
        #expect(!PublishProperties(payloadFormatIndicator: 0).isEmpty)
        #expect(!PublishProperties(messageExpiryInterval: 0).isEmpty)
        #expect(!PublishProperties(contentType: "").isEmpty)
        #expect(!PublishProperties(responseTopic: "r").isEmpty)
        #expect(!PublishProperties(correlationData: []).isEmpty)
        #expect(!PublishProperties(userProperties: [UserProperty(name: "a", value: "b")]).isEmpty)
    }

    @Test func aMessageDefaultsToQoS1WithoutRetain() {
        let message = MQTTMessage(topic: "a", payload: [1])
        #expect(message.qos == .atLeastOnce)
        #expect(!message.retain)
        #expect(message.properties.isEmpty)
    }
}
