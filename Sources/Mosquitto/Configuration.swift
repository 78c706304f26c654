public import MQTT

/// Everything a ``MosquittoClient`` needs to connect. Plain values with defaults for a local broker.
public struct MQTTConfiguration: Sendable {
    public struct Credentials: Sendable {
        public var username: String
        public var password: String?

        public init(username: String, password: String?) {
            self.username = username
            self.password = password
        }
    }

    public var host: String
    public var port: Int
    public var version: MQTTVersion
    /// nil: libmosquitto makes one up (only with `cleanStart`).
    public var clientID: String?
    /// 0 (off) or 5...65535 seconds.
    public var keepAlive: Duration
    /// MQTT 5 clean start; MQTT 3.1.1 clean session.
    public var cleanStart: Bool
    /// MQTT 5 session expiry; nil: the session ends with the connection.
    public var sessionExpiry: Duration?
    public var credentials: Credentials?
    public var tls: TLSSettings?
    /// The message the broker publishes when this client dies without DISCONNECT.
    public var will: MQTTMessage?
    public var reconnect: ReconnectPolicy
    /// Disable Nagle's algorithm: lower latency for small messages.
    public var tcpNoDelay: Bool
    /// At most this many publishes wait for their acknowledgement; more wait in ``MosquittoClient/publish(to:payload:qos:retain:properties:)``
    /// (back pressure instead of growing memory).
    public var maxInflightPublishes: Int
    /// Inbound messages buffered for the consumer; beyond that the oldest are kept and new ones dropped (counted).
    public var inboundBufferLimit: Int

    public init(host: String = "127.0.0.1", port: Int = 1883, version: MQTTVersion = .v5, clientID: String? = nil,
                keepAlive: Duration = .seconds(30), cleanStart: Bool = true, sessionExpiry: Duration? = nil,
                credentials: Credentials? = nil, tls: TLSSettings? = nil, will: MQTTMessage? = nil,
                reconnect: ReconnectPolicy = .init(), tcpNoDelay: Bool = true, maxInflightPublishes: Int = 1_000,
                inboundBufferLimit: Int = 100_000) {
        self.host = host
        self.port = port
        self.version = version
        self.clientID = clientID
        self.keepAlive = keepAlive
        self.cleanStart = cleanStart
        self.sessionExpiry = sessionExpiry
        self.credentials = credentials
        self.tls = tls
        self.will = will
        self.reconnect = reconnect
        self.tcpNoDelay = tcpNoDelay
        self.maxInflightPublishes = maxInflightPublishes
        self.inboundBufferLimit = inboundBufferLimit
    }
}

/// The broker's acknowledgement of a publish.
public struct PublishAck: Sendable, Hashable {
    public var messageID: UInt16?
    /// The MQTT 5 reason code of the PUBACK/PUBCOMP (success for QoS 0 and MQTT 3.1.1).
    public var reasonCode: ReasonCode
}

/// Connection state changes, in order.
public enum ConnectionEvent: Sendable, Hashable, CustomStringConvertible {
    case connected(sessionPresent: Bool)
    /// Every subscription the client holds is in place on the broker again: right after ``connected(sessionPresent:)``
    /// when the broker kept the session (or there was nothing to restore), otherwise once it granted every
    /// restored SUBSCRIBE. Not sent when it refused one (that is logged), so the side does not count as ready.
    case subscriptionsRestored
    /// The broker refused the connection (CONNACK reason code); the client retries with backoff.
    case refused(ReasonCode)
    /// The connection ended (or an attempt failed); `nil` when this client asked for it.
    case disconnected(MQTTError?)

    public var description: String {
        switch self {
        case .connected(let sessionPresent): "connected (session present: \(sessionPresent))"
        case .subscriptionsRestored: "subscriptions restored"
        case .refused(let code): "refused: \(code)"
        case .disconnected(nil): "disconnected"
        case .disconnected(let error?): "disconnected: \(error)"
        }
    }
}
