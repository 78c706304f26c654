import Testing

@testable import DittoProtocol

/// `Envelope.EventTemplate`: `encoded()` cut at the sentinels, refused where a sentinel is missing or repeated.
@Suite struct EventTemplateTests {
    typealias Template = Envelope.EventTemplate

    static func probe(headers: [(String, String)] = [], timestamp: String? = Template.timestampSentinel) throws -> Envelope {
        var dittoHeaders = DittoHeaders()
        dittoHeaders["correlation-id"] = Template.correlationIDSentinel
        for (name, value) in headers { dittoHeaders[name] = value }
        return Envelope.liveEvent(
            thingID: Template.thingSentinel, action: .modified, path: "/features/f/properties/value",
            value: Template.valueSentinel, revision: Template.revisionSentinel, timestamp: timestamp, headers: dittoHeaders)
    }

    @Test func encodesWhatTheEnvelopeEncodes() throws {
        let probe = try Self.probe(headers: [("x-a", "1"), ("dry-run", "false"), ("requested-acks", #"["twin-persisted"]"#),
                                             ("content-type", "application/json")])
        let template = try #require(Template(probe: probe))
        let values: [(JSONValue, String)] = [
            (["a": [1, "x", nil, true]], #"{"a":[1,"x",null,true]}"#), (.string("\"\\\u{1}é"), ""), (-0.5, ""),
        ]
        // Names that JSON escapes, and an empty namespace, as devices' topics may make them.
        let things = [try ThingID("org.example:lamp-1"), try ThingID(#":q"\名:x"#), try ThingID("a.b-c:🙂 \"")]
        for (revision, (value, text)) in zip([Int64.min, 0, Int64.max], values) {
            for (id, thing) in zip(["c-1", #"q"\"#, "ü名\n"], things) {
                var envelope = probe
                envelope.topic = .liveEvent(thingID: thing, action: .modified)
                envelope.headers.correlationID = id
                envelope.revision = revision
                envelope.timestamp = "t\"\(revision)"
                envelope.setValue(value, compactText: text.isEmpty ? nil : ArraySlice(text.utf8))
                let compact: ArraySlice<UInt8>? = text.isEmpty ? nil : ArraySlice(text.utf8)
                #expect(template.encode(thingID: thing, correlationID: id, value: value, compactText: compact,
                                        revision: revision, timestamp: "t\"\(revision)") == envelope.encoded())
            }
        }
        #expect(template.contentType == "application/json")
        #expect(template.replyTo == nil)
    }

    @Test func aMissingOrRepeatedSentinelGivesNoTemplate() throws {
        #expect(Template(probe: try Self.probe(timestamp: nil)) == nil)
        #expect(Template(probe: try Self.probe(headers: [("x-copy", Template.correlationIDSentinel)])) == nil)
        #expect(Template(probe: try Self.probe(headers: [("x-ts", Template.timestampSentinel)])) == nil)
        var other = try Self.probe()
        other.value = .string("not the sentinel")
        #expect(Template(probe: other) == nil)
        other = try Self.probe()
        other.revision = 1
        #expect(Template(probe: other) == nil)
        #expect(Template(probe: try Self.probe(headers: [("x-thing", Template.thingSentinel.description)])) == nil)
        #expect(Template(probe: try Self.probe()) != nil)
    }

    @Test func acceptedCorrelationIDs() {
        #expect(Template.correlationIDSentinel.utf8.count == Template.maximumCorrelationIDLength)
        #expect(!Template.accepts(correlationID: ""))
        #expect(Template.accepts(correlationID: "x"))
        #expect(Template.accepts(correlationID: String(repeating: "x", count: Template.maximumCorrelationIDLength)))
        #expect(!Template.accepts(correlationID: String(repeating: "x", count: Template.maximumCorrelationIDLength + 1)))
    }

    /// A probe of a thing other than the sentinel makes a template of that thing: the thing is no part of it.
    @Test func aProbeOfAThingMakesATemplateOfThatThing() throws {
        var probe = try Self.probe()
        let lamp = try ThingID("org.example:lamp-1")
        probe.topic = .liveEvent(thingID: lamp, action: .modified)
        let template = try #require(Template(probe: probe))
        var envelope = probe
        envelope.headers.correlationID = "c-1"
        envelope.revision = 3
        envelope.timestamp = "t"
        envelope.value = 1
        for thing in [lamp, Template.thingSentinel] {
            #expect(template.encode(thingID: thing, correlationID: "c-1", value: 1, compactText: nil,
                                    revision: 3, timestamp: "t") == envelope.encoded())
        }
    }
}
