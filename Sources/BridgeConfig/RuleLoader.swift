import DittoProtocol
import MQTT
import Yams
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What every rule needs from the rest of the file.
struct RuleContext {
    let connections: Connections
    let defaults: Defaults
    let ditto: DittoSettings
    let globalHeaders: HeaderPolicy
    /// `defaults.namespace` was written (maybe invalid, which is reported there); `{namespace}` is then not
    /// reported again.
    let namespaceDeclared: Bool
    /// Set once `devices:` is read (after the rules, which it is checked against).
    var deviceStatus: (topic: TopicTemplate, location: SourceLocation)?
}

extension ConfigLoader {

    func required(_ m: MappingView, _ key: String, hint: String? = nil) -> YAMLValue? {
        if let v = m[key] { return v }
        // A misspelling of this key was already reported with "did you mean"; one message is enough.
        if m.suggestedKeys.contains(key) { return nil }
        sink.error(m.value.location, m.value.child(key), "missing required key '\(key)'", hint: hint)
        return nil
    }

    func ruleName(_ m: MappingView) -> String? {
        guard let nv = required(m, "name", hint: "rules need a name for logs and check") else { return nil }
        return reader.string(nv)
    }

    static func unique(_ names: [String]) -> [String] {
        var seen = Set<String>()
        return names.filter { seen.insert($0).inserted }
    }

    // MARK: - uplink

    func uplinkRule(_ v: YAMLValue, index: Int, context: RuleContext) -> UplinkRule? {
        guard let m = reader.mapping(v, keys: ConfigSchema.uplinkRule, what: "an uplink rule") else { return nil }
        if m.entries.isEmpty, m.suggestedKeys.isEmpty {
            reader.error(v, "empty rule", hint: "a rule needs name, topic, thing-id and one of event, message, passthrough")
            return nil
        }
        let name = ruleName(m)
        var topic: TopicTemplate?
        if let tv = required(m, "topic", hint: "e.g. devices/{deviceId}/telemetry/{sensor}") {
            topic = reader.topic(tv, allowWildcards: true, what: "topic")
        }
        let captures = topic?.placeholders
        var thingID: Template?
        if let tv = required(m, "thing-id", hint: "e.g. \"{namespace}:{deviceId}\"") {
            thingID = thingIDTemplate(tv, captures: captures, context: context)
        }
        let ruleVars = captures.map { Self.unique($0 + ["namespace", "thingId", "thingName"]) }
        let device = context.connections.device
        let headers = headerPolicy(
            m["headers"], base: context.globalHeaders, known: (ruleVars ?? []) + ["correlationId"])

        let actionKeys = ["event", "message", "passthrough"].filter { m.has($0) }
        var action: UplinkAction?
        if actionKeys.count > 1 {
            reader.error(
                YAMLValue(node: m.entries.first { $0.key == actionKeys[1] }?.keyNode ?? v.node, path: v.child(actionKeys[1])),
                "'\(actionKeys[0])' and '\(actionKeys[1])' cannot both be given",
                hint: "a rule emits exactly one of event, message, passthrough")
        } else if actionKeys.isEmpty, m.suggestedKeys.isDisjoint(with: ["event", "message", "passthrough"]) {
            reader.error(v, "the rule emits nothing", hint: "add one of event:, message:, passthrough:")
        }
        var payload = UplinkPayload.json(.whole)
        if let pv = m["payload"] {
            if actionKeys == ["passthrough"] {
                reader.error(pv, "passthrough reads the whole payload as Ditto Protocol JSON", hint: "remove payload")
            } else if let parsed = uplinkPayload(pv) {
                payload = parsed
            }
        }
        if let key = actionKeys.first, let av = m[key], actionKeys.count == 1 {
            switch key {
            case "event":
                if let e = eventSpec(av, vars: ruleVars, payload: payload) { action = .event(e) }
            case "passthrough":
                if case .scalar = av.node, !av.isNull {
                    if reader.bool(av) == true {
                        action = .passthrough(.liveOnly)
                    } else if reader.bool(av) == false {
                        reader.error(av, "passthrough: false emits nothing", hint: "remove it and add event: or message:")
                    }
                } else if av.isNull {
                    action = .passthrough(.liveOnly)
                } else if let spec = passthroughSpec(av) {
                    action = .passthrough(spec)
                }
            default:
                if let spec = messageSpec(
                    av, vars: ruleVars, captures: captures ?? [], payload: payload, headers: headers, device: device,
                    context: context)
                {
                    action = .message(spec)
                }
            }
        }
        var priority = 0
        if let pv = m["priority"], let p = reader.int(pv, range: -1_000_000...1_000_000) { priority = p }
        var qos = context.defaults.qos
        if let qv = m["qos"], let q = reader.int(qv, range: 0...2) { qos = QoS(rawValue: UInt8(q)) ?? qos }
        let responseTopics = responseTopics(m, rule: v, topic: topic, action: action, vars: ruleVars, device: device)
        guard let name, let topic, let thingID, let action, let responseTopics else { return nil }
        return UplinkRule(
            name: name, index: index, location: v.location, topic: topic, thingID: thingID, action: action,
            payload: payload, headers: headers, priority: priority, qos: qos,
            defaultNamespace: context.defaults.namespace, responseTopics: responseTopics)
    }

    /// `response-topics:`, or the device's own topic space (``ResponseTopics/deviceSpace(of:)``). Nil after an
    /// error, and when the rule itself is unusable (no topic or action).
    func responseTopics(_ m: MappingView, rule v: YAMLValue, topic: TopicTemplate?, action: UplinkAction?,
                        vars: [String]?, device: BrokerConnection) -> ResponseTopics? {
        guard let rv = m["response-topics"] else {
            guard let topic, let action else { return nil }
            if let space = ResponseTopics.deviceSpace(of: topic) { return space }
            // An MQTT 5 device of a rule that promises answers would name a response topic: with no device
            // space to confine it to, the rule must say which topics are the device's.
            if case .message(let spec) = action, spec.expectsResponse, device.mqttVersion == .v5 {
                let at = (m["message"].flatMap { reader.peekMapping($0)?["response"] }) ?? m["topic"] ?? v
                reader.error(
                    at, "the rule's topic captures no {deviceId}, so the bridge cannot tell which MQTT 5 response topics belong to the device",
                    hint: "add response-topics: with the device's own topics, e.g. response-topics: [\"answers/{\(topic.placeholders.first ?? "name")}/#\"]")
                return nil
            }
            // Any other rule admits no response topic a device names (its request is refused).
            return .filters([])
        }
        if case .event? = action {
            reader.error(rv, "response-topics is only used by message and passthrough rules", hint: "an event has no answer; remove it")
            return nil
        }
        if rv.isNull { return .filters([]) }
        guard let items = reader.sequence(rv, what: "MQTT topic filters such as devices/{deviceId}/#") else { return nil }
        var filters: [TopicTemplate] = []
        var ok = true
        for item in items {
            guard let filter = reader.topic(item, allowWildcards: true, what: "response topic filter") else {
                ok = false
                continue
            }
            if case .multiLevelCapture(let name)? = filter.levels.last {
                reader.error(item, "{\(name)...} is not a filter level", hint: "write '#' for the rest of the topic")
                ok = false
                continue
            }
            if let vars, !reader.checkPlaceholders(filter.placeholderOffsets, at: item, known: vars) {
                ok = false
                continue
            }
            if filter.placeholders.isEmpty, filter.hasWildcards {
                reader.warning(
                    item, "'\(filter.source)' holds no captured value: every device of this rule may have answers published on any topic it matches, another device's too",
                    hint: "confine it to the device, e.g. with a {deviceId} level")
            }
            filters.append(filter)
        }
        return ok ? .filters(filters) : nil
    }

    /// `passthrough: {allow-twin: [modify, merge]}`: the twin actions a device may send besides live signals.
    func passthroughSpec(_ v: YAMLValue) -> PassthroughSpec? {
        guard let m = reader.mapping(v, keys: ConfigSchema.passthrough, what: "passthrough: {allow-twin: [...]}") else {
            return nil
        }
        var spec = PassthroughSpec.liveOnly
        guard let av = m["allow-twin"], !av.isNull else { return spec }
        guard let items = reader.sequence(av, what: "twin actions, e.g. [modify, merge]") else { return nil }
        for item in items {
            guard let action = reader.choice(item, PassthroughSpec.twinActions) else { return nil }
            spec.allowTwin.insert(action)
        }
        if !spec.allowTwin.isEmpty {
            reader.warning(
                av, "the device may send twin \(spec.allowTwin.sorted().joined(separator: ", ")) signals, which Ditto executes with the bridge connection's authorization",
                hint: "prefer live signals; name only the twin actions the device really needs")
        }
        return spec
    }

    func thingIDTemplate(_ tv: YAMLValue, captures: [String]?, context: RuleContext) -> Template? {
        guard let template = reader.template(tv) else { return nil }
        guard let captures else { return template }
        var ok = true
        let namespaceAvailable =
            captures.contains("namespace") || context.defaults.namespace != nil || context.namespaceDeclared
        for p in template.placeholderParts where p.name == "namespace" && !namespaceAvailable {
            ok = false
            sink.error(
                tv.location(atOffset: p.offset), tv.path, "{namespace} needs defaults.namespace",
                hint: "set defaults.namespace (e.g. org.example) or write the namespace literally")
            break
        }
        let others = template.placeholderOffsets.filter { $0.name != "namespace" }
        ok = reader.checkPlaceholders(others, at: tv, known: captures + ["namespace"]) && ok
        guard ok else { return nil }
        return validateThingIDSample(template, at: tv, context: context) ? template : nil
    }

    /// Renders the template with sample values and checks the result against Ditto's thing ID rules, so literal
    /// parts (a bad namespace, a missing ':') are caught before any device publishes.
    func validateThingIDSample(_ template: Template, at tv: YAMLValue, context: RuleContext) -> Bool {
        var sample: [String: String] = [:]
        for name in template.placeholders {
            sample[name] = name == "thingId" ? "org.example:device1" : "device1"
        }
        if let ns = context.defaults.namespace, template.placeholders.contains("namespace") { sample["namespace"] = ns }
        if template.placeholders.contains("namespace"), sample["namespace"] == "device1" { sample["namespace"] = "org.example" }
        guard let rendered = try? template.render(sample) else { return true }
        if let problem = ThingIDRules.problem(with: rendered) {
            reader.error(
                tv, "'\(template.source)' does not make a valid Ditto thing ID (with sample values: '\(rendered)'): \(problem)",
                hint: rendered.contains(":") ? nil : "write namespace:name, e.g. \"{namespace}:{deviceId}\"")
            return false
        }
        return true
    }

    func eventSpec(_ v: YAMLValue, vars: [String]?, payload: UplinkPayload) -> EventSpec? {
        guard let m = reader.mapping(v, keys: ConfigSchema.event, what: "an event: {action, path}") else { return nil }
        var action = EventAction.modified
        if let av = m["action"], let a = reader.choice(av, EventAction.allCases.map(\.rawValue)) {
            action = EventAction(rawValue: a) ?? .modified
        }
        guard let pv = required(m, "path", hint: "e.g. /features/{sensor}/properties/value"),
            let path = reader.template(pv)
        else { return nil }
        if let vars, !reader.checkPlaceholders(path.placeholderOffsets, at: pv, known: vars) { return nil }
        guard checkResourcePath(path, at: pv), checkEvent(action, path: path, payload: payload, at: pv) else { return nil }
        return EventSpec(action: action, path: path)
    }

    /// Whether Ditto takes a live `action` event at `path` (rendered with sample values) with a value the payload
    /// format can give, asked of Ditto's own rules (``Envelope/validate()``): the path is a thing resource that
    /// has such an event, and the format gives a value of the resource's JSON kind (an object for `attributes`,
    /// a string for `policyId`, ...). A JSON format may give any kind; the mapping refuses a wrong one per message.
    func checkEvent(_ action: EventAction, path: Template, payload: UplinkPayload, at v: YAMLValue) -> Bool {
        var sample: [String: String] = [:]
        for name in path.placeholders { sample[name] = "x" }
        guard let rendered = try? path.render(sample), let thingID = try? ThingID("org.example:device1") else { return true }
        if let pointer = try? JSONPointer(rendered), let key = pointer.firstInvalidKey {
            reader.error(
                v, "'\(key)' is not a key Ditto accepts in a path",
                hint: "keys and feature IDs have no control characters, no characters U+007F to U+00FF such as 'é', and at most 256 characters")
            return false
        }
        // Values Ditto's thing model takes where the kind fits, when the device can send them: a whole JSON value
        // may be a thing naming its own `thingId` (Ditto takes the thing of a created/modified event at `/` from
        // it), text a definition or policy id, JSON a feature definition. `fields` builds an object of the device's
        // values, never a thing with its thingId; `bytes` gives base64, never an identifier.
        let ownThing = JSONValue.object(["thingId": .string(thingID.description)])
        let identifier = JSONValue.string("org.example:device1:1.0.0")
        let candidates: [JSONValue] = switch payload {
        case .json(.fields): [.object(JSONObject())]
        case .json: [.object(JSONObject()), ownThing, .string("x"), identifier, .array([identifier]), .number(JSONNumber(1))]
        case .number: [.number(JSONNumber(1))]
        case .boolean: [.bool(true)]
        case .text: [.string("x"), identifier]
        case .bytes: [.string("x")]
        }
        var firstError: DittoError?
        for value in candidates {
            let event = Envelope.liveEvent(
                thingID: thingID, action: TopicPath.Action(rawValue: action.rawValue) ?? .modified, path: rendered,
                value: value, revision: 1)
            do {
                try event.validate()
                return true
            } catch {
                if firstError == nil { firstError = error }
            }
        }
        guard let firstError else { return true }
        let format = switch payload {
        case .json: "json"
        case .number: "number"
        case .boolean: "boolean"
        case .text: "text"
        case .bytes: "bytes"
        }
        reader.error(
            v, "Ditto refuses a live \(action.rawValue) event at '\(rendered)' with a \(format) value: \(firstError.message)",
            hint: firstError.description)
        return false
    }

    func checkResourcePath(_ path: Template, at v: YAMLValue) -> Bool {
        guard case .literal(let first)? = path.parts.first, first.hasPrefix("/") else {
            reader.error(v, "a path starts with '/'", hint: "e.g. /features/{sensor}/properties/value, or / for the whole thing")
            return false
        }
        for case .literal(let text) in path.parts where text.contains("//") {
            reader.error(v, "a path has no empty levels ('//')")
            return false
        }
        return true
    }

    func messageSpec(
        _ v: YAMLValue, vars: [String]?, captures: [String], payload: UplinkPayload, headers: HeaderPolicy,
        device: BrokerConnection, context: RuleContext
    ) -> MessageSpec? {
        guard let m = reader.mapping(v, keys: ConfigSchema.message)
        else { return nil }
        var ok = true
        var feature: Template?
        if let fv = m["feature"], !fv.isNull {
            if let t = reader.template(fv) {
                if let vars, !reader.checkPlaceholders(t.placeholderOffsets, at: fv, known: vars) { ok = false }
                if t.isConstant, !ThingIDRules.isValidName(t.source) || t.source.count > 256 {
                    reader.error(fv, "'\(t.source)' is not a valid feature id", hint: "no '/', no control characters")
                    ok = false
                }
                feature = t
            } else {
                ok = false
            }
        }
        var subject: Template?
        if let sv = required(m, "subject", hint: "e.g. alarm") {
            subject = reader.template(sv)
            if let s = subject, let vars, !reader.checkPlaceholders(s.placeholderOffsets, at: sv, known: vars) { ok = false }
            if let s = subject, s.source.hasPrefix("/") {
                reader.error(sv, "a subject does not start with '/'")
                ok = false
            }
        }
        var contentType: ContentType?
        if let cv = m["content-type"] {
            contentType = self.contentType(cv).map(ContentType.init)
            if let ct = contentType, let problem = Self.contentTypeProblem(ct, payload: payload) {
                reader.error(cv, problem.message, hint: problem.hint)
                ok = false
            }
        }
        var response = false
        if let rv = m["response"], let r = reader.bool(rv) { response = r }
        var timeout = context.defaults.requestTimeout
        if let tv = m["timeout"], let t = reader.duration(tv, range: .milliseconds(1)...(.seconds(60))) {
            timeout = t
            if !response {
                reader.warning(tv, "timeout only applies with response: true")
            }
        }
        var replyTopic: TopicTemplate?
        if let rv = m["reply-topic"] {
            if !response {
                reader.error(rv, "reply-topic is only used with response: true")
                ok = false
            } else if let t = reader.topic(rv, allowWildcards: false, what: "topic") {
                replyTopic = t
                if let vars, !reader.checkPlaceholders(t.placeholderOffsets, at: rv, known: vars + ["correlationId", "status"]) {
                    ok = false
                }
                if device.mqttVersion == .v311, headers.mqtt311 != .wrapper, !t.placeholders.contains("correlationId") {
                    reader.error(
                        rv, "the answer carries no correlation id for this MQTT 3.1.1 device",
                        hint: "add a {correlationId} level, e.g. devices/{deviceId}/res/{correlationId}/{status}")
                    ok = false
                }
            } else {
                ok = false
            }
        }
        if response, device.mqttVersion == .v311 {
            let at = m["response"] ?? v
            if replyTopic == nil, m["reply-topic"] == nil {
                reader.error(
                    at, "MQTT 3.1.1 devices have no response topic, so the answer needs a reply-topic",
                    hint: "add reply-topic: \"devices/{deviceId}/res/{correlationId}/{status}\"")
                ok = false
            }
            if !captures.contains("correlationId"), headers.mqtt311 != .wrapper {
                reader.error(
                    at, "the device's request carries no correlation id",
                    hint: "capture {correlationId} in the topic (e.g. devices/{deviceId}/req/{correlationId}/{subject}) or set headers.mqtt311: wrapper")
                ok = false
            }
        }
        guard ok, let subject else { return nil }
        return MessageSpec(
            feature: feature, subject: subject, contentType: contentType, expectsResponse: response, timeout: timeout,
            replyTopic: replyTopic)
    }

    static func contentTypeProblem(_ contentType: ContentType, payload: UplinkPayload)
        -> (message: String, hint: String)?
    {
        // Ditto's classification (``ContentTypeStrategy``): a message's merge-patch payload is binary to Ditto.
        let strategy = contentType.strategy
        switch payload {
        case .bytes where strategy != .binary && strategy != .jsonMergePatch:
            return (
                "a bytes payload needs a binary content type; with '\(contentType)' Ditto would not decode the base64 value",
                "use e.g. application/octet-stream"
            )
        case .text where strategy != .text:
            return ("a text payload needs a text content type, not '\(contentType)'", "use e.g. text/plain")
        case .json, .number, .boolean:
            if strategy != .json {
                return ("a JSON value needs a JSON content type, not '\(contentType)'", "use application/json or leave content-type out")
            }
            return nil
        default: return nil
        }
    }

    func uplinkPayload(_ v: YAMLValue) -> UplinkPayload? {
        let formats = ["json", "number", "boolean", "text", "bytes"]
        if case .scalar = v.node {
            guard let f = reader.choice(v, formats) else { return nil }
            return Self.simplePayload(f)
        }
        guard let m = reader.mapping(v, keys: ConfigSchema.payload, what: "payload: {format, pointer | fields}")
        else { return nil }
        var format = "json"
        if let fv = m["format"] {
            guard let f = reader.choice(fv, formats) else { return nil }
            format = f
        }
        if format != "json" {
            for key in ["pointer", "fields"] where m.has(key) {
                reader.error(m[key] ?? v, "\(key) only applies to format: json")
                return nil
            }
            return Self.simplePayload(format)
        }
        if m.has("pointer"), m.has("fields") {
            reader.error(m["fields"] ?? v, "pointer and fields cannot both be given", hint: "pointer takes one value, fields builds an object")
            return nil
        }
        if let pv = m["pointer"] {
            guard let text = reader.string(pv, nonEmpty: false), let pointer = parsePointer(text, at: pv) else { return nil }
            return .json(text.isEmpty ? .whole : .pointer(pointer))
        }
        if let fv = m["fields"] {
            guard case .mapping = fv.node, let fm = reader.mapping(fv, keys: reader.peekMapping(fv)?.entries.map(\.key) ?? [])
            else {
                reader.typeError(fv, expected: "a mapping of field name to JSON pointer, e.g. {temperature: /t}")
                return nil
            }
            var fields: [(name: String, pointer: RFC6901Pointer)] = []
            var ok = true
            for entry in fm.entries {
                if !ThingIDRules.isValidName(entry.key) {
                    reader.error(YAMLValue(node: entry.keyNode, path: entry.value.path), "'\(entry.key)' is not a valid JSON key for Ditto (no '/', no control characters)")
                    ok = false
                    continue
                }
                guard let text = reader.string(entry.value, nonEmpty: false), let pointer = parsePointer(text, at: entry.value)
                else {
                    ok = false
                    continue
                }
                fields.append((entry.key, pointer))
            }
            guard ok else { return nil }
            if fields.isEmpty {
                reader.error(fv, "fields is empty", hint: "name at least one field, or leave fields out for the whole document")
                return nil
            }
            return .json(.fields(fields))
        }
        return .json(.whole)
    }

    static func simplePayload(_ format: String) -> UplinkPayload {
        switch format {
        case "number": .number
        case "boolean": .boolean
        case "text": .text
        case "bytes": .bytes
        default: .json(.whole)
        }
    }

    /// A device payload pointer (RFC 6901), parsed once here: the mapping reads payloads with it as it is.
    func parsePointer(_ text: String, at v: YAMLValue) -> RFC6901Pointer? {
        do {
            return try RFC6901Pointer(parsing: text)
        } catch {
            reader.error(v, error.description, hint: error.hint)
            return nil
        }
    }
}
