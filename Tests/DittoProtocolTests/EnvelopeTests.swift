import Testing

@testable import DittoProtocol

@Suite struct EnvelopeTests {
    static let liveEvent = #"""
        {"topic":"org.acme/sensor-1/things/live/events/modified","headers":{"correlation-id":"c-1","content-type":"application/json","x-source":"mqtt"},"path":"/features/temperature/properties/value","value":21.5,"revision":42,"timestamp":"2026-11-23T12:00:00Z"}
        """#

    @Test func decodesAndEncodesInDittoFieldOrder() throws {
        let envelope = try Envelope.decode(Array(Self.liveEvent.utf8))
        #expect(envelope.topic.action == .modified)
        #expect(envelope.headers.correlationID == "c-1")
        #expect(envelope.path == "/features/temperature/properties/value")
        #expect(envelope.value?.numberValue?.literal == "21.5")
        #expect(envelope.revision == 42)
        #expect(envelope.timestamp == "2026-11-23T12:00:00Z")
        #expect(!envelope.isResponse)
        #expect(String(decoding: envelope.encoded(), as: UTF8.self) == Self.liveEvent)
        #expect(try Envelope.decode(envelope.encoded()) == envelope)
        #expect(envelope.json == (try JSON.parse(Self.liveEvent)))
    }

    @Test func fieldOrderOfAllFields() throws {
        let text = #"{"fields":"a","metadata":{},"timestamp":"2020-01-01T00:00:00Z","revision":1,"status":200,"extra":{"x":1},"value":{},"path":"/","headers":{"correlation-id":"c"},"topic":"ns/n/things/twin/commands/retrieve"}"#
        let envelope = try Envelope.decode(Array(text.utf8))
        #expect(String(decoding: envelope.encoded(), as: UTF8.self)
            == #"{"topic":"ns/n/things/twin/commands/retrieve","headers":{"correlation-id":"c"},"path":"/","value":{},"extra":{"x":1},"status":200,"revision":1,"timestamp":"2020-01-01T00:00:00Z","metadata":{},"fields":"a"}"#)
    }

    @Test func statusDecidesResponse() throws {
        let command = try Envelope.decode(Array(#"{"topic":"ns/n/things/live/commands/retrieve","path":"/"}"#.utf8))
        #expect(!command.isResponse)
        let response = try Envelope.decode(Array(#"{"topic":"ns/n/things/live/commands/retrieve","path":"/","value":{},"status":200}"#.utf8))
        #expect(response.isResponse)
        // An unknown HTTP status is dropped (`HttpStatus.tryGetInstance`): the message is a command.
        let odd = try Envelope.decode(Array(#"{"topic":"ns/n/things/live/commands/retrieve","path":"/","status":42}"#.utf8))
        #expect(!odd.isResponse)
        let error = try #require(throws: DittoError.self) {
            try Envelope.decode(Array(#"{"topic":"ns/n/things/live/commands/retrieve","path":"/","status":"200"}"#.utf8))
        }
        #expect(error.error == "json.invalid")
    }

    @Test(arguments: [
        (#"not json"#, "json.invalid"),
        (#"[]"#, "json.invalid"),
        (#"{"path":"/"}"#, "json.field.missing"),
        (#"{"topic":"ns/n/things/live/commands/retrieve"}"#, "json.field.missing"),
        (#"{"topic":"ns/n/things/live/events/modified","path":"/attributes/a","value":1}"#, "json.field.missing"),
        (#"{"topic":"ns/n/things/live/messages/ask","path":"/inbox/messages/other"}"#, "protocoladapter:invalid.path"),
        (#"{"topic":"ns/n/things/live/messages","path":"/inbox/messages/x"}"#, "protocoladapter:unknown.topicpath"),
        (#"{"topic":"ns/n/things/twin/messages/x","path":"/inbox/messages/x"}"#, "protocoladapter:unknown.topicpath"),
        (#"{"topic":"ns/n/things/live/commands/modify","path":"/nothing"}"#, "protocoladapter:unknown.path"),
        (#"{"topic":"ns/n/things/live/commands/modify","path":"/attributes/a"}"#, "json.invalid"),
        (#"{"topic":"ns/über/things/live/commands/retrieve","path":"/"}"#, "things:id.invalid"),
        (#"{"topic":"ns/n/things/live/acks/live-response","path":"/","status":200}"#, "acknowledgement:ditto.acklabel.forbidden"),
        (#"{"topic":"ns/n/things/live/acks/x","path":"/","status":200}"#, "acknowledgement:label.invalid"),
        (#"{"topic":"ns/n/things/live/acks/my-ack","path":"/"}"#, "protocoladapter:unknown.topicpath"),
        (#"{"topic":"ns/n/things/live/errors","path":"/","status":400,"value":{"status":400}}"#, "json.field.missing"),
        (#"{"topic":"ns/n/things/live/commands/retrieve","path":"/","headers":{"response-required":"no"}}"#, "header.invalid"),
        (#"{"topic":"ns/n/things/live/commands/retrieve","path":"/","headers":{"requested-acks":"a-ack,b-ack"}}"#, "header.invalid"),
        (#"{"topic":"ns/n/things/live/commands/retrieve","path":"/","timestamp":"yesterday"}"#, "json.invalid"),
        (#"{"topic":"ns/n/things/live/commands/retrieve","path":"/","headers":[]}"#, "json.invalid"),
        // Topics the parser takes but no adapter does (DefaultAdapterResolver)
        (#"{"topic":"ns/n/things/none/commands/retrieve","path":"/"}"#, "protocoladapter:unknown.topicpath"),
        (#"{"topic":"_/_/things/live/search/subscribe","path":"/"}"#, "protocoladapter:unknown.topicpath"),
        (#"{"topic":"ns/n/things/live/announcements/x","path":"/"}"#, "protocoladapter:unknown.topicpath"),
        (#"{"topic":"ns/n/things/live/commands/created","path":"/"}"#, "protocoladapter:unknown.topicpath"),
        (#"{"topic":"ns/n/things/live/events/modify","path":"/","revision":1}"#, "protocoladapter:unknown.topicpath"),
        (#"{"topic":"ns/p/policies/messages/x","path":"/"}"#, "protocoladapter:unknown.topicpath"),
        (#"{"topic":"ns/p/policies/commands/merge","path":"/","value":{}}"#, "protocoladapter:unknown.topicpath"),
        (#"{"topic":"_/c/connections/commands/modify","path":"/"}"#, "protocoladapter:unknown.topicpath"),
        (#"{"topic":"_/c/connections/announcements/deleted","path":"/"}"#, "protocoladapter:unknown.topicpath"),
        (#"{"topic":"ns/p/policies/commands/modify","path":"/import/x","value":{}}"#, "protocoladapter:unknown.path"),
        (#"{"topic":"ns/n/things/live/commands/merge","path":"/","value":{},"headers":{"content-type":"application/json"}}"#, "mediatype.unsupported"),
        (#"{"topic":"ns/n/things/live/commands/modify","path":"/","value":{"thingId":"ns:other"}}"#, "things:id.notsettable"),
        (#"{"topic":"ns/n/things/live/commands/modify","path":"/","value":[]}"#, "json.format.invalid"),
        (#"{"topic":"ns/n/things/live/messages/a\u0001b","path":"/inbox/messages/a\u0001b"}"#, "header.invalid"),
    ])
    func rejections(_ text: String, _ code: String) throws {
        let error = try #require(throws: DittoError.self) { try Envelope.decode(Array(text.utf8)) }
        #expect(error.error == code)
    }

    @Test func unknownFieldsAreIgnored() throws {
        let envelope = try Envelope.decode(Array(#"{"topic":"ns/n/things/live/commands/retrieve","path":"/","bogus":1}"#.utf8))
        #expect(String(decoding: envelope.encoded(), as: UTF8.self) == #"{"topic":"ns/n/things/live/commands/retrieve","path":"/"}"#)
    }
}

/// Ditto compares strings by code units; Swift's `String ==` uses canonical equivalence. These inputs
/// differ only in Unicode normalization and must be told apart the way Ditto does.
@Suite struct CodeUnitExactnessTests {
    @Test func messagePathMustRepeatTheSubjectByteForByte() throws {
        let decomposedSubject = "cafe\u{301}"  // e + combining acute
        let precomposedPath = "/inbox/messages/caf\u{E9}"
        #expect(decomposedSubject == "caf\u{E9}")  // Swift: canonically equal
        let text = #"{"topic":"ns/n/things/live/messages/\#(decomposedSubject)","path":"\#(precomposedPath)"}"#
        let error = try #require(throws: DittoError.self) { try Envelope.decode(text) }
        #expect(error.error == "protocoladapter:invalid.path")
        let same = #"{"topic":"ns/n/things/live/messages/\#(decomposedSubject)","path":"/inbox/messages/\#(decomposedSubject)"}"#
        _ = try Envelope.decode(same)
    }

    @Test func topicsAndHeadersCompareBytes() throws {
        let a = try TopicPath(parsing: "ns/n/things/live/messages/caf\u{E9}")
        let b = try TopicPath(parsing: "ns/n/things/live/messages/cafe\u{301}")
        #expect(a != b)
        #expect(DittoHeaders([("x", "caf\u{E9}")]) != DittoHeaders([("x", "cafe\u{301}")]))
    }

    @Test func combiningMarksDoNotGlueOntoSeparators() throws {
        // A combining mark right after "/" or "~" forms one Swift Character with it; splitting and escaping
        // must still see the separator.
        let pointer = try JSONPointer("/a/\u{301}b~\u{301}")
        #expect(pointer.segments == ["a", "\u{301}b~\u{301}"])
        #expect(pointer.description == "/a/\u{301}b~0\u{301}")
        #expect(try JSONPointer(pointer.description).segments == pointer.segments)
        var headers = DittoHeaders()
        headers["requested-acks"] = "first-ack,\u{301}x"
        #expect(headers.requestedAcks == ["first-ack", "\u{301}x"])
        #expect(ContentTypeStrategy(contentType: "application/\u{301}x+json") == .json)
        #expect(DittoHeaders.isDittoInternal("ditto-\u{301}x"))
    }
}

/// Thing resource paths (`ThingResource`) and which events exist for them.
@Suite struct ThingResourceTests {
    static let validPaths = [
        "/", "", "/policyId", "/definition", "/_policy", "/_policy/entries", "/_policy/entries/l",
        "/_policy/entries/l/subjects", "/_policy/entries/l/subjects/google:x", "/_policy/entries/l/resources",
        "/_policy/entries/l/resources/thing:/a/b", "/attributes", "/attributes/a", "/attributes/a/b/c",
        "/features", "/features/f", "/features/f/definition", "/features/f/properties", "/features/f/properties/a/b",
        "/features/f/desiredProperties", "/features/f/desiredProperties/x", "/attributes/", "attributes/a",
    ]
    static let invalidPaths = [
        "/policyId/x", "/definition/x", "/features/f/foo", "/features/f/definition/x", "/_policy/foo",
        "/_policy/entries/l/foo", "/foo", "/thingId", "/Attributes",
    ]

    func command(_ path: String, action: String = "retrieve") throws(DittoError) -> Envelope {
        try Envelope.decode(#"{"topic":"ns/n/things/live/commands/\#(action)","path":"\#(path)","value":{}}"#)
    }

    @Test(arguments: validPaths)
    func validPath(_ path: String) throws {
        _ = try command(path)
        // A thing's policy id is replaced, never deleted: Ditto has no `deletePolicyId`.
        guard path != "/policyId" else {
            let error = try #require(throws: DittoError.self) { try command(path, action: "delete") }
            #expect(error.error == "protocoladapter:unknown.topicpath")
            return
        }
        _ = try command(path, action: "delete")
    }

    @Test(arguments: invalidPaths)
    func invalidPath(_ path: String) throws {
        let error = try #require(throws: DittoError.self) { try command(path) }
        #expect(error.error == "protocoladapter:unknown.path")
    }

    @Test func createOnlyForTheWholeThing() throws {
        _ = try command("/", action: "create")
        let error = try #require(throws: DittoError.self) { try command("/attributes/a", action: "create") }
        #expect(error.error == "protocoladapter:unknown.command")
    }

    @Test(arguments: [
        ("/", "created", true), ("/", "migrated", true), ("/attributes", "migrated", false),
        ("/policyId", "modified", true), ("/policyId", "created", false), ("/policyId", "deleted", false),
        ("/_policy", "modified", false), ("/features/f/properties/x", "merged", true), ("/_policy/entries", "merged", true),
        ("/definition", "created", true), ("/features/f/desiredProperties/x", "deleted", true),
    ] as [(String, String, Bool)])
    func eventExists(_ path: String, _ action: String, _ exists: Bool) throws {
        // A value of the resource's kind, so that only the event's existence decides.
        let value = switch path {
        case "/": #"{"thingId":"ns:n"}"#
        case "/attributes": "{}"
        case "/policyId": #""ns:p""#
        case "/definition": #""ns:d:1""#
        default: "1"
        }
        let text = #"{"topic":"ns/n/things/live/events/\#(action)","path":"\#(path)","value":\#(value),"revision":3}"#
        if exists {
            _ = try Envelope.decode(text)
        } else {
            let error = try #require(throws: DittoError.self) { try Envelope.decode(text) }
            #expect(error.error == "protocoladapter:unknown.topicpath")
        }
    }

    @Test func errorValueFallbacks() throws {
        let error = try DittoError(errorValue: ["error": "x:y"])
        #expect(error.status == 500)
        #expect(error.message == "An unknown error occurred")
        #expect(throws: DittoError.self) { try DittoError(errorValue: ["status": 400]) }
        #expect(throws: DittoError.self) { try DittoError(errorValue: "text") }
        let full = DittoError(status: 404, error: "things:thing.notfound", message: "m", description: "d", href: "h")
        #expect(try DittoError(errorValue: full.errorValue) == full)
    }
}

/// `Envelope.EventRules` splits `validate()` for events into a once-per-topic-and-path part and a per-event part;
/// together they must throw exactly what `validate()` throws, for every path, action, value kind and revision.
@Suite struct EventRulesTests {
    static let paths = ["", "/", "/attributes", "/attributes/location", "/attributes/a/b", "/features", "/features/lamp",
                        "/features/lamp/properties", "/features/lamp/properties/on", "/features/lamp/definition",
                        "/features/lamp/desiredProperties", "/features/lamp/desiredProperties/x", "/policyId",
                        "/definition", "/thingId", "/_policy", "/unknown", "//attributes", "/features//x",
                        "/features/lamp/other", "/attributes/~1x"]
    static let values: [JSONValue?] = [nil, .null, true, 1.5, "text", ["a", 1], ["key": "value"]]

    @Test(arguments: [TopicPath.Action.created, .modified, .merged, .deleted, .retrieve])
    func togetherTheyThrowWhatValidateThrows(action: TopicPath.Action) throws {
        let thing = try ThingID("org.example:lamp-1")
        for path in Self.paths {
            for value in Self.values {
                for revision: Int64? in [7, nil] {
                    var event = Envelope.liveEvent(thingID: thing, action: action, path: path, value: value, revision: 0)
                    event.revision = revision
                    let whole = Result { () throws(DittoError) in try event.validate() }
                    let split = Result { () throws(DittoError) in try Envelope.EventRules(validating: event).validate(event) }
                    switch (whole, split) {
                    case (.success, .success):
                        break
                    case (.failure(let a), .failure(let b)):
                        #expect(a.status == b.status && a.error == b.error && a.message == b.message,
                                "\(action) \(path) \(String(describing: value)) \(String(describing: revision))")
                    default:
                        Issue.record("\(action) \(path) \(String(describing: value)) \(String(describing: revision)): validate \(whole), split \(split)")
                    }
                }
            }
        }
    }
}

/// The shortcuts the message path check takes must give the answers of the long way round.
@Suite struct PathShortcutTests {
    /// Every path of up to seven characters from `/`, `a`, `b`, `~`: a path the shortcut takes as normalized is
    /// one that `normalize` (Ditto's printing) gives back unchanged.
    @Test func normalizedPathAgreesWithNormalize() {
        var paths = [""]
        var frontier = [""]
        for _ in 0..<7 {
            frontier = frontier.flatMap { path in ["/", "a", "b", "~"].map { path + $0 } }
            paths += frontier
        }
        var shortcuts = 0
        for path in paths where Envelope.isNormalized(path) {
            #expect(Envelope.normalize(path) == path, "\(path)")
            shortcuts += 1
        }
        // The shortcut may leave some paths to the long way ("/", "/a//b"), but takes the usual form.
        #expect(Envelope.isNormalized("/inbox/messages/ping") && Envelope.isNormalized("/features/f-1/outbox/messages/x.y"))
        #expect(paths.count == 21_845 && shortcuts > 300, "\(paths.count) \(shortcuts)")
    }

    @Test func concatenationComparisonsNeedNoConcatenation() {
        let heads = ["", "/inbox/messages/", "/outbox/messages/", "x"]
        let tails = ["", "ping", "é", "messages/ping", "/ping"]
        let texts = ["", "/inbox/messages/ping", "/features/f/inbox/messages/ping", "/outbox/messages/é", "x", "ping",
                     "/inbox/messages//ping", "/features/f/outbox/messages/é", "/inbox/messages/pin"]
        for head in heads {
            for tail in tails {
                for text in texts {
                    #expect(text.utf8Equals(head, tail) == text.utf8Equals(head + tail), "\(text) = \(head) + \(tail)")
                    #expect(text.utf8HasSuffix(head, tail) == text.utf8HasSuffix(head + tail), "\(text) ends \(head) + \(tail)")
                }
            }
        }
    }
}
