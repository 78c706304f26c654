/// One MQTT 5 user property, as a device sent it or as the bridge sends it.
public struct MQTTUserProperty: Sendable, Hashable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// The MQTT 5 PUBLISH properties the mapping reads and writes.
///
/// A plain mirror of the client's properties, so that the mapping stays pure (no libmosquitto) and can be
/// driven from the `map` command or from tests without a broker.
public struct MQTTProperties: Sendable, Hashable {
    /// 1 = the payload is UTF-8 text, 0 = unspecified bytes.
    public var payloadFormatIndicator: UInt8?
    /// Seconds until the broker drops the message.
    public var messageExpiryInterval: UInt32?
    public var contentType: String?
    public var responseTopic: String?
    public var correlationData: [UInt8]?
    /// All user properties, in order, duplicates kept.
    public var userProperties: [MQTTUserProperty]

    public init(
        payloadFormatIndicator: UInt8? = nil,
        messageExpiryInterval: UInt32? = nil,
        contentType: String? = nil,
        responseTopic: String? = nil,
        correlationData: [UInt8]? = nil,
        userProperties: [MQTTUserProperty] = []
    ) {
        self.payloadFormatIndicator = payloadFormatIndicator
        self.messageExpiryInterval = messageExpiryInterval
        self.contentType = contentType
        self.responseTopic = responseTopic
        self.correlationData = correlationData
        self.userProperties = userProperties
    }
}

/// An MQTT message on the device side or on the Ditto side: what arrived, or what the bridge will publish.
public struct MQTTPublication: Sendable, Hashable {
    public var topic: String
    public var payload: [UInt8]
    /// 0, 1 or 2.
    public var qos: UInt8
    public var retain: Bool
    public var properties: MQTTProperties

    public init(topic: String, payload: [UInt8], qos: UInt8 = 1, retain: Bool = false, properties: MQTTProperties = .init()) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
    }
}
