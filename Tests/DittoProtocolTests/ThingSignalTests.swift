import Testing

@testable import DittoProtocol

/// The typed signal an envelope carries, derived once after validation.
@Suite struct ThingSignalTests {
    func signal(_ json: String) throws -> ThingSignal? {
        try Envelope.decode(Array(json.utf8)).thingSignal
    }

    @Test func eachKindOfThingSignal() throws {
        let message = try signal(#"{"topic":"ns/n/things/live/messages/a/b","path":"/features/f/outbox/messages/a/b"}"#)
        #expect(message == .message(MessagePath(featureID: "f", direction: .outbox, subject: "a/b"), status: nil))
        #expect(message?.isAnswer == false)
        let response = try signal(#"{"topic":"ns/n/things/live/messages/a","path":"/inbox/messages/a","status":200}"#)
        #expect(response?.isAnswer == true)
        #expect(try signal(#"{"topic":"ns/n/things/live/commands/modify","path":"/attributes/a","value":1}"#)
            == .command(.modify, path: "/attributes/a", status: nil))
        #expect(try signal(#"{"topic":"ns/n/things/twin/events/modified","path":"/attributes/a","value":1,"revision":2}"#)
            == .event(.modified, path: "/attributes/a"))
        #expect(try signal(#"{"topic":"ns/n/things/live/acks/c:x","path":"/","status":200}"#)
            == .acknowledgement(label: "c:x", status: 200))
        let error = try signal(#"{"topic":"ns/n/things/live/errors","path":"/","status":404,"value":{"status":404,"error":"things:thing.notfound","message":"m"}}"#)
        guard case .error(let dittoError)? = error else {
            Issue.record("not an error: \(String(describing: error))")
            return
        }
        #expect(dittoError.error == "things:thing.notfound")
        #expect(try signal(#"{"topic":"_/_/things/twin/search/subscribe","path":"/"}"#) == nil)
    }

    /// Every documentation example Ditto accepts for the things group (but search and streaming) has a signal.
    @Test func everyAcceptedThingsExampleHasASignal() throws {
        var count = 0
        for example in Corpus.examples {
            guard let envelope = try? Envelope.decode(example.bytes), envelope.topic.group == .things,
                ![.search, .streaming].contains(envelope.topic.criterion)
            else { continue }
            #expect(envelope.thingSignal != nil, "\(example.name)")
            count += 1
        }
        #expect(count > 200)
    }
}
