/// One MQTT 5 user property.
public struct UserProperty: Sendable, Hashable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// The MQTT 5 PUBLISH properties a bridge reads and writes. Not sent on MQTT 3.1.1 connections.
public struct PublishProperties: Sendable, Hashable {
    /// 1: the payload is UTF-8 text; 0: unspecified bytes.
    public var payloadFormatIndicator: UInt8?
    /// Seconds; the broker decrements it while it holds the message and drops the message at 0.
    public var messageExpiryInterval: UInt32?
    public var contentType: String?
    public var responseTopic: String?
    /// At most 65,535 bytes.
    public var correlationData: [UInt8]?
    /// In order, duplicates kept.
    public var userProperties: [UserProperty]

    public init(payloadFormatIndicator: UInt8? = nil, messageExpiryInterval: UInt32? = nil, contentType: String? = nil,
                responseTopic: String? = nil, correlationData: [UInt8]? = nil, userProperties: [UserProperty] = []) {
        self.payloadFormatIndicator = payloadFormatIndicator
        self.messageExpiryInterval = messageExpiryInterval
        self.contentType = contentType
        self.responseTopic = responseTopic
        self.correlationData = correlationData
        self.userProperties = userProperties
    }

    /// No property set: a PUBLISH without a property list.
    public var isEmpty: Bool {
        payloadFormatIndicator == nil && messageExpiryInterval == nil && contentType == nil && responseTopic == nil
            && correlationData == nil && userProperties.isEmpty
    }
}

/// An MQTT PUBLISH's application message: what a client received, or what it is to send.
public struct MQTTMessage: Sendable, Hashable {
    public var topic: String
    public var payload: [UInt8]
    public var qos: QoS
    public var retain: Bool
    public var properties: PublishProperties

    public init(topic: String, payload: [UInt8], qos: QoS = .atLeastOnce, retain: Bool = false,
                properties: PublishProperties = .init()) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
    }
}
