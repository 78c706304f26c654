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

    /// Namespace (may be empty, or `_`).
    public var namespace: String
    /// Entity name (thing, policy or connection name; `_` for wildcard topics).
    public var entityName: String
    /// `things`, `policies` or `connections`.
    public var group: Group
    /// `twin` or `live` for things; `none` otherwise.
    public var channel: Channel
    /// What kind of signal.
    public var criterion: Criterion
    /// The action of commands and events.
    public var action: Action?
    /// The action of search signals.
    public var searchAction: SearchAction?
    /// The action of history-streaming signals.
    public var streamingAction: StreamingAction?
    /// Message subject, acknowledgement label or announcement name.
    public var subject: String?

    /// Equal when every part is equal, strings compared byte for byte.
    public static func == (lhs: TopicPath, rhs: TopicPath) -> Bool {
        lhs.group == rhs.group && lhs.channel == rhs.channel && lhs.criterion == rhs.criterion
            && lhs.action == rhs.action && lhs.searchAction == rhs.searchAction
            && lhs.streamingAction == rhs.streamingAction && lhs.namespace.utf8Equals(rhs.namespace)
            && lhs.entityName.utf8Equals(rhs.entityName) && optionalEquals(lhs.subject, rhs.subject)
    }

    private static func optionalEquals(_ a: String?, _ b: String?) -> Bool {
        switch (a, b) {
        case (nil, nil): return true
        case (let a?, let b?): return a.utf8Equals(b)
        default: return false
        }
    }

    public func hash(into hasher: inout Hasher) {
        namespace.hashUTF8(into: &hasher)
        entityName.hashUTF8(into: &hasher)
        hasher.combine(group)
        hasher.combine(channel)
        hasher.combine(criterion)
        hasher.combine(action)
        subject?.hashUTF8(into: &hasher)
    }

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
        var utf8 = topic
        self = try utf8.withUTF8 { TopicPath.parse(topic, $0) }.get()
    }

    private static func parse(_ topic: String, _ b: UnsafeBufferPointer<UInt8>) -> Result<TopicPath, DittoError> {
        var cursor = SegmentCursor(b, insertEmptyFirst: true)
        func missing(_ part: String) -> Result<TopicPath, DittoError> {
            .failure(DittoError.unknownTopicPath("The topic path has no \(part) part.", topic: topic))
        }
        func unknown(_ kind: String, _ segment: Range<Int>) -> Result<TopicPath, DittoError> {
            let name = String(decoding: UnsafeBufferPointer(rebasing: b[segment]), as: UTF8.self)
            return .failure(DittoError.unknownTopicPath("\(kind) name <\(name)> is unknown.", topic: topic))
        }
        func string(_ r: Range<Int>) -> String { String(decoding: UnsafeBufferPointer(rebasing: b[r]), as: UTF8.self) }

        guard let namespaceRange = cursor.next() else { return missing("namespace") }
        guard let nameRange = cursor.next() else { return missing("entity name") }
        guard let groupRange = cursor.next() else { return missing("group") }
        guard let group = match(b, groupRange, Group.self) else { return unknown("Group", groupRange) }
        var channel = Channel.none
        if group == .things {
            guard let channelRange = cursor.next() else { return missing("channel") }
            guard let parsed = match(b, channelRange, Channel.self) else { return unknown("Channel", channelRange) }
            channel = parsed
        }
        guard let criterionRange = cursor.next() else { return missing("criterion") }
        guard let criterion = match(b, criterionRange, Criterion.self) else {
            return unknown("Criterion", criterionRange)
        }
        var topicPath = TopicPath(unchecked: string(namespaceRange), string(nameRange), channel, criterion)
        topicPath.group = group
        switch criterion {
        case .commands, .events:
            guard let actionRange = cursor.next() else { return missing("action") }
            guard let action = match(b, actionRange, Action.self) else { return unknown("Action", actionRange) }
            topicPath.action = action
        case .search:
            guard let actionRange = cursor.next() else { return missing("search action") }
            guard let action = match(b, actionRange, SearchAction.self) else {
                return unknown("Search action", actionRange)
            }
            topicPath.searchAction = action
        case .streaming:
            // Ditto reuses the search-action lookup for the missing-part text.
            guard let actionRange = cursor.next() else { return missing("search action") }
            guard let action = match(b, actionRange, StreamingAction.self) else {
                return unknown("Streaming action", actionRange)
            }
            topicPath.streamingAction = action
        case .errors:
            break
        case .messages, .acks, .announcements:
            // String.join("/", remaining segments): segments are separated by single slashes in the input,
            // so the joined text is the input from the first remaining segment to the end of the last one.
            if let first = cursor.next() {
                var end = first.upperBound
                while let next = cursor.next() { end = next.upperBound }
                topicPath.subject = string(first.lowerBound..<end)
            }
        }
        return .success(topicPath)
    }

    private static func match<E: TopicPathName>(_ b: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, _ type: E.Type)
        -> E?
    {
        let count = range.count
        for (name, value) in E.names where name.count == count {
            var equal = true
            for k in 0..<count where name[k] != b[range.lowerBound + k] {
                equal = false
                break
            }
            if equal { return value }
        }
        return nil
    }

    /// Ditto's `newTopicOrPathPointer` (plus, for topics, the parser's re-inserted empty first segment):
    /// `""`/`"/"` have no segments, a leading `/` is skipped, a trailing `/` ignored, and at the first `//`
    /// the rest of the input (starting with `/`) becomes one segment.
    struct SegmentCursor {
        let b: UnsafeBufferPointer<UInt8>
        var position: Int
        var emitEmptyFirst: Bool
        var done = false

        init(_ b: UnsafeBufferPointer<UInt8>, insertEmptyFirst: Bool) {
            self.b = b
            let leadingSlash = !b.isEmpty && b[0] == UInt8(ascii: "/")
            position = leadingSlash ? 1 : 0
            emitEmptyFirst = insertEmptyFirst && leadingSlash
        }

        mutating func next() -> Range<Int>? {
            if emitEmptyFirst {
                emitEmptyFirst = false
                return 0..<0
            }
            guard !done, position < b.count else { return nil }
            var i = position
            while i < b.count && b[i] != UInt8(ascii: "/") { i += 1 }
            if i == b.count || i == position {
                // Last segment, or a `//`: the rest is one segment.
                done = true
                return position..<b.count
            }
            defer { position = i + 1 }
            return position..<i
        }
    }

    /// The segments of `topic` as the parser sees them.
    static func split(_ topic: String) -> [String] {
        segments(of: topic, insertEmptyFirst: true)
    }

    static func segments(of text: String, insertEmptyFirst: Bool) -> [String] {
        var copy = text
        return copy.withUTF8 { b in
            var cursor = SegmentCursor(b, insertEmptyFirst: insertEmptyFirst)
            var result: [String] = []
            while let r = cursor.next() {
                result.append(String(decoding: UnsafeBufferPointer(rebasing: b[r]), as: UTF8.self))
            }
            return result
        }
    }

    // MARK: Serialization

    /// Writes the topic as a JSON string literal without building the `String` first.
    func writeJSON(into w: inout JSONWriter) {
        w.bytes.append(UInt8(ascii: "\""))
        w.writeStringContents(namespace)
        w.bytes.append(UInt8(ascii: "/"))
        w.writeStringContents(entityName)
        w.bytes.append(UInt8(ascii: "/"))
        w.bytes.append(contentsOf: group.rawValue.utf8)
        if channel != .none {
            w.bytes.append(UInt8(ascii: "/"))
            w.bytes.append(contentsOf: channel.rawValue.utf8)
        }
        w.bytes.append(UInt8(ascii: "/"))
        w.bytes.append(contentsOf: criterion.rawValue.utf8)
        if let action {
            w.bytes.append(UInt8(ascii: "/"))
            w.bytes.append(contentsOf: action.rawValue.utf8)
        }
        if let searchAction {
            w.bytes.append(UInt8(ascii: "/"))
            w.bytes.append(contentsOf: searchAction.rawValue.utf8)
        }
        if let streamingAction {
            w.bytes.append(UInt8(ascii: "/"))
            w.bytes.append(contentsOf: streamingAction.rawValue.utf8)
        }
        if let subject {
            w.bytes.append(UInt8(ascii: "/"))
            w.writeStringContents(subject)
        }
        w.bytes.append(UInt8(ascii: "\""))
    }

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

    /// `<ns>/<name>/things/twin/commands/<action>`.
    public static func twinCommand(thingID: ThingID, action: Action) -> TopicPath {
        var topic = TopicPath(unchecked: thingID.namespace, thingID.name, .twin, .commands)
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

/// The enums of topic segments, with their names as bytes for matching without building strings.
protocol TopicPathName: RawRepresentable, CaseIterable where RawValue == String {
    static var names: [(bytes: [UInt8], value: Self)] { get }
}

extension TopicPathName {
    static func makeNames() -> [(bytes: [UInt8], value: Self)] { allCases.map { (Array($0.rawValue.utf8), $0) } }
}

extension TopicPath.Group: TopicPathName {
    static let names = makeNames()
}

extension TopicPath.Channel: TopicPathName {
    static let names = makeNames()
}

extension TopicPath.Criterion: TopicPathName {
    static let names = makeNames()
}

extension TopicPath.Action: TopicPathName {
    static let names = makeNames()
}

extension TopicPath.SearchAction: TopicPathName {
    static let names = makeNames()
}

extension TopicPath.StreamingAction: TopicPathName {
    static let names = makeNames()
}
