/// Why a string is not a valid topic name or topic filter.
public enum TopicViolation: Error, Sendable, Hashable {
    case empty
    /// More than ``MQTTTopic/maximumLength`` bytes of UTF-8.
    case tooLong(bytes: Int)
    case containsNUL
    /// `+` or `#` in a topic name.
    case wildcardInTopicName
    /// A filter's `+` that is not a whole level, or `#` that is not the whole last level.
    case misplacedWildcard
    /// `$share/` not followed by a share name (no `/`, `+` or `#`), `/` and a filter.
    case invalidSharedSubscription
}

/// MQTT's rules for topic names (what a PUBLISH is sent to) and topic filters (what a SUBSCRIBE asks for),
/// MQTT 3.1.1 and 5.0 §4.7 and §4.8.2.
public enum MQTTTopic {
    /// Topic names and filters are UTF-8 strings of at most this many bytes.
    public static let maximumLength = 65_535
    /// What starts a shared subscription's filter: `$share/<share name>/<filter>`.
    public static let sharedSubscriptionPrefix = "$share/"

    private static let slash = UInt8(ascii: "/")
    private static let plus = UInt8(ascii: "+")
    private static let hash = UInt8(ascii: "#")
    private static let dollar = UInt8(ascii: "$")

    /// The rules topic names and topic filters share: at least one byte, at most ``maximumLength``, no NUL.
    public static func validateTopicString(_ text: String) throws(TopicViolation) {
        let count = text.utf8.count
        guard count > 0 else { throw .empty }
        guard count <= maximumLength else { throw .tooLong(bytes: count) }
        guard !text.utf8.contains(0) else { throw .containsNUL }
    }

    /// A topic name: a topic string without `+` or `#`.
    public static func validateTopicName(_ topic: String) throws(TopicViolation) {
        let count = topic.utf8.count
        guard count > 0 else { throw .empty }
        guard count <= maximumLength else { throw .tooLong(bytes: count) }
        // One pass over the bytes: this runs for every publish.
        for byte in topic.utf8 {
            if byte == plus || byte == hash { throw .wildcardInTopicName }
            if byte == 0 { throw .containsNUL }
        }
    }

    /// Whether `topic` is a valid topic name (``validateTopicName(_:)``).
    public static func isValidTopicName(_ topic: String) -> Bool {
        do {
            try validateTopicName(topic)
            return true
        } catch {
            return false
        }
    }

    /// Whether `text` may stand in a topic name as it is: no `+`, `#` or NUL. It may be empty or span levels.
    public static func isTopicNamePart(_ text: String) -> Bool {
        !text.utf8.contains { $0 == plus || $0 == hash || $0 == 0 }
    }

    /// A topic filter: a topic string where `+` is a whole level and `#` the whole last level; or a shared
    /// subscription `$share/<share name>/<filter>`.
    public static func validateFilter(_ filter: String) throws(TopicViolation) {
        _ = try validatedMatchingFilter(filter)
    }

    /// The part of a valid filter that topics are matched against: all of it, or what follows a shared
    /// subscription's share name.
    private static func validatedMatchingFilter(_ filter: String) throws(TopicViolation) -> Substring.UTF8View {
        try validateTopicString(filter)
        guard filter.hasPrefix(sharedSubscriptionPrefix) else {
            try validateWildcards(filter.utf8[...])
            return filter.utf8[...]
        }
        let rest = filter.utf8.dropFirst(sharedSubscriptionPrefix.utf8.count)
        guard let separator = rest.firstIndex(of: slash), isShareName(rest[..<separator]),
              rest.index(after: separator) != rest.endIndex
        else { throw .invalidSharedSubscription }
        let matching = rest[rest.index(after: separator)...]
        try validateWildcards(matching)
        return matching
    }

    /// A shared subscription's share name: not empty, no `/`, `+` or `#`.
    public static func isValidShareName(_ name: String) -> Bool {
        isShareName(name.utf8[...])
    }

    private static func isShareName(_ name: Substring.UTF8View) -> Bool {
        !name.isEmpty && !name.contains { $0 == slash || $0 == plus || $0 == hash }
    }

    /// The filter that subscribes to `filter` as a member of the share `group`.
    public static func sharedFilter(group: String, filter: String) -> String {
        sharedSubscriptionPrefix + group + "/" + filter
    }

    /// `+` only as a whole level, `#` only as the whole last level.
    private static func validateWildcards(_ filter: Substring.UTF8View) throws(TopicViolation) {
        var atLevelStart = true
        var previous: UInt8 = 0
        for byte in filter {
            // After `+` the level ends; after `#` the filter ends.
            if previous == hash || (previous == plus && byte != slash) { throw .misplacedWildcard }
            if (byte == plus || byte == hash) && !atLevelStart { throw .misplacedWildcard }
            atLevelStart = byte == slash
            previous = byte
        }
    }

    /// Whether a filter whose first level is `+` or `#` can match `topic`: not when the topic starts with `$`
    /// (`$SYS/...`); such topics are matched only by filters that name their first level.
    public static func leadingWildcardsMatch(_ topic: String) -> Bool {
        topic.utf8.first != dollar
    }

    /// ``leadingWildcardsMatch(_:)`` for a topic's first level or a part of it that starts where the topic does.
    public static func leadingWildcardsMatch(_ topic: Substring) -> Bool {
        topic.utf8.first != dollar
    }

    /// Whether `topic` matches `filter`. A shared subscription matches like its filter. Wildcards in the first
    /// level do not match a topic starting with `$` (`#` does not match `$SYS/...`); `#` also matches the
    /// parent level (`a/#` matches `a`); `+` matches an empty level. False when either is invalid.
    public static func matches(filter: String, topic: String) -> Bool {
        guard let filterLevels = try? validatedMatchingFilter(filter), isValidTopicName(topic) else { return false }
        let topicLevels = topic.utf8.split(separator: slash, omittingEmptySubsequences: false)
        let levels = filterLevels.split(separator: slash, omittingEmptySubsequences: false)
        for (index, level) in levels.enumerated() {
            let isWildcard = level.elementsEqual(CollectionOfOne(plus)) || level.elementsEqual(CollectionOfOne(hash))
            if index == 0, isWildcard, !leadingWildcardsMatch(topic) { return false }
            if level.elementsEqual(CollectionOfOne(hash)) { return true }
            guard index < topicLevels.count else { return false }
            if !isWildcard, !level.elementsEqual(topicLevels[index]) { return false }
        }
        return levels.count == topicLevels.count
    }
}
