/// One topic filter of a SUBSCRIBE with its options.
public struct Subscription: Sendable, Hashable {
    /// MQTT 5: whether the broker sends retained messages when the subscription is made.
    public enum RetainHandling: UInt8, Sendable, Hashable {
        case sendOnSubscribe = 0
        case sendOnNewSubscribe = 1
        case doNotSend = 2
    }

    /// A topic filter (`+`, `#`) or a shared subscription `$share/<group>/<filter>`.
    public var filter: String
    public var qos: QoS
    /// MQTT 5: do not receive what this client publishes itself.
    public var noLocal: Bool
    public var retainAsPublished: Bool
    public var retainHandling: RetainHandling

    public init(filter: String, qos: QoS = .atLeastOnce, noLocal: Bool = false, retainAsPublished: Bool = false,
                retainHandling: RetainHandling = .sendOnSubscribe) {
        self.filter = filter
        self.qos = qos
        self.noLocal = noLocal
        self.retainAsPublished = retainAsPublished
        self.retainHandling = retainHandling
    }
}
