/// A Ditto Protocol topic `{namespace}/{name}/{group}/{channel}/{criterion}/{action|subject}`, parsed
/// exactly as Ditto's `ImmutableTopicPath.TopicPathParser` does, quirks included:
/// - a leading `/` means an empty namespace; a trailing `/` is ignored;
/// - at the first `//` splitting stops and the rest (starting with `/`) is one segment;
/// - `policies` and `connections` have no channel segment;
/// - messages/acks/announcements take all remaining segments, joined with `/`, as subject;
/// - segments after a command/event/search/streaming action and after `errors` are ignored.
///
/// The parser does not validate namespace or name; `thingID` does, as Ditto's adapters do.
public struct TopicPath: Sendable, Hashable, CustomStringConvertible {
    /// Entity group.
    public enum Group: String, Sendable, Hashable, CaseIterable {
        case things, policies, connections
    }

    /// Channel; `none` for policies and connections (and never written in the topic).
    public enum Channel: String, Sendable, Hashable, CaseIterable {
        case twin, live, none
    }

    /// Criterion.
    public enum Criterion: String, Sendable, Hashable, CaseIterable {
        case commands, events, search, messages, errors, acks, announcements, streaming
    }

    /// Command and event actions.
    public enum Action: String, Sendable, Hashable, CaseIterable {
        case create, retrieve, modify, merge, delete, migrate
        case created, modified, merged, migrated, deleted
        case checkPermissions

        /// Whether this is an event action (past tense).
        public var isEventAction: Bool {
            switch self {
            case .created, .modified, .merged, .migrated, .deleted: return true
            default: return false
            }
        }
    }

    /// Search protocol actions (`_/_/things/twin/search/<action>`).
    public enum SearchAction: String, Sendable, Hashable, CaseIterable {
        case subscribe, request, cancel, created, next, complete, failed, error
    }

    /// History streaming actions.
    public enum StreamingAction: String, Sendable, Hashable, CaseIterable {
        case subscribeForPersistedEvents, request, cancel, created, next, complete, failed, error
    }

    /// The placeholder Ditto uses for "any"/"not applicable" namespace or name.
    public static let placeholder = "_"

    public var namespace: String
    public var entityName: String
    public var group: Group
    public var channel: Channel
    public var criterion: Criterion
    public var action: Action?
    public var searchAction: SearchAction?
    public var streamingAction: StreamingAction?
    /// Message subject, acknowledgement label or announcement name.
    public var subject: String?

    /// Builds a topic from parts; `policies`/`connections` with a channel other than `none` are
    /// refused like Ditto's builder ("The policies and connection groups require no channel.").
    public init(
        namespace: String, entityName: String, group: Group, channel: Channel, criterion: Criterion,
        action: Action? = nil, searchAction: SearchAction? = nil, streamingAction: StreamingAction? = nil,
        subject: String? = nil
    ) throws(DittoError) {
        if group != .things && channel != .none {
            throw DittoError.unknownTopicPath("The policies and connection groups require no channel.")
        }
        self.namespace = namespace
        self.entityName = entityName
        self.group = group
        self.channel = channel
        self.criterion = criterion
        self.action = action
        self.searchAction = searchAction
        self.streamingAction = streamingAction
        self.subject = subject
    }

    private init(unchecked namespace: String, _ entityName: String, _ channel: Channel, _ criterion: Criterion) {
        self.namespace = namespace
        self.entityName = entityName
        self.group = .things
        self.channel = channel
        self.criterion = criterion
    }

    // MARK: Parsing

    /// Parses a topic string; errors are `protocoladapter:unknown.topicpath` with Ditto's descriptions.
    public init(parsing topic: String) throws(DittoError) {
        var segments = Self.split(topic)[...]
        func next(_ missing: String) throws(DittoError) -> String {
            guard let segment = segments.popFirst() else {
                throw DittoError.unknownTopicPath("The topic path has no \(missing) part.", topic: topic)
            }
            return segment
        }
        let namespace = try next("namespace")
        let name = try next("entity name")
        let groupName = try next("group")
        guard let group = Group(rawValue: groupName) else {
            throw DittoError.unknownTopicPath("Group name <\(groupName)> is unknown.", topic: topic)
        }
        var channel = Channel.none
        if group == .things {
            let channelName = try next("channel")
            guard let parsed = Channel(rawValue: channelName) else {
                throw DittoError.unknownTopicPath("Channel name <\(channelName)> is unknown.", topic: topic)
            }
            channel = parsed
        }
        let criterionName = try next("criterion")
        guard let criterion = Criterion(rawValue: criterionName) else {
            throw DittoError.unknownTopicPath("Criterion name <\(criterionName)> is unknown.", topic: topic)
        }
        self.namespace = namespace
        self.entityName = name
        self.group = group
        self.channel = channel
        self.criterion = criterion
        switch criterion {
        case .commands, .events:
            let actionName = try next("action")
            guard let action = Action(rawValue: actionName) else {
                throw DittoError.unknownTopicPath("Action name <\(actionName)> is unknown.", topic: topic)
            }
            self.action = action
        case .search:
            let actionName = try next("search action")
            guard let action = SearchAction(rawValue: actionName) else {
                throw DittoError.unknownTopicPath("Search action name <\(actionName)> is unknown.", topic: topic)
            }
            self.searchAction = action
        case .streaming:
            // Ditto reuses the search-action lookup for the missing-part text.
            let actionName = try next("search action")
            guard let action = StreamingAction(rawValue: actionName) else {
                throw DittoError.unknownTopicPath("Streaming action name <\(actionName)> is unknown.", topic: topic)
            }
            self.streamingAction = action
        case .errors:
            break
        case .messages, .acks, .announcements:
            let joined = segments.joined(separator: "/")
            self.subject = joined.isEmpty ? nil : joined
        }
    }

    /// Ditto's `newTopicOrPathPointer` plus the parser's re-inserted empty first segment.
    static func split(_ topic: String) -> [String] {
        var result: [String] = []
        let utf8 = topic.utf8
        if utf8.isEmpty { return result }
        let startsWithSlash = utf8.first == UInt8(ascii: "/")
        if startsWithSlash { result.append("") }
        if utf8.count == 1 && startsWithSlash { return result }
        var segmentStart = startsWithSlash ? utf8.index(after: utf8.startIndex) : utf8.startIndex
        var cursor = segmentStart
        while cursor < utf8.endIndex {
            if utf8[cursor] == UInt8(ascii: "/") {
                if cursor == segmentStart { break }  // `//`: the rest becomes one segment
                result.append(String(topic[segmentStart..<cursor]))
                segmentStart = utf8.index(after: cursor)
            }
            cursor = utf8.index(after: cursor)
        }
        if segmentStart < utf8.endIndex {
            result.append(String(topic[segmentStart...]))
        }
        return result
    }

    // MARK: Serialization

    /// The topic string as Ditto serializes it (`ImmutableTopicPath.getPath`).
    public var description: String {
        var parts = [namespace, entityName, group.rawValue]
        if channel != .none { parts.append(channel.rawValue) }
        parts.append(criterion.rawValue)
        if let action { parts.append(action.rawValue) }
        if let searchAction { parts.append(searchAction.rawValue) }
        if let streamingAction { parts.append(streamingAction.rawValue) }
        if let subject { parts.append(subject) }
        return parts.joined(separator: "/")
    }

    // MARK: Derived

    /// The thing this topic addresses, if the group is `things` and namespace/name form a valid thing ID.
    public var thingID: ThingID? {
        guard group == .things else { return nil }
        return try? ThingID(namespace: namespace, name: entityName)
    }

    /// Ditto's `isWildcardTopic()`: the entity name is `_`.
    public var isWildcard: Bool { entityName == Self.placeholder }

    // MARK: Builders for what the bridge emits

    /// `<ns>/<name>/things/live/messages/<subject>`.
    public static func liveMessage(thingID: ThingID, subject: String) -> TopicPath {
        var topic = TopicPath(unchecked: thingID.namespace, thingID.name, .live, .messages)
        topic.subject = subject
        return topic
    }

    /// `<ns>/<name>/things/live/events/<action>`.
    public static func liveEvent(thingID: ThingID, action: Action) -> TopicPath {
        var topic = TopicPath(unchecked: thingID.namespace, thingID.name, .live, .events)
        topic.action = action
        return topic
    }

    /// `<ns>/<name>/things/live/commands/<action>`.
    public static func liveCommand(thingID: ThingID, action: Action) -> TopicPath {
        var topic = TopicPath(unchecked: thingID.namespace, thingID.name, .live, .commands)
        topic.action = action
        return topic
    }

    /// `<ns>/<name>/things/<channel>/errors`.
    public static func errors(thingID: ThingID, channel: Channel = .live) -> TopicPath {
        TopicPath(unchecked: thingID.namespace, thingID.name, channel == .none ? .twin : channel, .errors)
    }

    /// `<ns>/<name>/things/live/errors`.
    public static func liveErrors(thingID: ThingID) -> TopicPath {
        errors(thingID: thingID, channel: .live)
    }

    /// `<ns>/<name>/things/<channel>/acks/<label>` (or the aggregated `.../acks` when `label` is nil).
    public static func acknowledgement(thingID: ThingID, channel: Channel, label: String?) -> TopicPath {
        var topic = TopicPath(unchecked: thingID.namespace, thingID.name, channel == .none ? .twin : channel, .acks)
        topic.subject = label
        return topic
    }

    /// Ditto's fallback for errors that cannot be attributed to a thing: `unknown/unknown/things/twin/errors`.
    public static let fallbackErrors = TopicPath(unchecked: "unknown", "unknown", .twin, .errors)
}
