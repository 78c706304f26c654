public import BridgeConfig
public import DittoProtocol

/// Why a rule that matched a topic or signal could not produce its values.
public enum RuleMatchError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A template needed a value that was not there.
    case template(TemplateError)
    /// The rendered thing ID breaks Ditto's rules (e.g. a topic level with `ü` or `/`).
    case invalidThingID(String)

    public var description: String {
        switch self {
        case .template(let error): "\(error)"
        case .invalidThingID(let id): "'\(id)' is not a valid Ditto thing ID"
        }
    }
}

/// A device topic matched by an uplink rule.
public struct UplinkMatch: Sendable, Hashable {
    /// The thing the device speaks for.
    public var thingID: ThingID
    /// Every value the rule's other templates may use: the topic's captures, `namespace`, `thingId`, `thingName`.
    public var values: [String: String]
}

extension UplinkRule {
    /// The thing ID and template values for a device topic; nil when the topic does not match.
    public func match(topic: String) throws(RuleMatchError) -> UplinkMatch? {
        guard var values = self.topic.match(topic) else { return nil }
        if values["namespace"] == nil, let defaultNamespace { values["namespace"] = defaultNamespace }
        let rendered: String
        do {
            rendered = try thingID.render(values)
        } catch {
            throw .template(error)
        }
        guard let id = try? ThingID(rendered) else { throw .invalidThingID(rendered) }
        Self.addThing(id, to: &values)
        return UplinkMatch(thingID: id, values: values)
    }

    /// What ``match(topic:)`` gives as values for a topic it matched for `thingID`, without rendering and
    /// checking the ID again (the runtime keeps the ID per topic, not the values).
    public func values(topic: String, thingID: ThingID) -> [String: String] {
        var values = self.topic.match(topic) ?? [:]
        Self.addThing(thingID, to: &values)
        return values
    }

    private static func addThing(_ thingID: ThingID, to values: inout [String: String]) {
        values["thingId"] = thingID.description
        values["namespace"] = thingID.namespace
        values["thingName"] = thingID.name
    }
}

extension DownlinkRule {
    /// The device's values for a thing ID (the inverse of the thing ID template), plus `thingId`, `namespace`,
    /// `thingName`; nil when this rule does not serve the thing.
    public func values(for thingID: ThingID) -> [String: String]? {
        guard var values = self.thingID.match(thingID.description, fixed: fixedValues) else { return nil }
        values.reserveCapacity(values.count + 3)
        values["thingId"] = thingID.description
        values["namespace"] = thingID.namespace
        values["thingName"] = thingID.name
        return values
    }

    /// The values a live message adds (`subject`, `feature`), or nil when the rule does not take it.
    /// - parameter feature: nil for a thing-level message.
    public func matchMessage(subject: String, feature: String?) -> [String: String]? {
        guard case .messages(let subjectPattern, let featurePattern) = match else { return nil }
        guard Glob.matches(subjectPattern, subject) else { return nil }
        switch (featurePattern, feature) {
        case (nil, nil): return ["subject": subject]
        case (let pattern?, let feature?) where Glob.matches(pattern, feature):
            return ["subject": subject, "feature": feature]
        default: return nil
        }
    }

    /// The values a live command adds (`action`, `path` and the path's captures), or nil when the rule does not
    /// take it.
    public func matchCommand(action: CommandAction, path: String) -> [String: String]? {
        guard case .commands(let actions, let pathTemplate) = match, actions.contains(action) else { return nil }
        var values: [String: String] = [:]
        if let pathTemplate {
            guard let captured = pathTemplate.match(path) else { return nil }
            values = captured
        }
        values["action"] = action.rawValue
        values["path"] = path
        return values
    }
}

extension BridgeConfiguration {
    /// The uplink rule that handles a device topic (by ``uplinkRulesByPrecedence``), or nil.
    public func uplinkRule(forTopic topic: String) -> UplinkRule? {
        uplinkRulesByPrecedence.first { $0.topic.match(topic) != nil }
    }
}
