import Testing

@testable import DittoProtocol

/// Table-driven topic parsing: every rule of Ditto's `ImmutableTopicPath.TopicPathParser`.
@Suite struct TopicPathTableTests {
    struct Row: Sendable, CustomTestStringConvertible {
        let topic: String
        let expected: Expected
        var testDescription: String { topic.isEmpty ? "<empty>" : topic }
    }

    enum Expected: Sendable {
        /// namespace, name, group, channel, criterion, "rest" (action / search action / streaming action /
        /// subject, or nil), and the re-serialized topic.
        case parts(String, String, TopicPath.Group, TopicPath.Channel, TopicPath.Criterion, String?, String)
        /// `protocoladapter:unknown.topicpath` with this description.
        case error(String)
    }

    static func ok(
        _ topic: String, _ ns: String, _ name: String, _ group: TopicPath.Group, _ channel: TopicPath.Channel,
        _ criterion: TopicPath.Criterion, _ rest: String?, serialized: String? = nil
    ) -> Row {
        Row(topic: topic, expected: .parts(ns, name, group, channel, criterion, rest, serialized ?? topic))
    }

    static func bad(_ topic: String, _ description: String) -> Row {
        Row(topic: topic, expected: .error(description))
    }

    static let rows: [Row] = [
        // Groups, channels, command actions
        ok("org.eclipse.ditto/thing/things/twin/commands/create", "org.eclipse.ditto", "thing", .things, .twin, .commands, "create"),
        ok("ns/thing/things/twin/commands/retrieve", "ns", "thing", .things, .twin, .commands, "retrieve"),
        ok("ns/thing/things/live/commands/modify", "ns", "thing", .things, .live, .commands, "modify"),
        ok("ns/thing/things/live/commands/merge", "ns", "thing", .things, .live, .commands, "merge"),
        ok("ns/thing/things/live/commands/delete", "ns", "thing", .things, .live, .commands, "delete"),
        ok("ns/thing/things/twin/commands/migrate", "ns", "thing", .things, .twin, .commands, "migrate"),
        // The parser accepts any action for commands and events; adapters decide later.
        ok("ns/thing/things/twin/commands/created", "ns", "thing", .things, .twin, .commands, "created"),
        // Event actions
        ok("ns/thing/things/twin/events/created", "ns", "thing", .things, .twin, .events, "created"),
        ok("ns/thing/things/live/events/modified", "ns", "thing", .things, .live, .events, "modified"),
        ok("ns/thing/things/live/events/merged", "ns", "thing", .things, .live, .events, "merged"),
        ok("ns/thing/things/live/events/deleted", "ns", "thing", .things, .live, .events, "deleted"),
        ok("ns/thing/things/twin/events/migrated", "ns", "thing", .things, .twin, .events, "migrated"),
        // Extra segments after an action are ignored
        ok("ns/thing/things/live/commands/modify/extra/segments", "ns", "thing", .things, .live, .commands, "modify",
           serialized: "ns/thing/things/live/commands/modify"),
        ok("ns/thing/things/twin/events/modified/x", "ns", "thing", .things, .twin, .events, "modified",
           serialized: "ns/thing/things/twin/events/modified"),
        // Messages: subject = all remaining segments joined with "/"
        ok("org.eclipse.ditto/smartcoffee/things/live/messages/ask", "org.eclipse.ditto", "smartcoffee", .things, .live, .messages, "ask"),
        ok("ns/thing/things/live/messages/subject/with/multiple/slashes", "ns", "thing", .things, .live, .messages, "subject/with/multiple/slashes"),
        ok("ns/thing/things/live/messages/claim", "ns", "thing", .things, .live, .messages, "claim"),
        ok("ns/thing/things/live/messages", "ns", "thing", .things, .live, .messages, nil),
        ok("ns/thing/things/live/messages/", "ns", "thing", .things, .live, .messages, nil, serialized: "ns/thing/things/live/messages"),
        ok("ns/thing/things/live/messages/ask/", "ns", "thing", .things, .live, .messages, "ask", serialized: "ns/thing/things/live/messages/ask"),
        // The parser takes messages on twin too (no adapter does, see EnvelopeTests)
        ok("ns/thing/things/twin/messages/x", "ns", "thing", .things, .twin, .messages, "x"),
        // Acks: label or aggregated
        ok("ns/thing/things/twin/acks/custom-ack", "ns", "thing", .things, .twin, .acks, "custom-ack"),
        ok("ns/thing/things/live/acks/connection:delivered", "ns", "thing", .things, .live, .acks, "connection:delivered"),
        ok("ns/thing/things/live/acks", "ns", "thing", .things, .live, .acks, nil),
        // Errors: nothing consumed, the rest ignored
        ok("ns/thing/things/live/errors", "ns", "thing", .things, .live, .errors, nil),
        ok("ns/thing/things/twin/errors/ignored", "ns", "thing", .things, .twin, .errors, nil, serialized: "ns/thing/things/twin/errors"),
        ok("unknown/unknown/things/twin/errors", "unknown", "unknown", .things, .twin, .errors, nil),
        // Search actions
        ok("_/_/things/twin/search/subscribe", "_", "_", .things, .twin, .search, "subscribe"),
        ok("_/_/things/twin/search/request", "_", "_", .things, .twin, .search, "request"),
        ok("_/_/things/twin/search/cancel", "_", "_", .things, .twin, .search, "cancel"),
        ok("_/_/things/twin/search/created", "_", "_", .things, .twin, .search, "created"),
        ok("_/_/things/twin/search/next", "_", "_", .things, .twin, .search, "next"),
        ok("_/_/things/twin/search/complete", "_", "_", .things, .twin, .search, "complete"),
        ok("_/_/things/twin/search/failed", "_", "_", .things, .twin, .search, "failed"),
        ok("_/_/things/twin/search/error", "_", "_", .things, .twin, .search, "error"),
        // Streaming actions
        ok("ns/thing/things/twin/streaming/subscribeForPersistedEvents", "ns", "thing", .things, .twin, .streaming, "subscribeForPersistedEvents"),
        ok("ns/thing/things/twin/streaming/request", "ns", "thing", .things, .twin, .streaming, "request"),
        ok("ns/thing/things/twin/streaming/next", "ns", "thing", .things, .twin, .streaming, "next"),
        ok("ns/p/policies/streaming/cancel", "ns", "p", .policies, .none, .streaming, "cancel"),
        // Announcements
        ok("org.eclipse.ditto/the_policy_id/policies/announcements/subjectDeletion", "org.eclipse.ditto", "the_policy_id", .policies, .none, .announcements, "subjectDeletion"),
        ok("_/the_connection_id/connections/announcements/opened", "_", "the_connection_id", .connections, .none, .announcements, "opened"),
        ok("_/the_connection_id/connections/announcements/closed", "_", "the_connection_id", .connections, .none, .announcements, "closed"),
        // Policies: no channel segment
        ok("ns/p/policies/commands/create", "ns", "p", .policies, .none, .commands, "create"),
        ok("ns/p/policies/events/modified", "ns", "p", .policies, .none, .events, "modified"),
        ok("ns/p/policies/errors", "ns", "p", .policies, .none, .errors, nil),
        ok("_/_/policies/commands/checkPermissions", "_", "_", .policies, .none, .commands, "checkPermissions"),
        // Placeholder `_`
        ok("ns/_/things/twin/commands/retrieve", "ns", "_", .things, .twin, .commands, "retrieve"),
        // Leading "/" = empty namespace
        ok("/thing/things/live/commands/retrieve", "", "thing", .things, .live, .commands, "retrieve"),
        ok("/thing/things/live/messages/a/b", "", "thing", .things, .live, .messages, "a/b"),
        // Channel "none" is accepted for things by the parser and left out when serializing
        ok("ns/thing/things/none/commands/modify", "ns", "thing", .things, .none, .commands, "modify",
           serialized: "ns/thing/things/commands/modify"),
        // `//` stops splitting: the rest, starting with "/", is one segment
        ok("ns/thing/things/live/messages//x/y", "ns", "thing", .things, .live, .messages, "/x/y"),
        ok("ns/thing/things/live/messages/a//b/c", "ns", "thing", .things, .live, .messages, "a//b/c"),
        ok("ns/thing/things/live/acks//", "ns", "thing", .things, .live, .acks, "/"),
        // Unicode names pass the parser untouched
        ok("ns/名前/things/live/messages/ü", "ns", "名前", .things, .live, .messages, "ü"),

        // Missing parts
        bad("", "The topic path has no namespace part."),
        bad("/", "The topic path has no entity name part."),
        bad("ns", "The topic path has no entity name part."),
        bad("ns/", "The topic path has no entity name part."),
        bad("ns/thing", "The topic path has no group part."),
        bad("ns/thing/things", "The topic path has no channel part."),
        bad("ns/thing/things/live", "The topic path has no criterion part."),
        bad("ns/p/policies", "The topic path has no criterion part."),
        bad("ns/thing/things/live/commands", "The topic path has no action part."),
        bad("ns/thing/things/live/events/", "The topic path has no action part."),
        bad("_/_/things/twin/search", "The topic path has no search action part."),
        bad("ns/thing/things/twin/streaming", "The topic path has no search action part."),
        bad("ns//things/live/commands/modify", "The topic path has no group part."),
        bad("//thing/things/live/commands/modify", "The topic path has no group part."),
        // Unknown names (exact, case-sensitive)
        bad("ns/thing/thingz/live/commands/modify", "Group name <thingz> is unknown."),
        bad("ns/thing/Things/live/commands/modify", "Group name <Things> is unknown."),
        bad("ns/thing/things/Live/commands/modify", "Channel name <Live> is unknown."),
        bad("ns/thing/things/mqtt/commands/modify", "Channel name <mqtt> is unknown."),
        bad("_/_/things/search/errors", "Channel name <search> is unknown."),
        bad("ns/thing/things/live/command/modify", "Criterion name <command> is unknown."),
        bad("ns/p/policies/twin/commands/modify", "Criterion name <twin> is unknown."),
        bad("ns/c/connections/none/announcements/opened", "Criterion name <none> is unknown."),
        bad("ns/thing/things/live/commands/update", "Action name <update> is unknown."),
        bad("ns/thing/things/live/events/Modified", "Action name <Modified> is unknown."),
        bad("_/_/things/twin/search/find", "Search action name <find> is unknown."),
        bad("ns/thing/things/twin/streaming/subscribe", "Streaming action name <subscribe> is unknown."),
        bad("<the topic>", "The topic path has no entity name part."),
    ]

    @Test func tableIsLargeEnough() {
        #expect(Self.rows.count >= 60)
        #expect(Self.rows.filter { if case .error = $0.expected { true } else { false } }.count >= 20)
    }

    @Test(arguments: rows)
    func parse(_ row: Row) throws {
        switch row.expected {
        case .parts(let ns, let name, let group, let channel, let criterion, let rest, let serialized):
            let topic = try TopicPath(parsing: row.topic)
            #expect(topic.namespace == ns)
            #expect(topic.entityName == name)
            #expect(topic.group == group)
            #expect(topic.channel == channel)
            #expect(topic.criterion == criterion)
            let actual = topic.action?.rawValue ?? topic.searchAction?.rawValue ?? topic.streamingAction?.rawValue
                ?? topic.subject
            #expect(actual == rest)
            #expect(topic.description == serialized)
            // What Ditto serializes parses back to the same topic, except that `things` with channel `none`
            // serializes without a channel segment, which Ditto's own parser then refuses.
            if group == .things && channel == .none {
                #expect(throws: DittoError.self) { try TopicPath(parsing: topic.description) }
            } else {
                #expect(try TopicPath(parsing: topic.description) == topic)
            }
        case .error(let description):
            let error = try #require(throws: DittoError.self) { try TopicPath(parsing: row.topic) }
            #expect(error.error == "protocoladapter:unknown.topicpath")
            #expect(error.status == 400)
            #expect(error.description == description)
            #expect(error.message == "The topic path '\(row.topic)' is not supported.")
        }
    }
}
