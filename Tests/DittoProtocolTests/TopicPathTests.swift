import Testing

@testable import DittoProtocol

@Suite struct TopicPathBasicTests {
    @Test func parsesLiveMessageWithSlashesInSubject() throws {
        let topic = try TopicPath(parsing: "org.eclipse.ditto/smartcoffee/things/live/messages/a/b/c")
        #expect(topic.namespace == "org.eclipse.ditto")
        #expect(topic.entityName == "smartcoffee")
        #expect(topic.group == .things)
        #expect(topic.channel == .live)
        #expect(topic.criterion == .messages)
        #expect(topic.subject == "a/b/c")
        #expect(topic.description == "org.eclipse.ditto/smartcoffee/things/live/messages/a/b/c")
        #expect(topic.thingID == (try ThingID("org.eclipse.ditto:smartcoffee")))
    }

    @Test func errorsCarryDittoCodeAndDescription() throws {
        let error = try #require(throws: DittoError.self) { try TopicPath(parsing: "ns/name/things/foo/commands/modify") }
        #expect(error.error == "protocoladapter:unknown.topicpath")
        #expect(error.status == 400)
        #expect(error.description == "Channel name <foo> is unknown.")
        #expect(error.message == "The topic path 'ns/name/things/foo/commands/modify' is not supported.")
    }

    @Test func builders() throws {
        let id = try ThingID("org.acme:device-1")
        #expect(TopicPath.liveMessage(thingID: id, subject: "ask/now").description == "org.acme/device-1/things/live/messages/ask/now")
        #expect(TopicPath.liveEvent(thingID: id, action: .modified).description == "org.acme/device-1/things/live/events/modified")
        #expect(TopicPath.liveCommand(thingID: id, action: .retrieve).description == "org.acme/device-1/things/live/commands/retrieve")
        #expect(TopicPath.liveErrors(thingID: id).description == "org.acme/device-1/things/live/errors")
        #expect(TopicPath.acknowledgement(thingID: id, channel: .live, label: "conn:delivered").description
            == "org.acme/device-1/things/live/acks/conn:delivered")
        #expect(TopicPath.acknowledgement(thingID: id, channel: .twin, label: nil).description == "org.acme/device-1/things/twin/acks")
        #expect(TopicPath.fallbackErrors.description == "unknown/unknown/things/twin/errors")
        #expect(throws: DittoError.self) {
            try TopicPath(namespace: "a", entityName: "b", group: .policies, channel: .twin, criterion: .commands, action: .modify)
        }
    }
}
