import BridgeConfig
import BridgeMapping
import Mosquitto

extension MQTTPublication {
    init(_ message: MQTTMessage) {
        self.init(topic: message.topic, payload: message.payload, qos: message.qos.rawValue, retain: message.retain,
                  properties: MQTTProperties(message.properties))
    }
}

extension MQTTProperties {
    init(_ properties: PublishProperties) {
        self.init(
            payloadFormatIndicator: properties.payloadFormatIndicator,
            messageExpiryInterval: properties.messageExpiryInterval,
            contentType: properties.contentType,
            responseTopic: properties.responseTopic,
            correlationData: properties.correlationData,
            userProperties: properties.userProperties.map { MQTTUserProperty(name: $0.name, value: $0.value) })
    }
}

extension PublishProperties {
    init(_ properties: MQTTProperties) {
        self.init()
        payloadFormatIndicator = properties.payloadFormatIndicator
        messageExpiryInterval = properties.messageExpiryInterval
        contentType = properties.contentType
        responseTopic = properties.responseTopic
        correlationData = properties.correlationData
        userProperties = properties.userProperties.map { UserProperty(name: $0.name, value: $0.value) }
    }
}

extension Mosquitto.QoS {
    init(level: UInt8) {
        self = Mosquitto.QoS(rawValue: min(level, 2)) ?? .atLeastOnce
    }

    init(_ qos: BridgeConfig.QoS) {
        self.init(level: UInt8(qos.rawValue))
    }
}
