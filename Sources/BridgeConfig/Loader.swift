import DittoProtocol
import Foundation
import MQTT
import Yams

extension BridgeConfiguration {
    /// Reads and validates a config file; everything besides the config text comes from `source`.
    ///
    /// Relative `password-file` and TLS paths are resolved against the config file's directory.
    /// - throws: every error in the file (never only the first), each naming file, line, column and key path.
    public static func load(path: String, source: some ConfigSource) throws(ConfigErrors) -> BridgeConfiguration {
        guard let bytes = source.contents(atPath: path) else {
            let reason = source.entry(atPath: path) == .missing ? "the file does not exist" : "the file is not readable"
            throw ConfigErrors(errors: [
                ConfigDiagnostic(file: path, line: 0, column: 0, keyPath: "", message: "cannot read the config file: \(reason)")
            ])
        }
        guard let text = String(data: Data(bytes), encoding: .utf8) else {
            throw ConfigErrors(errors: [
                ConfigDiagnostic(file: path, line: 0, column: 0, keyPath: "", message: "the config file is not UTF-8 text")
            ])
        }
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        return try parse(yaml: text, fileName: path, source: source, baseDirectory: directory)
    }

    /// Validates config text; the files it names and the environment variables it uses come from `source`.
    ///
    /// - parameter fileName: the name used in diagnostics.
    /// - parameter baseDirectory: where relative file paths (password files, TLS files) start; the source's current
    ///   directory when nil.
    public static func parse(
        yaml: String, fileName: String = "<config>", source: some ConfigSource, baseDirectory: String? = nil
    ) throws(ConfigErrors) -> BridgeConfiguration {
        let sink = DiagnosticSink(file: fileName)
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            throw ConfigErrors(errors: [syntaxDiagnostic(error, file: fileName)])
        }
        let loader = ConfigLoader(
            reader: Reader(sink: sink), source: source, baseDirectory: baseDirectory ?? source.currentDirectory)
        let configuration = loader.load(root, fileName: fileName)
        guard sink.errors.isEmpty, var configuration else {
            throw ConfigErrors(errors: sink.sortedErrors, warnings: sink.sortedWarnings)
        }
        configuration.warnings = sink.sortedWarnings
        return configuration
    }

    private static func syntaxDiagnostic(_ error: any Error, file: String) -> ConfigDiagnostic {
        func make(_ mark: Mark?, _ message: String) -> ConfigDiagnostic {
            ConfigDiagnostic(
                file: file, line: mark?.line ?? 0, column: mark?.column ?? 0, keyPath: "",
                message: "YAML syntax error: \(message)")
        }
        guard let error = error as? YamlError else { return make(nil, "\(error)") }
        switch error {
        case .scanner(let context, let problem, let mark, let yaml), .parser(let context, let problem, let mark, let yaml),
            .composer(let context, let problem, let mark, let yaml):
            let text = [context.map { $0.text }, problem].compactMap { $0 }.joined(separator: " ")
            var diagnostic = make(mark, text)
            let lines = yaml.split(separator: "\n", omittingEmptySubsequences: false)
            if mark.line >= 1, mark.line <= lines.count, lines[mark.line - 1].contains("\t") {
                diagnostic.hint = "YAML does not allow tabs for indentation; use spaces"
            }
            return diagnostic
        case .duplicatedKeysInMapping(let duplicates, let context):
            return ConfigDiagnostic(
                file: file, line: context.mark.line, column: context.mark.column, keyPath: "",
                message: "duplicate key '\(duplicates.joined(separator: "', '"))' in the same mapping",
                hint: "each key may appear once; merge the two entries")
        case .reader(let problem, _, _, _): return make(nil, problem)
        default: return make(nil, "\(error)")
        }
    }
}

/// Turns the YAML tree into the typed configuration, reporting problems as it goes.
struct ConfigLoader {
    let reader: Reader
    /// The files the config names and the environment variables it uses.
    let source: any ConfigSource
    let baseDirectory: String

    var sink: DiagnosticSink { reader.sink }


    func load(_ root: Node?, fileName: String) -> BridgeConfiguration? {
        let rootValue = YAMLValue(node: root ?? Node([(Node, Node)]()), path: "")
        if root == nil || rootValue.isNull {
            sink.warning(SourceLocation(line: 1, column: 1), "", "the file is empty: no rules, the bridge would do nothing")
        }
        guard let top = root == nil || rootValue.isNull
            ? MappingView(value: rootValue, entries: [])
            : reader.mapping(rootValue, keys: ConfigSchema.root, what: "the top level of the config file")
        else { return nil }

        let connections = connectionsBlock(top["connections"])
        let defaults = defaultsBlock(top["defaults"])
        let ditto = dittoBlock(top["ditto"], transport: connections.ditto)
        let globalHeaders = headerPolicy(
            top["headers"], base: .standard, known: ["thingId", "namespace", "thingName", "correlationId"])
        // Over WebSocket the bridge declares its labels itself (`declared-acks`): Ditto wants no connection prefix.
        let acks = acksBlock(
            top["acks"], connectionID: ditto.connectionID, requiresConnectionPrefix: connections.ditto.broker != nil)
        checkSubscribedNamespaces(connections.ditto, defaults: defaults, top: top)
        let namespaceDeclared = (top["defaults"].flatMap { reader.peekMapping($0) })?.has("namespace") ?? false
        var context = RuleContext(
            connections: connections, defaults: defaults, ditto: ditto, globalHeaders: globalHeaders,
            namespaceDeclared: namespaceDeclared)

        var uplink: [UplinkRule] = []
        var names: [String: YAMLValue] = [:]
        if let list = top["uplink"], !list.isNull, let items = reader.sequence(list, what: "uplink rules") {
            for (index, item) in items.enumerated() {
                if let rule = uplinkRule(item, index: index, context: context) {
                    uplink.append(rule)
                    checkUnique(rule.name, item, &names)
                }
            }
        }
        var downlink: [DownlinkRule] = []
        if let list = top["downlink"], !list.isNull, let items = reader.sequence(list, what: "downlink rules") {
            for (index, item) in items.enumerated() {
                if let rule = downlinkRule(item, index: index, context: context) {
                    downlink.append(rule)
                    checkUnique(rule.name, item, &names)
                }
            }
        }
        let deviceStatus = devicesBlock(top["devices"], downlink: downlink, context: context)
        if let deviceStatus, let statusValue = top["devices"].flatMap({ reader.peekMapping($0)?["status-topic"] }) {
            context.deviceStatus = (deviceStatus.topic, statusValue.location)
        }

        if root != nil, !rootValue.isNull, uplink.isEmpty, downlink.isEmpty, sink.errors.isEmpty {
            sink.warning(rootValue.location, "", "no uplink or downlink rules: the bridge would do nothing")
        }
        let uplinkTopics = topicLocations(top["uplink"])
        let downlinkTopics = topicLocations(top["downlink"])
        checkOverlaps(uplink, topics: uplinkTopics, context: context)
        checkLoops(uplink: uplink, downlink: downlink, uplinkTopics: uplinkTopics, downlinkTopics: downlinkTopics, context: context)

        return BridgeConfiguration(
            fileName: fileName, connections: connections, ditto: ditto, defaults: defaults, headers: globalHeaders,
            deviceStatus: deviceStatus, acks: acks, uplink: uplink, downlink: downlink, warnings: [],
            spool: spoolBlock(top["spool"]), operations: operationsBlock(top["operations"]))
    }

    /// Over WebSocket the bridge gets only the signals of the namespaces it subscribes to: `defaults.namespace`
    /// outside them means downlink commands and messages for the bridge's own things never arrive.
    private func checkSubscribedNamespaces(_ ditto: DittoConnection, defaults: Defaults, top: MappingView) {
        guard let namespaces = ditto.webSocket?.namespaces, !namespaces.isEmpty, let namespace = defaults.namespace,
            !namespaces.contains(namespace),
            let at = top["connections"].flatMap({ reader.peekMapping($0)?["ditto"] }).flatMap({ reader.peekMapping($0)?["namespaces"] })
        else { return }
        reader.warning(
            at, "defaults.namespace '\(namespace)' is not among the namespaces subscribed to: Ditto will send no live commands or messages for things in it",
            hint: "add '\(namespace)' to namespaces, or leave namespaces out to receive every namespace")
    }

    /// Where each rule's `topic` value is, by rule index, so cross-rule messages point at the topic line.
    private func topicLocations(_ list: YAMLValue?) -> [Int: SourceLocation] {
        guard let list, case .sequence(let items) = list.node else { return [:] }
        var result: [Int: SourceLocation] = [:]
        for (index, item) in items.enumerated() {
            let value = YAMLValue(node: item, path: list.element(index))
            if let topic = reader.peekMapping(value)?["topic"] { result[index] = topic.location }
        }
        return result
    }

    private func checkUnique(_ name: String, _ item: YAMLValue, _ names: inout [String: YAMLValue]) {
        let nameValue = (reader.peekMapping(item)?["name"]) ?? item
        if let first = names[name] {
            reader.error(
                nameValue, "duplicate rule name '\(name)' (also used at line \(first.location.line), \(first.path))",
                hint: "rule names appear in logs and must be unique across uplink and downlink")
        } else {
            names[name] = nameValue
        }
    }

    // MARK: - connections

    func connectionsBlock(_ v: YAMLValue?) -> Connections {
        var device = defaultConnection(clientID: "ditto-bridge-devices")
        var ditto = DittoConnection.mqtt(defaultConnection(clientID: "ditto-bridge-ditto"))
        if let v, !v.isNull, let m = reader.mapping(v, keys: ConfigSchema.connections) {
            if let d = m["device"] {
                device = connection(
                    d, role: "device", defaultClientID: "ditto-bridge-devices", keys: ConfigSchema.connection,
                    misplaced: { key in
                        key == "transport" || ConfigSchema.dittoWebSocket.contains(key)
                            ? ("'\(key)' is a key of connections.ditto only: devices always use MQTT",
                               "remove it; Ditto's WebSocket binding is chosen with connections.ditto.transport: websocket")
                            : nil
                    })
            }
            if let d = m["ditto"] { ditto = dittoConnection(d) }
            if case .mqtt(let ditto) = ditto, Self.sharesUnauthenticatedListener(device, ditto) {
                reader.warning(
                    m["ditto"] ?? v,
                    "connections.device and connections.ditto are the same listener (\(ditto.host):\(ditto.port)) and neither authenticates (no username, password or client certificate): any client of that broker can publish on the Ditto topics and act as Ditto, sending commands to devices and signals Ditto's connection executes with its authorization",
                    hint: "give Ditto's connection a listener of its own, or make the broker require authentication and give both connections credentials")
            }
        }
        return Connections(device: device, ditto: ditto)
    }

    /// Whether both connections reach one broker listener (same host, compared without case, and port) with no
    /// credential on either: that listener takes anonymous clients, and devices are among them. Loopback hosts
    /// are left out: the bridge then talks to a broker on its own machine, as with the private loopback broker of
    /// `scripts/run.sh` and `Config/bridge.yaml`; whether other clients reach that broker is the broker's
    /// configuration, which the bridge cannot see (docs/CONFIG.md says so).
    static func sharesUnauthenticatedListener(_ device: BrokerConnection, _ ditto: BrokerConnection) -> Bool {
        func authenticates(_ c: BrokerConnection) -> Bool { c.username != nil || c.password != nil || c.tls?.certFile != nil }
        let host = device.host.lowercased()
        return host == ditto.host.lowercased() && device.port == ditto.port && !isLoopback(host)
            && !authenticates(device) && !authenticates(ditto)
    }

    /// `localhost`, `127.0.0.0/8` and `::1`, as written in a host key.
    static func isLoopback(_ host: String) -> Bool {
        let host = host.lowercased()
        return host == "localhost" || host == "::1" || host == "[::1]"
            || (host.hasPrefix("127.") && host.allSatisfy { $0 == "." || $0.isASCII && $0.isNumber })
    }

    func defaultConnection(clientID: String) -> BrokerConnection {
        BrokerConnection(
            host: "127.0.0.1", port: 1883, mqttVersion: .v5, clientID: clientID, keepalive: .seconds(30),
            // Persistent sessions by default: the brokers queue QoS 1 messages while the bridge restarts.
            cleanStart: false, sessionExpiry: .seconds(3600), username: nil, password: nil, passwordSource: nil, tls: nil,
            reconnect: ReconnectPolicy(initial: .seconds(1), maximum: .seconds(30)))
    }


    func connection(
        _ v: YAMLValue, role: String, defaultClientID: String, keys: [String],
        misplaced: (String) -> (message: String, hint: String)?
    ) -> BrokerConnection {
        var c = defaultConnection(clientID: defaultClientID)
        guard let m = reader.mapping(v, keys: keys, misplaced: misplaced) else { return c }
        if let h = m["host"] {
            if let host = expanded(h) {
                if host.contains("://") || host.contains(" ") || host.contains("/") {
                    reader.error(
                        h, "'\(host)' is not a host name",
                        hint: "write only the host name or address (e.g. broker.local); port and tls are separate keys")
                } else {
                    c.host = host
                }
            }
        } else if !m.suggestedKeys.contains("host") {
            sink.error(
                v.location, v.child("host"), "missing required key 'host'",
                hint: "the default broker 127.0.0.1:1883 applies only when the whole '\(role)' block is left out")
        }
        if let t = m["tls"] { c.tls = tls(t) }
        c.port = c.tls == nil ? 1883 : 8883
        if let p = m["port"], let port = self.port(p) { c.port = port }
        if let mv = m["mqtt-version"], let version = reader.choice(mv, ["5", "3.1.1"]) {
            c.mqttVersion = version == "5" ? .v5 : .v311
            // MQTT 3.1.1 has no expiry: a session without clean session lasts until the broker drops it.
            if c.mqttVersion == .v311 { c.sessionExpiry = nil }
        }
        if let id = m["client-id"], let clientID = expanded(id) {
            if clientID.utf8.count > 65535 || clientID.unicodeScalars.contains("\u{0}") {
                reader.error(id, "a client id is at most 65535 bytes without NUL")
            } else {
                c.clientID = clientID
            }
        }
        if let k = m["keepalive"], let keepalive = reader.duration(k, range: .seconds(5)...(.seconds(65535))) {
            if keepalive.components.attoseconds != 0 {
                reader.error(k, "keepalive is counted in whole seconds")
            } else {
                c.keepalive = keepalive
            }
        }
        if let cs = m["clean-start"], let clean = reader.bool(cs) {
            c.cleanStart = clean
            if clean, !m.has("session-expiry") { c.sessionExpiry = nil }
        }
        if let se = m["session-expiry"] {
            if c.mqttVersion == .v311 {
                reader.error(
                    se, "session-expiry needs mqtt-version 5",
                    hint: "with MQTT 3.1.1 write clean-start: false for a persistent session")
            } else if let expiry = reader.duration(se, range: .zero...(.seconds(4_294_967_295))) {
                if expiry.components.attoseconds != 0 {
                    reader.error(se, "session-expiry is counted in whole seconds")
                } else {
                    c.sessionExpiry = expiry
                }
            }
        }
        if let u = m["username"], let username = expanded(u) { c.username = username }
        if let (password, source) = password(in: m, hasUsername: c.username != nil) {
            c.password = password
            c.passwordSource = source
        }
        if let mi = m["max-inflight"], let maximum = reader.int(mi, range: 1...65_535) { c.maxInflight = maximum }
        if let g = m["shared-subscription-group"], let group = expanded(g) {
            if c.mqttVersion != .v5 {
                reader.error(g, "shared subscriptions need mqtt-version 5")
            } else if !MQTTTopic.isValidShareName(group) {
                reader.error(g, "'\(group)' is not a shared-subscription group name", hint: "no '/', '+' or '#'")
            } else {
                c.sharedSubscriptionGroup = group
            }
        }
        if let r = m["reconnect"] { c.reconnect = reconnectPolicy(r, default: c.reconnect) }
        return c
    }

    /// A `reconnect` block (brokers and the WebSocket connection): `initial` and `maximum`, 100ms to 1h.
    func reconnectPolicy(_ r: YAMLValue, default policy: ReconnectPolicy) -> ReconnectPolicy {
        var policy = policy
        guard let rm = reader.mapping(r, keys: ConfigSchema.reconnect) else { return policy }
        if let i = rm["initial"], let initial = reader.duration(i, range: .milliseconds(100)...(.seconds(3600))) {
            policy.initial = initial
        }
        if let x = rm["maximum"], let maximum = reader.duration(x, range: .milliseconds(100)...(.seconds(3600))) {
            policy.maximum = maximum
        }
        if policy.initial > policy.maximum {
            reader.error(
                rm["maximum"] ?? r,
                "maximum (\(DurationText.format(policy.maximum))) is shorter than initial (\(DurationText.format(policy.initial)))"
            )
        }
        return policy
    }

    /// The password of a block with `username` and one of `password-file`, `password-env` and `password` (those of
    /// them its schema takes): brokers, Basic authentication at Ditto's WebSocket endpoint and its proxy. nil when
    /// none is given; the secret is nil when the source failed (reported).
    func password(in m: MappingView, hasUsername: Bool) -> (Secret?, BrokerConnection.PasswordSource)? {
        let passwordKeys = ["password-file", "password-env", "password"].filter { m.has($0) }
        if passwordKeys.count > 1, let second = m[passwordKeys[1]] {
            reader.error(
                second, "'\(passwordKeys[0])' and '\(passwordKeys[1])' both give the password",
                hint: "keep one of \(passwordKeys.joined(separator: ", "))")
            return nil
        }
        guard let key = passwordKeys.first, let pv = m[key] else { return nil }
        if !hasUsername {
            reader.error(pv, "a password needs a username", hint: "add username: next to it")
        }
        switch key {
        case "password-file":
            guard let path = expanded(pv) else { return nil }
            return (readPasswordFile(path, at: pv), .file(path))
        case "password-env":
            guard let name = reader.string(pv) else { return nil }
            guard let value = source.environmentVariable(name) else {
                reader.error(pv, "environment variable \(name) is not set", hint: "export \(name)=... before starting the bridge")
                return (nil, .environment(name))
            }
            if value.isEmpty {
                reader.error(pv, "environment variable \(name) is set but empty")
                return (nil, .environment(name))
            }
            return (Secret(value), .environment(name))
        default:
            guard let value = reader.text(pv, hint: "quote it (password: \"...\") so that YAML keeps it as text") else {
                return nil
            }
            reader.warning(
                pv, "the password is written in the config file",
                hint: "prefer password-file: or password-env:, which keep it out of backups and version control")
            return (Secret(value), .inline)
        }
    }

    /// The scalar with `${VAR}` and `${VAR:-default}` replaced from the environment (for host, client-id,
    /// username, file paths and the operations listen address, so one file serves a container, a systemd unit
    /// with `${CREDENTIALS_DIRECTORY}` and a laptop).
    func expanded(_ v: YAMLValue) -> String? {
        guard let text = reader.string(v) else { return nil }
        guard text.contains("${") else { return text }
        var out = ""
        var rest = Substring(text)
        while let start = rest.range(of: "${") {
            out += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else {
                reader.error(v, "'${' without a closing '}'", hint: "write ${VARIABLE} or ${VARIABLE:-default}")
                return nil
            }
            let inner = rest[start.upperBound..<end]
            let parts = inner.split(separator: ":-", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0])
            guard !name.isEmpty, name.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_") })
            else {
                reader.error(v, "'${\(inner)}' does not name an environment variable")
                return nil
            }
            if let value = source.environmentVariable(name), !value.isEmpty {
                out += value
            } else if parts.count == 2 {
                out += parts[1]
            } else {
                reader.error(
                    v, "environment variable \(name) is not set",
                    hint: "export it, or give a default: ${\(name):-value}")
                return nil
            }
            rest = rest[rest.index(after: end)...]
        }
        out += rest
        return out
    }

    /// A port: a YAML number, or text with `${VAR:-1883}` so that a container's or a test's environment can move
    /// the broker without another config file.
    func port(_ v: YAMLValue) -> Int? {
        guard case .scalar(let s) = v.node, v.node.tagName != .int, s.string.contains("${") else {
            return reader.int(v, range: 1...65535)
        }
        guard let text = expanded(v) else { return nil }
        guard let port = Int(text), (1...65535).contains(port) else {
            reader.error(v, "'\(text)' (from '\(s.string)') is not a port", hint: "a whole number from 1 to 65535")
            return nil
        }
        return port
    }

    func resolve(_ path: String) -> String {
        path.hasPrefix("/") ? path : URL(fileURLWithPath: baseDirectory).appendingPathComponent(path).path
    }

    func readPasswordFile(_ path: String, at v: YAMLValue) -> Secret? {
        let full = resolve(path)
        let entry = source.entry(atPath: full)
        guard entry != .missing else {
            reader.error(v, "password file '\(full)' does not exist")
            return nil
        }
        guard case .file = entry, let bytes = source.contents(atPath: full) else {
            reader.error(v, "password file '\(full)' is not readable")
            return nil
        }
        guard var text = String(data: Data(bytes), encoding: .utf8) else {
            reader.error(v, "password file '\(full)' is not UTF-8 text")
            return nil
        }
        // Editors add a final newline; it is never part of the password.
        while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
        guard !text.isEmpty else {
            reader.error(v, "password file '\(full)' is empty")
            return nil
        }
        return Secret(text)
    }

    /// The absolute path a key names (`${VAR}` expanded, resolved against the config's directory), and whether a
    /// readable file (or directory) is there; what is not is reported.
    func existingPath(_ v: YAMLValue, directory: Bool = false) -> (path: String?, usable: Bool) {
        guard let path = expanded(v) else { return (nil, false) }
        let full = resolve(path)
        switch source.entry(atPath: full) {
        case .missing:
            reader.error(v, "'\(full)' does not exist")
        case .file where directory, .directory where !directory:
            reader.error(v, "'\(full)' is \(directory ? "not a directory" : "a directory, not a file")")
        case .file(readable: false), .directory(readable: false):
            reader.error(v, "'\(full)' is not readable")
        case .file, .directory:
            return (full, true)
        }
        return (full, false)
    }

    func tls(_ v: YAMLValue) -> TLSSettings? {
        var settings = TLSSettings()
        if case .scalar = v.node, !v.isNull {
            guard let on = reader.bool(v) else { return nil }
            return on ? settings : nil
        }
        guard let m = reader.mapping(v, keys: ConfigSchema.tls)
        else { return nil }
        func file(_ key: String, directory: Bool = false) -> String? {
            m[key].flatMap { existingPath($0, directory: directory).path }
        }
        settings.caFile = file("ca-file")
        settings.caPath = file("ca-path", directory: true)
        settings.certFile = file("cert-file")
        settings.keyFile = file("key-file")
        if m.has("cert-file") != m.has("key-file") {
            let present = m.has("cert-file") ? "cert-file" : "key-file"
            let missing = m.has("cert-file") ? "key-file" : "cert-file"
            reader.error(m[present] ?? v, "\(present) needs \(missing) (a client certificate and its key go together)")
        }
        if let vv = m["version"], let version = reader.choice(vv, ["tlsv1.2", "tlsv1.3"]) {
            settings.version = TLSSettings.Version(rawValue: version)
        }
        if let h = m["verify-hostname"], let verify = reader.bool(h) { settings.verifyHostname = verify }
        if let i = m["insecure"], let insecure = reader.bool(i) {
            settings.insecure = insecure
            if insecure {
                reader.warning(
                    i, "insecure: true turns off the check that the server certificate names the host (the certificate must still be signed by a trusted CA)",
                    hint: "use it for testing only; verify-hostname: false does the same")
            }
        }
        return settings
    }

    // MARK: - ditto, defaults, acks

    static let thingPlaceholders = ["thingId", "namespace", "thingName"]

    /// The `ditto:` keys that name MQTT topics and QoS: they mean nothing over Ditto's WebSocket binding.
    static let mqttOnlyDittoKeys = ["publish-topic", "subscribe-filter", "reply-topic", "qos"]

    func dittoBlock(_ v: YAMLValue?, transport: DittoConnection) -> DittoSettings {
        // The defaults compile; `try?` never yields nil here, and a fallback keeps the code trap-free.
        var settings = DittoSettings(
            publishTopic: Self.compiled("ditto/in/{thingId}"), subscribeFilter: Self.compiled("ditto/out/#"),
            replyTopic: Self.compiled("ditto/out/{thingId}/reply"), qos: .atLeastOnce, connectionID: "edge-bridge")
        guard let v, !v.isNull,
            let m = reader.mapping(v, keys: ConfigSchema.ditto)
        else { return settings }
        if let c = m["connection-id"], let id = reader.string(c) {
            if id.unicodeScalars.allSatisfy({ AckLabelRules.isLabelCharacter($0) }) {
                settings.connectionID = id
            } else {
                reader.error(c, "'\(id)' is not a Ditto connection id", hint: "use letters, digits, '-', '_' and ':'")
            }
        }
        guard transport.broker != nil else {
            // The defaults stay in the value, unused: the WebSocket side has no topics.
            for key in Self.mqttOnlyDittoKeys {
                guard let value = m[key] else { continue }
                reader.error(
                    value,
                    "'\(key)' is a setting of the MQTT connection to Ditto; with connections.ditto.transport: websocket it means nothing",
                    hint: "remove it: over WebSocket every Ditto Protocol message is a frame on the one socket")
            }
            return settings
        }
        if let t = m["publish-topic"], let topic = reader.topic(t, allowWildcards: false, what: "topic") {
            if reader.checkPlaceholders(topic.placeholderOffsets, at: t, known: Self.thingPlaceholders) {
                settings.publishTopic = topic
            }
        }
        if let f = m["subscribe-filter"], let filter = reader.topic(f, allowWildcards: true, what: "topic filter") {
            if !filter.placeholders.isEmpty {
                reader.error(f, "a subscribe filter takes no placeholders", hint: "use + or #, e.g. ditto/out/#")
            } else {
                settings.subscribeFilter = filter
            }
        }
        if let r = m["reply-topic"], let topic = reader.topic(r, allowWildcards: false, what: "topic") {
            if reader.checkPlaceholders(topic.placeholderOffsets, at: r, known: Self.thingPlaceholders) {
                settings.replyTopic = topic
            }
        }
        if let q = m["qos"], let qos = reader.int(q, range: 0...2) { settings.qos = QoS(rawValue: UInt8(qos)) ?? .atLeastOnce }
        let sample = ["thingId": "org.example:device-1", "namespace": "org.example", "thingName": "device-1"]
        // The subscribe filter takes no placeholders: it covers a topic as an MQTT filter does.
        func isSubscribed(_ topic: String) -> Bool {
            settings.subscribeFilter.covers(topic.split(separator: "/", omittingEmptySubsequences: false), variables: [:])
        }
        if let rendered = try? settings.replyTopic.render(sample), !isSubscribed(rendered) {
            sink.error(
                (m["reply-topic"] ?? m["subscribe-filter"] ?? v).location,
                (m["reply-topic"] ?? m["subscribe-filter"] ?? v).path,
                "reply-topic '\(settings.replyTopic)' is not covered by subscribe-filter '\(settings.subscribeFilter)'",
                hint: "Ditto's answers to device requests would never reach the bridge")
        }
        if let rendered = try? settings.publishTopic.render(sample), isSubscribed(rendered) {
            sink.error(
                (m["subscribe-filter"] ?? m["publish-topic"] ?? v).location,
                (m["subscribe-filter"] ?? m["publish-topic"] ?? v).path,
                "subscribe-filter '\(settings.subscribeFilter)' also matches publish-topic '\(settings.publishTopic)'",
                hint: "the bridge would read its own messages to Ditto back as Ditto's")
        }
        return settings
    }

    static func compiled(_ text: String) -> TopicTemplate {
        do { return try TopicTemplate(text) } catch { preconditionFailure("built-in topic '\(text)' does not compile") }
    }

    func spoolBlock(_ v: YAMLValue?) -> SpoolSettings? {
        guard let v, !v.isNull, let m = reader.mapping(v, keys: ConfigSchema.spool) else { return nil }
        guard let d = m["directory"] else {
            sink.error(v.location, v.child("directory"), "missing required key 'directory'",
                       hint: "the spool keeps its files there, e.g. directory: /var/lib/ditto-mqtt-bridge/spool")
            return nil
        }
        guard let directory = expanded(d) else { return nil }
        var spool = SpoolSettings(directory: resolve(directory))
        if let s = m["max-size"], let size = byteSize(s, range: (1 << 20)...(1 << 50)) { spool.maxSize = size }
        if let s = m["segment-size"], let size = byteSize(s, range: (64 << 10)...(1 << 30)) { spool.segmentSize = size }
        if let a = m["max-age"], let age = reader.duration(a, range: .seconds(1)...(.seconds(365 * 86_400))) {
            spool.maxAge = age
        }
        if let w = m["when-full"], let choice = reader.choice(w, ["back-pressure", "drop-oldest"]) {
            spool.whenFull = SpoolSettings.WhenFull(rawValue: choice) ?? .backPressure
        }
        if let f = m["fsync"] {
            if case .scalar(let text) = f.node, text.string == "never" || text.string == "always" {
                spool.fsync = text.string == "never" ? .never : .always
            } else if let interval = reader.duration(f, range: .milliseconds(1)...(.seconds(3600))) {
                spool.fsync = .interval(interval)
            }
        }
        if spool.segmentSize > spool.maxSize {
            reader.error(m["segment-size"] ?? v, "segment-size is larger than max-size")
        }
        return spool
    }

    /// A size in bytes: a whole number with an optional unit (KiB, MiB, GiB; KB, MB, GB are read the same).
    func byteSize(_ v: YAMLValue, range: ClosedRange<Int>) -> Int? {
        guard case .scalar(let s) = v.node, !v.isNull else {
            reader.error(v, "expected a size such as 64MiB or 1GiB")
            return nil
        }
        let text = s.string.trimmingCharacters(in: .whitespaces)
        let units: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("KB", 1 << 10),
                                      ("MB", 1 << 20), ("GB", 1 << 30), ("B", 1)]
        var number = text
        var factor = 1
        for (unit, value) in units where text.hasSuffix(unit) {
            number = String(text.dropLast(unit.count)).trimmingCharacters(in: .whitespaces)
            factor = value
            break
        }
        guard let count = Int(number), count >= 0, count <= Int.max / factor else {
            reader.error(v, "invalid size '\(text)'", hint: "a whole number with KiB, MiB or GiB, e.g. 512MiB")
            return nil
        }
        let bytes = count * factor
        guard range.contains(bytes) else {
            reader.error(v, "\(text) is out of range; allowed: \(range.lowerBound >> 10)KiB to \(range.upperBound >> 30)GiB")
            return nil
        }
        return bytes
    }

    func defaultsBlock(_ v: YAMLValue?) -> Defaults {
        var d = Defaults(namespace: nil, qos: .atLeastOnce, contentType: "application/json", requestTimeout: .seconds(10))
        guard let v, !v.isNull, let m = reader.mapping(v, keys: ConfigSchema.defaults)
        else { return d }
        if let n = m["namespace"], let ns = namespace(n) { d.namespace = ns }
        if let q = m["qos"], let qos = reader.int(q, range: 0...2) { d.qos = QoS(rawValue: UInt8(qos)) ?? .atLeastOnce }
        if let c = m["content-type"], let ct = contentType(c) { d.contentType = ct }
        if let t = m["request-timeout"], let timeout = reader.duration(t, range: .milliseconds(1)...(.seconds(60))) {
            d.requestTimeout = timeout
        }
        return d
    }

    /// A Ditto namespace (``ThingIDRules``): `defaults.namespace` and the WebSocket connection's `namespaces`.
    func namespace(_ v: YAMLValue) -> String? {
        guard let ns = reader.string(v) else { return nil }
        guard ThingIDRules.isValidNamespace(ns) else {
            reader.error(
                v, "'\(ns)' is not a valid Ditto namespace",
                hint: "letter-started parts of letters, digits and '_', joined by '.' or '-', e.g. org.example")
            return nil
        }
        return ns
    }

    func contentType(_ v: YAMLValue) -> String? {
        guard let text = reader.string(v) else { return nil }
        let main = text.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? text
        let parts = main.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && !$0.contains(where: \.isWhitespace) }) else {
            // Ditto does not trim: `application/json ;charset=utf-8` would be a binary type there.
            reader.error(v, "'\(text)' is not a media type", hint: "write type/subtype without spaces, e.g. application/json or text/plain; charset=utf-8")
            return nil
        }
        return text
    }

    func acksBlock(_ v: YAMLValue?, connectionID: String, requiresConnectionPrefix: Bool) -> AckLabels {
        var acks = AckLabels(delivered: "\(connectionID):delivered", answered: "\(connectionID):answered")
        guard let v, !v.isNull, let m = reader.mapping(v, keys: ConfigSchema.acks) else { return acks }
        func label(_ key: String) -> String?? {
            guard let lv = m[key] else { return .none }
            if lv.isNull { return .some(nil) }
            guard let template = reader.template(lv),
                reader.checkPlaceholders(template.placeholderOffsets, at: lv, known: ["connectionId"]),
                let text = try? template.render(["connectionId": connectionID])
            else { return .none }
            if let problem = AckLabelRules.problem(
                with: text, connectionID: connectionID, requiresConnectionPrefix: requiresConnectionPrefix)
            {
                reader.error(lv, "invalid acknowledgement label '\(text)': \(problem.message)", hint: problem.hint)
                return .none
            }
            return .some(text)
        }
        if let delivered = label("delivered") { acks.delivered = delivered }
        if let answered = label("answered") { acks.answered = answered }
        if let d = acks.delivered, d == acks.answered, let av = m["answered"] {
            reader.error(av, "'delivered' and 'answered' use the same label '\(d)'", hint: "a requester could not tell them apart")
        }
        return acks
    }
}

enum AckLabelRules {
    static func isLabelCharacter(_ s: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(s) || ("A"..."Z").contains(s) || ("0"..."9").contains(s) || s == "-" || s == "_" || s == ":"
    }

    /// Why the config may not name `label`, or nil. `requiresConnectionPrefix`: Ditto's MQTT connection accepts only
    /// labels it declares, which start with its id; over WebSocket the session declares them (`declared-acks`) and
    /// any valid label is fine.
    static func problem(
        with label: String, connectionID: String, requiresConnectionPrefix: Bool
    ) -> (message: String, hint: String?)? {
        if AcknowledgementLabel.reserved.contains(label) {
            return ("'\(label)' is reserved for Ditto itself", "use a label such as '\(connectionID):delivered'")
        }
        guard AcknowledgementLabel.isValid(label, maximumLength: AcknowledgementLabel.maximumEmittedLength) else {
            return ("labels are 3 to \(AcknowledgementLabel.maximumEmittedLength) characters of letters, digits, '-', '_' and ':'", nil)
        }
        guard !requiresConnectionPrefix || label.hasPrefix(connectionID + ":") else {
            return (
                "Ditto accepts only labels that start with the connection id and ':'",
                "write '{connectionId}:\(label)'"
            )
        }
        return nil
    }
}

extension Reader {
    /// The mapping's entries without reporting anything (for locating a key of an item already checked).
    func peekMapping(_ v: YAMLValue) -> MappingView? {
        guard case .mapping(let mapping) = v.node else { return nil }
        return MappingView(
            value: v,
            entries: mapping.compactMap { k, val in
                k.scalar.map { ($0.string, k, YAMLValue(node: val, path: v.child($0.string))) }
            })
    }
}
