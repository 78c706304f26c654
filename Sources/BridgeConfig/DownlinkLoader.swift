import DittoProtocol
import MQTT
extension ConfigLoader {
    // MARK: - downlink

    func downlinkRule(_ v: YAMLValue, index: Int, context: RuleContext) -> DownlinkRule? {
        guard let m = reader.mapping(v, keys: ConfigSchema.downlinkRule, what: "a downlink rule") else { return nil }
        if m.entries.isEmpty, m.suggestedKeys.isEmpty {
            reader.error(v, "empty rule", hint: "a rule needs name, match, thing-id and topic")
            return nil
        }
        let name = ruleName(m)
        var match: DownlinkMatch?
        var matchVars: [String]?
        if let mv = required(m, "match", hint: "e.g. {messages: {subject: \"*\"}}") {
            if let parsed = downlinkMatch(mv) {
                match = parsed.match
                matchVars = parsed.vars
            }
        }
        var thingID: Template?
        var fixed: [String: String] = [:]
        if let tv = required(m, "thing-id", hint: "e.g. \"{namespace}:{deviceId}\"") {
            thingID = downlinkThingID(tv, context: context)
            if let t = thingID, t.placeholders.contains("namespace"), let ns = context.defaults.namespace {
                fixed["namespace"] = ns
            }
        }
        let topicVars: [String]? =
            if let thingID, let matchVars {
                Self.unique(thingID.placeholders + matchVars + ["thingId", "namespace", "thingName", "correlationId"])
            } else { nil }
        let headers = headerPolicy(m["headers"], base: context.globalHeaders, known: topicVars ?? [])
        var topic: TopicTemplate?
        if let tv = required(m, "topic", hint: "e.g. devices/{deviceId}/inbox/{subject}") {
            topic = reader.topic(tv, allowWildcards: false, what: "topic")
            if let t = topic, let topicVars, !reader.checkPlaceholders(t.placeholderOffsets, at: tv, known: topicVars) {
                topic = nil
            }
        }
        var payload = DownlinkPayload.value
        if let pv = m["payload"], let p = reader.choice(pv, DownlinkPayload.allCases.map(\.rawValue)) {
            payload = DownlinkPayload(rawValue: p) ?? .value
        }
        let reply = replySpec(
            m["reply"], topicVars: topicVars, requestTopic: topic, payload: payload, headers: headers, context: context)
        var priority = 0
        if let pv = m["priority"], let p = reader.int(pv, range: -1_000_000...1_000_000) { priority = p }
        var qos = context.defaults.qos
        if let qv = m["qos"], let q = reader.int(qv, range: 0...2) { qos = QoS(rawValue: UInt8(q)) ?? qos }
        guard let name, let match, let thingID, let topic, let reply else { return nil }
        return DownlinkRule(
            name: name, index: index, location: v.location, match: match, thingID: thingID, fixedValues: fixed,
            topic: topic, payload: payload, reply: reply, headers: headers, priority: priority, qos: qos)
    }

    func downlinkThingID(_ tv: YAMLValue, context: RuleContext) -> Template? {
        guard let template = reader.template(tv) else { return nil }
        var previousWasPlaceholder = false
        for part in template.parts {
            if case .placeholder(let p) = part {
                if previousWasPlaceholder {
                    sink.error(
                        tv.location(atOffset: p.offset), tv.path,
                        "two placeholders next to each other cannot be told apart when reading a thing ID",
                        hint: "put literal text between them, e.g. {a}-{b}")
                    return nil
                }
                if p.name.hasPrefix("header:") || p.name == "thingName" {
                    _ = reader.checkPlaceholders([(p.name, p.offset)], at: tv, known: [])
                    return nil
                }
                previousWasPlaceholder = true
            } else {
                previousWasPlaceholder = false
            }
        }
        return validateThingIDSample(template, at: tv, context: context) ? template : nil
    }

    func downlinkMatch(_ v: YAMLValue) -> (match: DownlinkMatch, vars: [String])? {
        guard let m = reader.mapping(v, keys: ConfigSchema.match, what: "match: {messages: ...} or {commands: ...}")
        else { return nil }
        if m.has("messages"), m.has("commands") {
            reader.error(
                m["commands"] ?? v, "'messages' and 'commands' cannot both be given", hint: "write two rules")
            return nil
        }
        if let mv = m["messages"] {
            var subject = "*"
            var feature: String?
            if !mv.isNull {
                guard let mm = reader.mapping(mv, keys: ConfigSchema.matchMessages) else { return nil }
                if let sv = mm["subject"] {
                    guard let s = reader.string(sv) else { return nil }
                    subject = s
                }
                if let fv = mm["feature"], !fv.isNull {
                    guard let f = reader.string(fv) else { return nil }
                    if !ThingIDRules.isValidName(f) {
                        reader.error(fv, "'\(f)' is not a feature id or pattern", hint: "no '/', no control characters")
                        return nil
                    }
                    feature = f
                }
            }
            return (.messages(subject: subject, feature: feature), feature == nil ? ["subject"] : ["subject", "feature"])
        }
        if let cv = m["commands"] {
            var actions = Set(CommandAction.allCases)
            var path: PathTemplate?
            if !cv.isNull {
                guard let cm = reader.mapping(cv, keys: ConfigSchema.matchCommands) else { return nil }
                if let av = cm["actions"] {
                    guard let items = reader.sequence(av, what: "command actions, e.g. [modify, retrieve]") else { return nil }
                    var chosen = Set<CommandAction>()
                    for item in items {
                        guard let a = reader.choice(item, CommandAction.allCases.map(\.rawValue)) else { return nil }
                        chosen.insert(CommandAction(rawValue: a) ?? .modify)
                    }
                    if chosen.isEmpty {
                        reader.error(av, "no actions: the rule would never match", hint: "leave actions out for all")
                        return nil
                    }
                    actions = chosen
                }
                if let pv = cm["path"] {
                    guard let p = reader.path(pv) else { return nil }
                    path = p
                }
            }
            return (.commands(actions: actions, path: path), (path?.placeholders ?? []) + ["action", "path"])
        }
        reader.error(v, "match names neither messages nor commands", hint: "e.g. {messages: {subject: \"*\"}}")
        return nil
    }


    func replySpec(
        _ v: YAMLValue?, topicVars: [String]?, requestTopic: TopicTemplate?, payload: DownlinkPayload,
        headers: HeaderPolicy, context: RuleContext
    ) -> ReplySpec? {
        let device = context.connections.device
        var spec = ReplySpec(
            mode: device.mqttVersion == .v5 ? .mqtt5 : .none, topic: nil, correlationPointer: nil, statusPointer: nil,
            valuePointer: nil, defaultStatus: nil, timeout: context.defaults.requestTimeout)
        guard let v, !v.isNull else {
            if spec.mode == .mqtt5 { spec.topic = Self.compiled("ditto-bridge/reply/{thingId}") }
            return spec
        }
        guard let m = reader.mapping(v, keys: ConfigSchema.reply) else { return nil }
        var ok = true
        if let mv = m["mode"] {
            guard let mode = reader.choice(mv, ReplySpec.Mode.allCases.map(\.rawValue)) else { return nil }
            spec.mode = ReplySpec.Mode(rawValue: mode) ?? .none
            if spec.mode == .mqtt5, device.mqttVersion == .v311 {
                reader.error(
                    mv, "mode mqtt5 needs connections.device.mqtt-version 5",
                    hint: "MQTT 3.1.1 devices answer with mode topic or payload")
                ok = false
            }
        }
        if spec.mode == .none {
            for key in ConfigSchema.reply where key != "mode" && m.has(key) {
                reader.error(m[key] ?? v, "'\(key)' has no effect with mode: none")
                ok = false
            }
            return ok ? spec : nil
        }
        if let tv = m["topic"] {
            if let t = reader.topic(tv, allowWildcards: spec.mode != .mqtt5, what: "topic") {
                let known = (topicVars ?? []) + (spec.mode == .topic ? ["status"] : [])
                if topicVars == nil || reader.checkPlaceholders(t.placeholderOffsets, at: tv, known: known) {
                    spec.topic = t
                    if spec.mode == .topic, !t.placeholders.contains("correlationId") {
                        reader.error(
                            tv, "with mode: topic the reply topic must contain {correlationId}",
                            hint: "e.g. devices/{deviceId}/res/{correlationId}/{status}")
                        ok = false
                    }
                } else {
                    ok = false
                }
            } else {
                ok = false
            }
        } else if spec.mode == .mqtt5 {
            spec.topic = Self.compiled("ditto-bridge/reply/{thingId}")
        } else {
            reader.error(
                v, "missing required key 'topic' (where the device answers)",
                hint: spec.mode == .topic ? "e.g. devices/{deviceId}/res/{correlationId}/{status}" : "e.g. devices/{deviceId}/reply")
            ok = false
        }
        func pointer(_ key: String) -> RFC6901Pointer? {
            guard let pv = m[key] else { return nil }
            guard let text = reader.string(pv), let p = parsePointer(text, at: pv) else {
                ok = false
                return nil
            }
            return p
        }
        spec.correlationPointer = pointer("correlation-pointer")
        spec.statusPointer = pointer("status-pointer")
        spec.valuePointer = pointer("value-pointer")
        if spec.mode == .payload, spec.correlationPointer == nil, !m.has("correlation-pointer") {
            reader.error(v, "mode: payload needs correlation-pointer (where the id is in the reply)", hint: "e.g. correlation-pointer: /id")
            ok = false
        }
        if spec.mode == .payload, let correlation = spec.correlationPointer {
            // The request is one object with the id and the value side by side, and the reply is read the same way:
            // pointers that overlap would overwrite the user's value with the id, or read the id as the value.
            if let value = spec.effectiveValuePointer {
                // (An empty pointer, the whole payload, is refused as empty above.)
                if value.overlaps(correlation) {
                    reader.error(
                        m["value-pointer"] ?? m["correlation-pointer"] ?? v,
                        "value-pointer '\(value)' and correlation-pointer '\(correlation)' overlap: the id would overwrite the value or be part of it",
                        hint: "use sibling members, e.g. correlation-pointer: /id and value-pointer: /value")
                    ok = false
                }
            }
            if let status = spec.statusPointer, status.overlaps(correlation) {
                reader.error(
                    m["status-pointer"] ?? v, "status-pointer '\(status)' and correlation-pointer '\(correlation)' overlap",
                    hint: "use sibling members, e.g. correlation-pointer: /id and status-pointer: /status")
                ok = false
            }
        }
        if spec.mode != .payload, let cv = m["correlation-pointer"] {
            reader.error(
                cv, "correlation-pointer only applies to mode: payload",
                hint: spec.mode == .topic ? "mode topic reads {correlationId} from the topic" : "MQTT 5 replies carry correlation data")
            ok = false
        }
        if let sv = m["default-status"], let s = reader.int(sv, range: 100...599) { spec.defaultStatus = s }
        if let tv = m["timeout"], let t = reader.duration(tv, range: .milliseconds(1)...(.seconds(60))) { spec.timeout = t }

        // A 3.1.1 device can only answer with the id if the request told it the id.
        // (`payload` mode puts the id into the request itself.)
        if device.mqttVersion == .v311, spec.mode == .topic, let requestTopic,
            !requestTopic.placeholders.contains("correlationId"), payload != .envelope, headers.mqtt311 != .wrapper
        {
            reader.error(
                m["mode"] ?? v, "the device is never told the correlation id it must answer with",
                hint: "add {correlationId} to the rule's topic (e.g. devices/{deviceId}/req/{correlationId}/{subject}), use payload: envelope, or headers.mqtt311: wrapper")
            ok = false
        }
        return ok ? spec : nil
    }

    // MARK: - devices

    func devicesBlock(_ v: YAMLValue?, downlink: [DownlinkRule], context: RuleContext) -> DeviceStatusSettings? {
        guard let v, !v.isNull, let m = reader.mapping(v, keys: ConfigSchema.devices) else { return nil }
        guard let tv = required(m, "status-topic", hint: "e.g. devices/{deviceId}/status"),
            let topic = reader.topic(tv, allowWildcards: true, what: "topic")
        else { return nil }
        if topic.placeholders.isEmpty {
            reader.error(tv, "the status topic names no device", hint: "capture the device, e.g. devices/{deviceId}/status")
            return nil
        }
        var offline = ["offline"]
        if let ov = m["offline-payloads"], let items = reader.sequence(ov, what: "payloads meaning offline") {
            offline = items.compactMap { reader.string($0, nonEmpty: false) }
            if offline.isEmpty { reader.error(ov, "no offline payloads: no device would ever be offline") }
        }
        for rule in downlink {
            let provided = Set(rule.thingID.placeholders + ["thingId", "namespace"])
            let missing = topic.placeholders.filter { !provided.contains($0) }
            if !missing.isEmpty {
                reader.warning(
                    tv,
                    "downlink rule '\(rule.name)' does not provide \(missing.map { "{\($0)}" }.joined(separator: ", ")) from its thing-id, so its devices' status is unknown (treated as online)"
                )
            }
        }
        var settings = DeviceStatusSettings(topic: topic, offlinePayloads: offline)
        if let cv = m["connection-status"], let cm = reader.mapping(cv, keys: ConfigSchema.connectionStatus) {
            var featureID = "ConnectionStatus"
            if let fv = cm["feature"], let feature = reader.string(fv) {
                if feature.contains("/") || feature.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
                    reader.error(fv, "'\(feature)' is not a Ditto feature id", hint: "no '/' and no control characters")
                } else {
                    featureID = feature
                }
            }
            if let tv = required(cm, "thing-id", hint: "the device's thing, e.g. \"{namespace}:{deviceId}\""),
               let thingID = thingIDTemplate(tv, captures: topic.placeholders, context: context) {
                settings.connectionStatus = ConnectionStatusSettings(featureID: featureID, thingID: thingID)
            }
        }
        return settings
    }

    // MARK: - cross-rule checks

    func checkOverlaps(_ rules: [UplinkRule], topics: [Int: SourceLocation], context: RuleContext) {
        for (j, later) in rules.enumerated() {
            for earlier in rules[..<j] where earlier.priority == later.priority && earlier.topic.overlaps(later.topic) {
                let sa = earlier.topic.specificity
                let sb = later.topic.specificity
                let winner: String
                if sa == sb {
                    if earlier.topic.shape == later.topic.shape {
                        winner = "'\(earlier.name)' always wins (same topic, earlier in the file), so '\(later.name)' never applies"
                    } else {
                        winner = "'\(earlier.name)' wins where both match (earlier in the file)"
                    }
                } else {
                    let (w, l) = sa > sb ? (earlier, later) : (later, earlier)
                    winner = "'\(w.name)' wins where both match (more specific topic than '\(l.name)')"
                }
                sink.warning(
                    topics[later.index] ?? later.location, "uplink[\(later.index)].topic",
                    "topics of '\(later.name)' (\(later.topic)) and '\(earlier.name)' (\(earlier.topic)) overlap; \(winner)",
                    hint: "set priority: on one of them to make the choice explicit")
            }
        }
    }

    static func normalizedHost(_ host: String) -> String {
        let lower = host.lowercased()
        return lower == "localhost" || lower == "::1" || lower == "[::1]" ? "127.0.0.1" : lower
    }

    func checkLoops(
        uplink: [UplinkRule], downlink: [DownlinkRule], uplinkTopics: [Int: SourceLocation],
        downlinkTopics: [Int: SourceLocation], context: RuleContext
    ) {
        let device = context.connections.device
        // Over WebSocket no Ditto-side topic shares the device broker.
        guard let dittoBroker = context.connections.ditto.broker else { return }
        let sameBroker =
            Self.normalizedHost(device.host) == Self.normalizedHost(dittoBroker.host) && device.port == dittoBroker.port
        let dittoTopics = [
            ("publish-topic", context.ditto.publishTopic), ("subscribe-filter", context.ditto.subscribeFilter),
            ("reply-topic", context.ditto.replyTopic),
        ]
        if sameBroker {
            for rule in uplink {
                // One message per rule: the first Ditto topic it would swallow is enough to explain the problem.
                if let (key, dittoTopic) = dittoTopics.first(where: { rule.topic.overlaps($0.1) }) {
                    sink.error(
                        uplinkTopics[rule.index] ?? rule.location, "uplink[\(rule.index)].topic",
                        "'\(rule.topic)' also matches the Ditto-side topic ditto.\(key) '\(dittoTopic)' on the same broker",
                        hint: "the bridge would read Ditto's traffic as device messages; narrow the topic (e.g. devices/...)")
                }
            }
            for rule in downlink where rule.topic.overlaps(context.ditto.subscribeFilter) {
                sink.error(
                    downlinkTopics[rule.index] ?? rule.location, "downlink[\(rule.index)].topic",
                    "'\(rule.topic)' is also matched by ditto.subscribe-filter '\(context.ditto.subscribeFilter)' on the same broker",
                    hint: "the bridge would read its own device publishes as Ditto signals")
            }
        }
        // Other device-side subscriptions: replies and status. Messages there are not device telemetry.
        var subscriptions: [(path: String, topic: TopicTemplate, location: SourceLocation, what: String)] = []
        for rule in downlink {
            if let reply = rule.reply.topic, rule.reply.mode != .none {
                subscriptions.append(("downlink[\(rule.index)].reply.topic", reply, rule.location, "device replies"))
            }
        }
        if let status = context.deviceStatus {
            subscriptions.append(("devices.status-topic", status.topic, status.location, "device status"))
        }
        for subscription in subscriptions {
            if sameBroker, let (key, dittoTopic) = dittoTopics.first(where: { subscription.topic.overlaps($0.1) }) {
                sink.error(
                    subscription.location, subscription.path,
                    "'\(subscription.topic)' also matches the Ditto-side topic ditto.\(key) '\(dittoTopic)' on the same broker",
                    hint: "the bridge would read Ditto's traffic as \(subscription.what)")
            }
            for up in uplink where subscription.topic.overlaps(up.topic) {
                sink.warning(
                    subscription.location, subscription.path,
                    "'\(subscription.topic)' is also matched by uplink rule '\(up.name)' (\(up.topic))",
                    hint: "\(subscription.what) would also be mapped to Ditto as device messages")
            }
        }
        for rule in uplink {
            guard case .message(let spec) = rule.action, let reply = spec.replyTopic else { continue }
            for up in uplink where reply.overlaps(up.topic) {
                sink.warning(
                    rule.location, "uplink[\(rule.index)].message.reply-topic",
                    "'\(reply)' is also matched by uplink rule '\(up.name)' (\(up.topic))",
                    hint: "the bridge would map its own answers to devices back to Ditto")
            }
        }
        for rule in downlink {
            for up in uplink where rule.topic.overlaps(up.topic) {
                sink.warning(
                    downlinkTopics[rule.index] ?? rule.location, "downlink[\(rule.index)].topic",
                    "'\(rule.topic)' is also matched by uplink rule '\(up.name)' (\(up.topic))",
                    hint: "the bridge would map its own downlink publishes back to Ditto")
            }
        }
    }
}

extension TopicTemplate {
    /// The topic with placeholder names erased: two templates with the same shape match the same topics.
    var shape: String {
        levels.map { level in
            switch level {
            case .literal(let text): text
            case .singleLevelWildcard: "+"
            case .multiLevelWildcard: "#"
            case .multiLevelCapture: "{...}"
            case .capture(let t):
                t.parts.map { part in
                    switch part {
                    case .literal(let text): text
                    case .placeholder(let p): "{|" + p.transforms.map(\.description).joined(separator: "|") + "}"
                    }
                }.joined()
            }
        }.joined(separator: "/")
    }
}
