public import DittoProtocol
public import MQTT

/// The whole config file, typed and validated. Read it with ``BridgeConfiguration/load(path:environment:)``.
///
/// Equatable so a reload can tell whether anything changed.
public struct BridgeConfiguration: Sendable, Equatable {
    /// The file as named when loading (used in messages).
    public var fileName: String
    /// The device broker and the Ditto-side broker.
    public var connections: Connections
    /// How the bridge talks to Ditto over the Ditto-side broker.
    public var ditto: DittoSettings
    /// Namespace, QoS, content type and request timeout defaults.
    public var defaults: Defaults
    /// Global header mapping; every rule's ``UplinkRule/headers`` already has these merged in.
    public var headers: HeaderPolicy
    /// Online/offline detection, when configured.
    public var deviceStatus: DeviceStatusSettings?
    /// The acknowledgement labels the bridge may issue.
    public var acks: AckLabels
    /// Uplink rules in file order. Use ``uplinkRulesByPrecedence`` to pick the winner.
    public var uplink: [UplinkRule]
    /// Downlink rules in file order. Use ``downlinkRulesByPrecedence`` to pick the winner.
    public var downlink: [DownlinkRule]
    /// Things `check` should tell the user about; the file is usable.
    public var warnings: [ConfigDiagnostic]
    /// The on-disk spool and the bridge's state (revisions); nil: messages wait in memory only.
    public var spool: SpoolSettings? = nil
    /// The operations endpoint (`/metrics`, `/health`, `/ready`); off unless `operations.listen` is set.
    public var operations: OperationsSettings = OperationsSettings()

    /// Uplink rules in the order they are tried: higher ``UplinkRule/priority`` first, then the more specific
    /// topic (``TopicTemplate/Specificity``), then file order. The first rule whose topic matches wins.
    public var uplinkRulesByPrecedence: [UplinkRule] {
        uplink.sorted { a, b in
            if a.priority != b.priority { return a.priority > b.priority }
            let sa = a.topic.specificity
            let sb = b.topic.specificity
            if sa != sb { return sa > sb }
            return a.index < b.index
        }
    }

    /// Downlink rules in the order they are tried: higher ``DownlinkRule/priority`` first, then file order.
    public var downlinkRulesByPrecedence: [DownlinkRule] {
        downlink.sorted { a, b in a.priority != b.priority ? a.priority > b.priority : a.index < b.index }
    }
}

/// The device broker and the way to Ditto.
public struct Connections: Sendable, Hashable {
    /// Where devices publish and subscribe.
    public var device: BrokerConnection
    /// How the bridge reaches Ditto (`connections.ditto`, `transport:` chooses the binding).
    public var ditto: DittoConnection
}

/// How the bridge reaches Ditto: the two bindings of the Ditto Protocol it speaks.
public enum DittoConnection: Sendable, Hashable {
    /// `transport: mqtt` (the default): a broker that Ditto's MQTT 5 connection also uses (often the device broker).
    case mqtt(BrokerConnection)
    /// `transport: websocket`: straight to Ditto's WebSocket endpoint `/ws/2`, outbound only.
    case webSocket(DittoWebSocketConnection)

    /// The broker of the MQTT binding; nil over WebSocket.
    public var broker: BrokerConnection? {
        if case .mqtt(let broker) = self { broker } else { nil }
    }

    /// The WebSocket binding's settings; nil over MQTT.
    public var webSocket: DittoWebSocketConnection? {
        if case .webSocket(let connection) = self { connection } else { nil }
    }

    /// At most this many messages to Ditto wait for the binding's confirmation (MQTT: the broker's PUBACK; WebSocket:
    /// a pong to a ping sent after them); beyond it the bridge stops taking device messages (back pressure).
    public var maxInflight: Int {
        switch self {
        case .mqtt(let broker): broker.maxInflight
        case .webSocket(let connection): connection.maxInflight
        }
    }

    /// Back-off between reconnect attempts.
    public var reconnect: ReconnectPolicy {
        switch self {
        case .mqtt(let broker): broker.reconnect
        case .webSocket(let connection): connection.reconnect
        }
    }
}

/// Ditto's WebSocket binding (`connections.ditto` with `transport: websocket`): the endpoint, how the bridge
/// authenticates, the optional HTTP proxy, what it subscribes to and its flow control.
public struct DittoWebSocketConnection: Sendable, Hashable {
    /// How the bridge authenticates at the upgrade.
    public enum Authentication: Sendable, Hashable {
        /// None (a trusted proxy in front of Ditto authenticates, or Ditto runs without authentication).
        case none
        /// HTTP Basic, checked by Ditto's nginx (its stock deployment puts `/ws` behind Basic auth).
        case basic(username: String, password: Secret, source: BrokerConnection.PasswordSource)
        /// `Authorization: Bearer` with the JWT in `tokenFile`, an absolute path (``JSONWebToken`` reads it and its
        /// expiry; the loader checked that it held one). The bridge reads it at every
        /// connect and re-reads it when it changes, sending `JWT-TOKEN` so that Ditto does not close the session when
        /// the previous token expires.
        case bearer(tokenFile: String)
    }

    /// An HTTP forward proxy the bridge opens a tunnel through (`CONNECT host:port`) before TLS (`proxy.url:
    /// http://host:port`, port 80 unless given).
    public struct Proxy: Sendable, Hashable {
        /// An IPv6 address without brackets.
        public var host: String
        public var port: Int
        /// `Proxy-Authorization: Basic`; nil: none.
        public var username: String?
        public var password: Secret?

        public init(host: String, port: Int, username: String? = nil, password: Secret? = nil) {
            self.host = host
            self.port = port
            self.username = username
            self.password = password
        }
    }

    /// The URL as written, after `${VAR}` expansion (`ws://` or `wss://`; the loader refuses credentials in it), for
    /// the log.
    public var url: String
    /// `wss://`: TLS with ``tls`` (the system's CAs when the config names none).
    public var tls: TLSSettings?
    /// Host name or address of Ditto's gateway (or the nginx in front of it); an IPv6 address without brackets.
    public var host: String
    /// 80 for `ws://`, 443 for `wss://` unless the URL names one.
    public var port: Int
    /// The request target: the URL's path and query; `/ws/2` (with the URL's query, if any) when the URL names no
    /// path or only `/`.
    public var path: String
    public var authentication: Authentication
    public var proxy: Proxy?
    /// `START-SEND-*` subscribe to these namespaces only (`?namespaces=`); empty: every namespace the
    /// authenticated subject may read. Several bridges on one Ditto must each name theirs: Ditto sends every
    /// session everything it may see.
    public var namespaces: [String]
    /// At most this many messages per second go to Ditto; nil: no limit. Ditto drops what does not fit its
    /// buffers, so a slow gateway link is better served by a limit here.
    public var rateLimit: Int?
    /// Back-off between reconnect attempts.
    public var reconnect: ReconnectPolicy
    /// At most this many messages wait for the pong that confirms them.
    public var maxInflight: Int
    /// How often the bridge pings an idle socket, and how long it waits for a pong (or any frame) before it takes
    /// the connection for dead and reconnects: Ditto never times out a silent client.
    public var keepalive: Duration
    /// How long connecting, the proxy tunnel, TLS and the upgrade may take together.
    public var connectTimeout: Duration

    public init(url: String, tls: TLSSettings?, host: String, port: Int, path: String,
                authentication: Authentication = .none, proxy: Proxy? = nil, namespaces: [String] = [],
                rateLimit: Int? = nil, reconnect: ReconnectPolicy = ReconnectPolicy(initial: .seconds(1), maximum: .seconds(30)),
                maxInflight: Int = 1_000, keepalive: Duration = .seconds(10), connectTimeout: Duration = .seconds(10)) {
        self.url = url
        self.tls = tls
        self.host = host
        self.port = port
        self.path = path
        self.authentication = authentication
        self.proxy = proxy
        self.namespaces = namespaces
        self.rateLimit = rateLimit
        self.reconnect = reconnect
        self.maxInflight = maxInflight
        self.keepalive = keepalive
        self.connectTimeout = connectTimeout
    }
}

/// A secret read from a file or the environment; prints as `<redacted>`.
public struct Secret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The secret itself; never log it.
    public var value: String
    /// Wraps a secret.
    public init(_ value: String) { self.value = value }
    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
}

/// One MQTT client connection.
public struct BrokerConnection: Sendable, Hashable {
    /// Where the password came from, for messages that must not show it.
    public enum PasswordSource: Sendable, Hashable {
        case file(String)
        case environment(String)
        case inline
    }

    /// Host name or address (after `${VAR}` expansion).
    public var host: String
    /// 1883 by default, 8883 with TLS.
    public var port: Int
    /// `5` by default.
    public var mqttVersion: MQTTVersion
    /// The MQTT client identifier.
    public var clientID: String
    /// Whole seconds, 5 s to 65535 s.
    public var keepalive: Duration
    /// MQTT 5 clean start / MQTT 3.1.1 clean session.
    public var cleanStart: Bool
    /// MQTT 5 session expiry; nil means 0 (the session ends with the connection).
    public var sessionExpiry: Duration?
    /// nil: connect without credentials.
    public var username: String?
    /// Read from `password-file`, `password-env` or `password`.
    public var password: Secret?
    /// Where ``password`` came from.
    public var passwordSource: PasswordSource?
    /// nil: plain TCP.
    public var tls: TLSSettings?
    /// Back-off between reconnect attempts.
    public var reconnect: ReconnectPolicy
    /// At most this many publishes wait for the broker's acknowledgement; beyond it the bridge stops taking
    /// new work from the other side (back pressure).
    public var maxInflight: Int = 1_000
    /// Device side: subscribe as a member of this MQTT 5 shared-subscription group (`$share/{group}/...`), so
    /// that several bridge instances split the device traffic.
    public var sharedSubscriptionGroup: String? = nil
}

/// The on-disk store-and-forward queue for messages on their way to Ditto (`spool:`).
public struct SpoolSettings: Sendable, Hashable {
    /// What happens when the spool reaches ``maxSize``.
    public enum WhenFull: String, Sendable, Hashable {
        /// Stop reading from the device broker until Ditto takes messages again (nothing is dropped).
        case backPressure = "back-pressure"
        /// Drop the oldest messages, counted and logged.
        case dropOldest = "drop-oldest"
    }

    /// When appended records are forced to the disk (`fdatasync`).
    public enum Fsync: Sendable, Hashable {
        /// Left to the kernel: survives a crash of the bridge, not of the machine.
        case never
        /// After every append: survives power loss, costs a disk flush per message.
        case always
        /// At most this long after an append.
        case interval(Duration)
    }

    /// Absolute directory (resolved against the config file); created when missing.
    public var directory: String
    public var maxSize: Int
    /// Messages older than this are dropped (counted) instead of sent; nil: kept until sent.
    public var maxAge: Duration?
    public var whenFull: WhenFull
    public var fsync: Fsync
    /// Size at which a new segment file is started.
    public var segmentSize: Int

    public init(directory: String, maxSize: Int = 512 << 20, maxAge: Duration? = nil, whenFull: WhenFull = .backPressure,
                fsync: Fsync = .interval(.seconds(1)), segmentSize: Int = 16 << 20) {
        self.directory = directory
        self.maxSize = maxSize
        self.maxAge = maxAge
        self.whenFull = whenFull
        self.fsync = fsync
        self.segmentSize = segmentSize
    }
}

/// The Ditto side: topics on the Ditto-side broker and the Ditto connection's identity.
public struct DittoSettings: Sendable, Hashable {
    /// Where the bridge publishes Ditto Protocol JSON (Ditto's source). Placeholders: `{thingId}`, `{namespace}`,
    /// `{thingName}`.
    public var publishTopic: TopicTemplate
    /// What the bridge subscribes to for what Ditto's target publishes.
    public var subscribeFilter: TopicTemplate
    /// The `reply-to` the bridge sets on device-initiated requests; must be covered by ``subscribeFilter``.
    /// Placeholders as for ``publishTopic``.
    public var replyTopic: TopicTemplate
    /// QoS of publishes and the subscription on the Ditto side.
    public var qos: QoS
    /// The id of the Ditto connection, used in acknowledgement labels. Over WebSocket there is no Ditto connection:
    /// it only renders `{connectionId}` in ``AckLabels``, and the topics and QoS above are unused defaults.
    public var connectionID: String
}

/// Values rules fall back to (`defaults:`).
public struct Defaults: Sendable, Hashable {
    /// The namespace `{namespace}` stands for; nil when not configured.
    public var namespace: String?
    /// QoS of device-side subscriptions and publishes.
    public var qos: QoS
    /// Content type of JSON values (`application/json`).
    public var contentType: String
    /// How long a request (either direction) waits for its answer when the request names no `timeout`.
    public var requestTimeout: Duration
}

/// A header-name pattern: exact (case-insensitive) or with `*` wildcards, e.g. `x-*`.
public struct HeaderPattern: Sendable, Hashable, CustomStringConvertible {
    /// Lower-cased pattern.
    public let pattern: String

    /// A pattern as written; compared case-insensitively.
    public init(_ pattern: String) { self.pattern = pattern.lowercased() }

    /// True when the pattern contains `*`.
    public var isWildcard: Bool { pattern.contains("*") }

    /// Case-insensitive glob match.
    public func matches(_ name: String) -> Bool {
        matches(lowercased: DittoHeaders.lowercase(name))
    }

    /// The same for a name already in lower case.
    public func matches(lowercased name: String) -> Bool {
        Glob.matches(pattern, name)
    }

    public var description: String { pattern }
}

/// How correlation-id and headers travel for MQTT 3.1.1 devices, which have no message properties.
public enum MQTT311HeaderMode: String, Sendable, Hashable {
    /// Only the payload travels; no headers reach the device, and none are read from it.
    case none
    /// The correlation-id travels in the `{correlationId}` level of the topic.
    case topic
    /// The payload is wrapped: `{"headers": {...}, "value": ...}`, both ways.
    case wrapper
}

/// A header to add, with a value template.
public struct StaticHeader: Sendable, Hashable {
    /// As written (Ditto headers keep the spelling, compare case-insensitively).
    public var name: String
    /// The value; rendered per signal.
    public var value: Template
}

/// Which headers cross between MQTT and Ditto, in both directions.
///
/// A header passes when it matches ``allow`` and not ``deny``, and is not one of Ditto's internal headers
/// (``ReservedHeaders``); an `x-ditto-*` header only when ``allow`` names it exactly
/// (``isDittoExtension(lowercased:)``). It is then renamed per ``rename``. ``staticHeaders`` are added after that.
public struct HeaderPolicy: Sendable, Hashable {
    /// Names or patterns that may cross (`*` by default).
    public var allow: [HeaderPattern]
    /// Names or patterns that never cross; wins over ``allow``.
    public var deny: [HeaderPattern]
    /// Lower-cased source name -> target name as written.
    public var rename: [String: String]
    /// `traceparent`/`tracestate` cross even when ``allow`` does not list them.
    public var traceContext: Bool
    /// Headers added to every signal, after allow/deny.
    public var staticHeaders: [StaticHeader]
    /// How headers travel for MQTT 3.1.1 devices.
    public var mqtt311: MQTT311HeaderMode

    /// Whether a custom header named `name` may cross (before renaming).
    public func allows(_ name: String) -> Bool {
        allows(lowercased: DittoHeaders.lowercase(name))
    }

    /// The same for a name already in lower case.
    public func allows(lowercased lower: String) -> Bool {
        if ReservedHeaders.isInternal(lower) { return false }
        if Self.isDittoExtension(lowercased: lower) {
            return namesExactly(lower) && !deny.contains { $0.matches(lowercased: lower) }
        }
        if traceContext, Self.traceContextNames.contains(lower) {
            return !deny.contains { $0.matches(lowercased: lower) && !$0.isWildcard }
        }
        return allow.contains { $0.matches(lowercased: lower) } && !deny.contains { $0.matches(lowercased: lower) }
    }

    /// W3C trace context, which ``traceContext`` lets cross.
    public static let traceContextNames: Set<String> = ["traceparent", "tracestate"]

    /// Whether `lower` is an `x-ditto-*` header (any case). Ditto's gateway reads such headers as its own (e.g.
    /// `x-ditto-pre-authenticated`, the authenticated subject a trusted proxy hands over), so neither a device
    /// nor Ditto may pass one to the other side on a glob: only an exact, wildcard-free name in ``allow`` lets one
    /// cross, in either direction, and also only then may a rename produce one. The one place for this rule.
    public static func isDittoExtension(lowercased lower: String) -> Bool {
        lower.utf8.starts(with: "x-ditto-".utf8)
    }

    /// Whether ``allow`` names `lower` exactly (no wildcard).
    func namesExactly(_ lower: String) -> Bool {
        allow.contains { !$0.isWildcard && $0.pattern == lower }
    }

    /// Whether a header may arrive on the other side under the (renamed) name `target`: an `x-ditto-*` name only
    /// when ``allow`` names it exactly.
    public func mayProduce(lowercased target: String) -> Bool {
        !Self.isDittoExtension(lowercased: target) || namesExactly(target)
    }

    /// The name a passing header gets on the other side.
    public func renamed(_ name: String) -> String {
        renamed(name, lowercased: DittoHeaders.lowercase(name))
    }

    /// The same when the name's lower case is at hand.
    public func renamed(_ name: String, lowercased lower: String) -> String {
        rename.isEmpty ? name : rename[lower] ?? name
    }

    static let standard = HeaderPolicy(
        allow: [HeaderPattern("*")], deny: [], rename: [:], traceContext: true, staticHeaders: [], mqtt311: .none)
}

/// Ditto headers the bridge never forwards and a config may not produce: Ditto's internal ones
/// (``DittoHeaders/isInternal(_:)``, the one list) and the ones the bridge sets itself. The one definition of the
/// bridge's header names: each role below is a named subset of ``managedNames``, and the header mapper and the
/// config checks both read them from here.
public enum ReservedHeaders {
    public static let correlationID = "correlation-id"
    public static let contentType = "content-type"
    public static let replyTo = "reply-to"
    public static let responseRequired = "response-required"
    public static let requestedAcks = "requested-acks"
    public static let timeout = "timeout"
    public static let status = "status"
    public static let timestamp = "timestamp"
    public static let version = "version"

    /// The headers the bridge owns: it derives them itself (from MQTT properties, topics or the request) or acts
    /// on them, so a device's user property or wrapper header never becomes one, Ditto's never becomes a device's
    /// user property, and a rename or a static header must not produce or overwrite one.
    public static let managedNames: Set<String> = envelopeOwnNames.union([replyTo, status, timestamp])

    /// Of ``managedNames``, those a pass-through envelope keeps as the device wrote them: the envelope is the
    /// Ditto Protocol message itself, whose own correlation, content type and request headers (whether and which
    /// answers it wants, within which time, in which schema version) are part of what the device says; the
    /// bridge adds none of them to it. Its `reply-to`, `status` and `timestamp` are dropped like any owned header.
    public static let envelopeOwnNames: Set<String> = [
        correlationID, contentType, responseRequired, requestedAcks, timeout, version,
    ]

    /// Ditto-internal (case-insensitive): ``DittoHeaders/isInternal(_:)``.
    public static func isInternal(_ name: String) -> Bool {
        DittoHeaders.isInternal(name)
    }

    /// Internal or bridge-managed: never crosses as a custom header in either direction.
    public static func isReserved(_ name: String) -> Bool {
        isReserved(lowercased: DittoHeaders.lowercase(name))
    }

    /// The same for a name already in lower case.
    public static func isReserved(lowercased lower: String) -> Bool {
        DittoHeaders.isInternal(lower) || managedNames.contains(lower)
    }
}

/// Online/offline detection from a status topic (typically the device's last will).
public struct DeviceStatusSettings: Sendable, Hashable {
    /// E.g. `devices/{deviceId}/status`; its placeholders must be ones the downlink rules' thing IDs provide.
    public var topic: TopicTemplate
    /// Payloads (exact text) meaning offline; anything else means online.
    public var offlinePayloads: [String]
    /// Keep Ditto's `ConnectionStatus` feature of each device's thing up to date; nil: off.
    public var connectionStatus: ConnectionStatusSettings? = nil
}

/// `devices.connection-status`: which feature, on which thing.
public struct ConnectionStatusSettings: Sendable, Hashable {
    /// The feature id (`ConnectionStatus`, as Ditto's own mapping names it).
    public var featureID: String
    /// The device's thing, from the status topic's placeholders.
    public var thingID: Template
}

/// Acknowledgement labels the bridge issues when a request asks for them in `requested-acks`.
public struct AckLabels: Sendable, Hashable {
    /// Issued when the device broker acknowledged the downlink publish; nil: never.
    public var delivered: String?
    /// Issued when the device answered; nil: never.
    public var answered: String?

    /// Labels to declare in the Ditto connection's `declaredAcks`, or over WebSocket in the `declared-acks` query
    /// parameter of the upgrade (there without the connection-id prefix rule).
    public var all: [String] { [delivered, answered].compactMap { $0 } }
}

/// How to read a device payload.
public enum UplinkPayload: Sendable, Hashable {
    /// Which part of a JSON payload becomes the value.
    public enum JSONSelection: Sendable, Hashable {
        /// The whole document.
        case whole
        /// One value, by JSON pointer (RFC 6901).
        case pointer(RFC6901Pointer)
        /// An object built from several pointers: field name -> pointer, in file order.
        case fields([(name: String, pointer: RFC6901Pointer)])

        public static func == (a: JSONSelection, b: JSONSelection) -> Bool {
            switch (a, b) {
            case (.whole, .whole): true
            case (.pointer(let x), .pointer(let y)): x == y
            case (.fields(let x), .fields(let y)): x.map(\.name) == y.map(\.name) && x.map(\.pointer) == y.map(\.pointer)
            default: false
            }
        }

        public func hash(into hasher: inout Hasher) {
            switch self {
            case .whole: hasher.combine(0)
            case .pointer(let p): hasher.combine(p)
            case .fields(let f):
                for field in f {
                    hasher.combine(field.name)
                    hasher.combine(field.pointer)
                }
            }
        }
    }

    case json(JSONSelection)
    /// A decimal number as text (`21.5`).
    case number
    /// `true`/`false` (also `1`/`0`, `on`/`off`).
    case boolean
    /// UTF-8 text.
    case text
    /// Raw bytes; base64 in the Ditto message.
    case bytes
}

/// The action of a live event (the last topic segment).
public enum EventAction: String, Sendable, Hashable, CaseIterable {
    case created, modified, merged, deleted
}

/// A live event the device's publish becomes.
public struct EventSpec: Sendable, Hashable {
    /// `modified` by default.
    public var action: EventAction
    /// The resource path, e.g. `/features/{sensor}/properties/value`.
    public var path: Template

    /// Creates an event spec.
    public init(action: EventAction, path: Template) {
        self.action = action
        self.path = path
    }
}

/// A live message from the device (outbox) its publish becomes.
public struct MessageSpec: Sendable, Hashable {
    /// nil: a thing-level message.
    public var feature: Template?
    /// The message subject, e.g. `alarm` or `{subject}`.
    public var subject: Template
    /// The message's content type; nil means derived from the payload format (JSON -> `application/json`,
    /// text -> `text/plain`, bytes -> `application/octet-stream`).
    public var contentType: ContentType?
    /// The device expects an answer (a device-initiated request).
    public var expectsResponse: Bool
    /// How long Ditto may take to answer.
    public var timeout: Duration
    /// MQTT 3.1.1 devices: where the answer goes, e.g. `devices/{deviceId}/res/{correlationId}/{status}`.
    /// MQTT 5 devices get it on their response topic; this is then a fallback when they set none.
    public var replyTopic: TopicTemplate?
}

/// What an uplink rule emits.
public enum UplinkAction: Sendable, Hashable {
    case event(EventSpec)
    case message(MessageSpec)
    /// The device publishes Ditto Protocol JSON; its thing ID must equal the rule's rendered thing ID.
    case passthrough(PassthroughSpec)

    /// Whether this is a pass-through rule.
    public var isPassthrough: Bool {
        if case .passthrough = self { return true }
        return false
    }

    /// Whether this is an event rule (a device's event asks for no answer).
    public var isEvent: Bool {
        if case .event = self { return true }
        return false
    }
}

/// What a pass-through rule admits besides live signals.
///
/// The bridge is a live-channel bridge: by default only live signals pass. A twin signal would be executed by
/// Ditto with the bridge connection's authorization (a twin `delete` of the thing, a `modify` of `/policyId`),
/// so each twin action a device may send must be named.
public struct PassthroughSpec: Sendable, Hashable {
    /// Twin command actions (`create`, `retrieve`, `modify`, `merge`, `delete`) and twin event actions
    /// (`created`, `modified`, `merged`, `deleted`) a device may send; empty: live signals only.
    public var allowTwin: Set<String>

    /// The twin actions `allow-twin` may name (Ditto's own action names).
    public static let twinActions = ["create", "retrieve", "modify", "merge", "delete", "created", "modified", "merged", "deleted"]

    public init(allowTwin: Set<String> = []) {
        self.allowTwin = allowTwin
    }

    /// Live signals only.
    public static let liveOnly = PassthroughSpec()
}

/// Device topic -> Ditto signal.
public struct UplinkRule: Sendable, Hashable {
    /// Unique among all rules; used in logs.
    public var name: String
    /// Position in the file's `uplink` list.
    public var index: Int
    /// Where the rule is written.
    public var location: SourceLocation
    /// The device topic; its captures feed the other templates.
    public var topic: TopicTemplate
    /// Placeholders: the topic's, plus `{namespace}`.
    public var thingID: Template
    /// What the rule emits.
    public var action: UplinkAction
    /// How the payload is read.
    public var payload: UplinkPayload
    /// Effective policy (global settings merged with the rule's).
    public var headers: HeaderPolicy
    /// Higher wins; default 0.
    public var priority: Int
    /// Subscription QoS on the device broker.
    public var qos: QoS
    /// `defaults.namespace`, what `{namespace}` stands for unless the topic captures it.
    public var defaultNamespace: String?
    /// The MQTT 5 response topics a device may name for the answer to its request (`response-topics`; by default
    /// the device's own topic space). A request that names another is refused.
    public var responseTopics: ResponseTopics
}

/// A live command action (the last topic segment of a Ditto command).
public enum CommandAction: String, Sendable, Hashable, CaseIterable {
    case create, modify, merge, delete, retrieve
}

/// Which Ditto signals a downlink rule takes.
public enum DownlinkMatch: Sendable, Hashable {
    /// Live messages to the thing (inbox).
    /// - subject: a glob (`*` any text), e.g. `*`, `set-*`, `reboot`.
    /// - feature: nil for thing-level messages only; a glob for feature messages (`*` any feature).
    case messages(subject: String, feature: String?)
    /// Live commands with one of these actions whose path matches (nil: any path).
    case commands(actions: Set<CommandAction>, path: PathTemplate?)
}

/// How the device gets the Ditto signal.
public enum DownlinkPayload: String, Sendable, Hashable, CaseIterable {
    /// The `value` as JSON.
    case value
    /// The `value` as UTF-8 text (a JSON string without quotes, other JSON as its text).
    case text
    /// The bytes of a base64 `value`.
    case bytes
    /// The whole Ditto Protocol envelope (Ditto-native devices).
    case envelope
}

/// How a device answers a downlink request.
public struct ReplySpec: Sendable, Hashable {
    /// Where the device puts the correlation id of its answer.
    public enum Mode: String, Sendable, Hashable, CaseIterable {
        /// MQTT 5: on the response topic the bridge sets, with the correlation data it sets.
        case mqtt5
        /// The correlation id (and status) are levels of the reply topic (`.../res/{correlationId}/{status}`).
        case topic
        /// The correlation id is inside the JSON reply, at ``ReplySpec/correlationPointer``.
        case payload
        /// The device does not answer.
        case none
    }

    /// How the device answers.
    public var mode: Mode
    /// Where the device answers. Placeholders: the downlink topic's, plus `{correlationId}` and `{status}` (both
    /// captured from the reply topic in `topic` mode).
    public var topic: TopicTemplate?
    /// `payload` mode: RFC 6901 pointer to the correlation id, in the request the device gets and in its reply.
    public var correlationPointer: RFC6901Pointer?
    /// RFC 6901 pointer to the status in a JSON reply.
    public var statusPointer: RFC6901Pointer?
    /// RFC 6901 pointer to the value in a JSON reply (and, in `payload` mode, in the request); nil: the whole
    /// reply, or ``payloadModeValuePointer`` in `payload` mode.
    public var valuePointer: RFC6901Pointer?
    /// Status when the device does not give one; nil: 200, or 204 for modify/delete commands.
    public var defaultStatus: Int?
    /// How long to wait for the device (capped by the request's own `timeout`).
    public var timeout: Duration

    /// Where the value sits in `payload` mode when `value-pointer` is not given: next to the id, never around it.
    public static let payloadModeValuePointer = RFC6901Pointer(tokens: ["value"])

    /// The value pointer in effect: in `payload` mode the value and the id are siblings in one object, so the
    /// value is never the whole document.
    public var effectiveValuePointer: RFC6901Pointer? {
        mode == .payload ? (valuePointer ?? Self.payloadModeValuePointer) : valuePointer
    }
}

/// Ditto signal -> device topic.
public struct DownlinkRule: Sendable, Hashable {
    /// Unique among all rules; used in logs.
    public var name: String
    /// Position in the file's `downlink` list.
    public var index: Int
    /// Where the rule is written.
    public var location: SourceLocation
    /// Which Ditto signals the rule takes.
    public var match: DownlinkMatch
    /// Matched against the signal's thing ID to extract the device's values (the inverse of an uplink thing ID).
    public var thingID: Template
    /// Values ``thingID`` placeholders must have: `namespace` when `defaults.namespace` is set.
    public var fixedValues: [String: String]
    /// The device topic (no wildcards).
    public var topic: TopicTemplate
    /// What the device gets.
    public var payload: DownlinkPayload
    /// How the device answers.
    public var reply: ReplySpec
    /// Effective policy (global settings merged with the rule's).
    public var headers: HeaderPolicy
    /// Higher is tried first; default 0.
    public var priority: Int
    /// QoS of the publish to the device.
    public var qos: QoS
}

package enum Glob {
    /// `*` matches any run of characters (also empty); everything else literally.
    package static func matches(_ pattern: String, _ text: String) -> Bool {
        // The usual patterns, `*` and a plain name, need no search (and no arrays of characters).
        if pattern == "*" { return true }
        if !pattern.utf8.contains(UInt8(ascii: "*")) { return pattern == text }
        let p = Array(pattern)
        let t = Array(text)
        var pi = 0
        var ti = 0
        var star = -1
        var mark = 0
        while ti < t.count {
            if pi < p.count, p[pi] != "*", p[pi] == t[ti] {
                pi += 1
                ti += 1
            } else if pi < p.count, p[pi] == "*" {
                star = pi
                mark = ti
                pi += 1
            } else if star >= 0 {
                pi = star + 1
                mark += 1
                ti = mark
            } else {
                return false
            }
        }
        while pi < p.count, p[pi] == "*" { pi += 1 }
        return pi == p.count
    }
}
