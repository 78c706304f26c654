/// Every key the file accepts, per mapping: the loader rejects anything else, and a test checks that
/// docs/CONFIG.md documents each of them.
enum ConfigSchema {
    static let root = ["connections", "ditto", "defaults", "headers", "devices", "acks", "uplink", "downlink", "spool", "operations"]
    static let connections = ["device", "ditto"]
    static let connection = [
        "host", "port", "mqtt-version", "client-id", "keepalive", "clean-start", "session-expiry", "username",
        "password-file", "password-env", "password", "tls", "reconnect", "max-inflight", "shared-subscription-group",
    ]
    /// `connections.ditto` with `transport: mqtt` (the default): a broker connection that names its transport.
    static let dittoMQTT = connection + ["transport"]
    /// `connections.ditto` with `transport: websocket`: Ditto's `/ws/2` binding.
    static let dittoWebSocket = [
        "transport", "url", "tls", "username", "password-file", "password-env", "password", "token-file", "proxy",
        "namespaces", "rate-limit", "max-inflight", "keepalive", "connect-timeout", "reconnect",
    ]
    /// `connections.ditto.proxy`: the HTTP proxy the WebSocket connection tunnels through.
    static let proxy = ["url", "username", "password-file", "password-env"]
    static let tls = ["ca-file", "ca-path", "cert-file", "key-file", "version", "verify-hostname", "insecure"]
    static let reconnect = ["initial", "maximum"]
    static let spool = ["directory", "max-size", "max-age", "when-full", "fsync", "segment-size"]
    static let ditto = ["publish-topic", "subscribe-filter", "reply-topic", "qos", "connection-id"]
    static let defaults = ["namespace", "qos", "content-type", "request-timeout"]
    static let headers = ["allow", "deny", "rename", "trace-context", "static", "mqtt311"]
    static let mqtt311 = ["mode"]
    static let devices = ["status-topic", "offline-payloads", "connection-status"]
    static let connectionStatus = ["feature", "thing-id"]
    static let acks = ["delivered", "answered"]
    static let operations = ["listen"]
    static let uplinkRule = [
        "name", "topic", "thing-id", "event", "message", "passthrough", "payload", "headers", "priority", "qos",
        "response-topics",
    ]
    static let event = ["action", "path"]
    static let message = ["feature", "subject", "content-type", "response", "timeout", "reply-topic"]
    static let payload = ["format", "pointer", "fields"]
    static let passthrough = ["allow-twin"]
    static let downlinkRule = ["name", "match", "thing-id", "topic", "payload", "reply", "headers", "priority", "qos"]
    static let match = ["messages", "commands"]
    static let matchMessages = ["subject", "feature"]
    static let matchCommands = ["actions", "path"]
    static let reply = [
        "mode", "topic", "correlation-pointer", "status-pointer", "value-pointer", "default-status", "timeout",
    ]

    /// Section name -> keys, for documentation checks.
    static let all: [(section: String, keys: [String])] = [
        ("top level", root), ("connections", connections), ("connections.*", connection), ("connections.ditto", dittoMQTT),
        ("connections.ditto (websocket)", dittoWebSocket), ("connections.ditto.proxy", proxy), ("tls", tls),
        ("reconnect", reconnect), ("spool", spool), ("ditto", ditto), ("defaults", defaults), ("headers", headers),
        ("headers.mqtt311", mqtt311), ("devices", devices), ("devices.connection-status", connectionStatus), ("acks", acks), ("operations", operations), ("uplink[]", uplinkRule),
        ("uplink[].event", event), ("uplink[].message", message), ("uplink[].payload", payload),
        ("uplink[].passthrough", passthrough),
        ("downlink[]", downlinkRule), ("downlink[].match", match), ("downlink[].match.messages", matchMessages),
        ("downlink[].match.commands", matchCommands), ("downlink[].reply", reply),
    ]
}
