/// MQTT quality of service: how often a PUBLISH is delivered.
public enum QoS: UInt8, Sendable, Hashable, Comparable, CaseIterable {
    case atMostOnce = 0
    case atLeastOnce = 1
    case exactlyOnce = 2

    public static func < (lhs: QoS, rhs: QoS) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The MQTT protocol version a client speaks.
public enum MQTTVersion: Sendable, Hashable {
    case v311
    case v5
}
