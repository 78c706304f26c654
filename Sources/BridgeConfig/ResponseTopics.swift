import MQTT

/// The MQTT 5 response topics an uplink rule lets a device name for the answer to its request
/// (`response-topics:`). The bridge publishes Ditto's answer on the topic the device names; without this
/// confinement a device could name another device's command topic and have the bridge publish there for it.
///
/// Either the device's own topic space (the default) or a list of filters over the rule's captures.
public struct ResponseTopics: Sendable, Hashable, CustomStringConvertible {
    package enum Kind: Sendable, Hashable {
        /// The request topic's first `levels` levels, then `#`; nil: the whole request topic (a `{deviceId...}`
        /// level), then `#`.
        case deviceSpace(levels: Int?)
        /// `response-topics:` as written; empty: no response topic is admitted.
        case filters([TopicTemplate])
    }

    package let kind: Kind
    /// As `check` and the logs show it: `devices/{deviceId}/#`, or the configured filters.
    public let description: String

    /// The device's own topic space of a rule whose topic is `topic`: the request's topic up to and including
    /// the last level that holds `{deviceId}`, followed by `#` (`devices/{deviceId}/requests/{subject}`:
    /// `devices/<the device's id>/#`). Levels before it are taken from the request's topic as it arrived, so a
    /// `+` level there is the device's own value, not any value. Nil when the topic captures no `{deviceId}`:
    /// then nothing tells which topics are the device's.
    public static func deviceSpace(of topic: TopicTemplate) -> ResponseTopics? {
        guard let last = topic.levels.lastIndex(where: { level in
            switch level {
            case .capture(let template): template.placeholders.contains(deviceIDPlaceholder)
            case .multiLevelCapture(let name): name == deviceIDPlaceholder
            default: false
            }
        }) else { return nil }
        let written = topic.source.split(separator: "/", omittingEmptySubsequences: false).prefix(last + 1)
        let isRest = if case .multiLevelCapture = topic.levels[last] { true } else { false }
        let shown = written.map { level -> Substring in
            isRest && level.hasSuffix("...}") ? level.dropLast(4) + "}" : level
        }
        return ResponseTopics(kind: .deviceSpace(levels: isRest ? nil : last + 1),
                              description: (shown + ["#"]).joined(separator: "/"))
    }

    /// The filters of `response-topics:`; an empty list admits no response topic.
    public static func filters(_ filters: [TopicTemplate]) -> ResponseTopics {
        ResponseTopics(kind: .filters(filters),
                       description: filters.isEmpty ? "no response topic" : filters.map(\.source).joined(separator: ", "))
    }

    /// The placeholder that names the device in the default.
    public static let deviceIDPlaceholder = "deviceId"
}

extension TopicTemplate {
    /// MQTT's filter matching, this template read as a filter over a topic's levels: captures are rendered with
    /// `variables` and compared as whole levels. The loader checks the Ditto-side filter with it; the mapping
    /// confines response topics with it.
    package func covers(_ topic: [Substring], variables: [String: String]) -> Bool {
        for (index, level) in levels.enumerated() {
            // MQTT: a wildcard in the first level does not match a topic that starts with `$`.
            let dollar = index == 0 && !(topic.first.map(MQTTTopic.leadingWildcardsMatch) ?? true)
            switch level {
            case .multiLevelWildcard:
                // `a/#` also matches `a`.
                return !dollar
            case .singleLevelWildcard:
                guard index < topic.count, !dollar else { return false }
            case .literal(let text):
                guard index < topic.count, topic[index] == text else { return false }
            case .capture(let template):
                guard index < topic.count, let value = try? template.render(variables), Self.isLevel(value),
                      topic[index] == value
                else { return false }
            case .multiLevelCapture:
                // Refused when the file is loaded: a filter level is `#`, not a capture.
                return false
            }
        }
        return levels.count == topic.count
    }

    /// One topic level: not empty, no `/`, no wildcard, no NUL.
    package static func isLevel(_ value: String) -> Bool {
        !value.contains("/") && MQTTTopic.isValidTopicName(value)
    }
}
