import Testing

@testable import DittoProtocol

/// Conformance over Ditto's 351 documentation examples in `Resources/examples` (see its NOTICE).
@Suite struct ConformanceTests {
    /// The examples Ditto's own code rejects (checked rule by rule against Ditto at the commit named in the
    /// NOTICE), with the error code Ditto answers.
    static let expectedRejections: [String: String] = [
        // topic does not parse / no topic
        "misc/httpapi-protocol-bindings-websocket-01-websocket-protocol-format.json": "protocoladapter:unknown.topicpath",
        "misc/protocol-examples-02-response.json": "json.field.missing",
        "search/generated-exceptions-thing-search-search-option-invalid.json": "protocoladapter:unknown.topicpath",
        // adapter rejects the message
        "policies/deleteimport-01-deleteimport.json": "protocoladapter:unknown.path",
        "policies/deleteimport-02-deleteimportresponse.json": "protocoladapter:unknown.path",
        "things/basic-conditional-requests-02-ditto-protocol.json": "mediatype.unsupported",
        "things/connectivity-mapping-01-normalized-mapper.json": "json.field.missing",
        "things/connectivity-mapping-02-normalized-mapper.json": "json.field.missing",
        "things/creatething-01-creatething.json": "things:id.notsettable",
        "things/creatething-04-createthingalternatives.json": "things:id.notsettable",
        "things/creatething-05-createthingalternatives.json": "things:id.notsettable",
        "things/modifything-01-modifything.json": "things:id.notsettable",
        "things/modifything-04-modifythingalternatives.json": "things:id.notsettable",
        "things/modifything-05-modifythingalternatives.json": "things:id.notsettable",
        "things/modifypolicyid-04-policyidcreated.json": "protocoladapter:unknown.topicpath",
        "things/protocol-examples-01-command.json": "json.invalid",
        // a modified event of a whole thing without `thingId`: Ditto takes the thing from the value
        "things/protocol-examples-03-event.json": "json.format.invalid",
    ]

    @Test func corpusIsComplete() {
        #expect(Corpus.examples.count == 351)
        let names = Set(Corpus.examples.map(\.name))
        for name in Self.expectedRejections.keys {
            #expect(names.contains(name), "missing example \(name)")
        }
    }

    @Test func everyExampleIsAcceptedOrRejectedAsDittoDoes() throws {
        var accepted = 0
        var rejected = 0
        for example in Corpus.examples {
            let expected = Self.expectedRejections[example.name]
            do {
                _ = try Envelope.decode(example.bytes)
                accepted += 1
                #expect(expected == nil, "\(example.name) decoded but Ditto rejects it with \(expected ?? "")")
            } catch {
                rejected += 1
                #expect(expected == error.error, "\(example.name): \(error.debugDescription)")
            }
        }
        print("conformance: \(Corpus.examples.count) examples, \(accepted) accepted, \(rejected) rejected")
        #expect(accepted == 334)
        #expect(rejected == 17)
    }

    /// The three whose topic Ditto's parser refuses, with the description it gives.
    static let topicFailures: [String: (code: String, description: String)] = [
        "misc/httpapi-protocol-bindings-websocket-01-websocket-protocol-format.json":
            ("protocoladapter:unknown.topicpath", "The topic path has no entity name part."),
        "misc/protocol-examples-02-response.json": ("json.field.missing", ""),
        "search/generated-exceptions-thing-search-search-option-invalid.json":
            ("protocoladapter:unknown.topicpath", "Channel name <search> is unknown."),
    ]

    @Test func topicsParseAndReserializeIdentically() throws {
        var roundTripped = 0
        var failed = 0
        for example in Corpus.examples {
            let object = try #require(try JSON.parse(example.bytes).objectValue, "\(example.name)")
            guard let topic = object["topic"]?.stringValue else {
                failed += 1
                #expect(Self.topicFailures[example.name]?.code == "json.field.missing", "\(example.name) has no topic")
                continue
            }
            do {
                let parsed = try TopicPath(parsing: topic)
                #expect(parsed.description == topic, "\(example.name)")
                #expect(Self.topicFailures[example.name] == nil, "\(example.name): Ditto refuses \(topic)")
                roundTripped += 1
            } catch {
                failed += 1
                let expected = try #require(Self.topicFailures[example.name], "\(example.name): \(error.debugDescription)")
                #expect(error.error == expected.code)
                #expect(error.description == expected.description)
            }
        }
        print("conformance: \(roundTripped) topics round-trip, \(failed) refused as by Ditto")
        #expect(roundTripped == 348)
        #expect(failed == 3)
    }

    /// decode -> encode -> decode gives an equal envelope, and the re-encoded JSON is semantically equal to
    /// the original (same keys, same values, numbers exact). Examples refused by an adapter rule are
    /// checked at the field level (`decodeFields`), which is all that rule leaves.
    @Test func decodeEncodeRoundTrip() throws {
        var checked = 0
        for example in Corpus.examples where Self.topicFailures[example.name] == nil {
            let original = try JSON.parse(example.bytes)
            let envelope: Envelope
            if Self.expectedRejections[example.name] == nil {
                envelope = try Envelope.decode(example.bytes)
            } else {
                envelope = try Envelope.decodeFields(json: original)
            }
            let encoded = envelope.encoded()
            let reencoded = try JSON.parse(encoded)
            #expect(reencoded == original, "\(example.name)\n\(String(decoding: encoded, as: UTF8.self))")
            #expect(envelope.json == original, "\(example.name)")
            let again = try Envelope.decodeFields(json: reencoded)
            #expect(again == envelope, "\(example.name)")
            #expect(again.encoded() == encoded, "\(example.name): encoding is not stable")
            if Self.expectedRejections[example.name] == nil {
                #expect(try Envelope.decode(encoded) == envelope, "\(example.name)")
            }
            checked += 1
        }
        print("conformance: \(checked) envelopes round-trip decode -> encode -> decode")
        #expect(checked == 348)
    }

    /// Numbers keep their literal text through decode and encode.
    @Test func numbersStayExact() throws {
        var numbers = 0
        func collect(_ value: JSONValue, into literals: inout [String]) {
            switch value {
            case .number(let n): literals.append(n.literal)
            case .array(let a): for v in a { collect(v, into: &literals) }
            case .object(let o): for (_, v) in o { collect(v, into: &literals) }
            default: break
            }
        }
        for example in Corpus.examples where Self.topicFailures[example.name] == nil {
            let original = try JSON.parse(example.bytes)
            let envelope = try Envelope.decodeFields(json: original)
            var before: [String] = []
            var after: [String] = []
            collect(original, into: &before)
            collect(try JSON.parse(envelope.encoded()), into: &after)
            #expect(before == after, "\(example.name)")
            numbers += before.count
        }
        #expect(numbers > 300)
    }

    @Test func liveExamplesAreWhatTheBridgeSees() throws {
        let live = Corpus.examples.filter { $0.name.hasPrefix("live/") }
        #expect(live.count == 8)
        for example in live {
            let envelope = try Envelope.decode(example.bytes)
            #expect(envelope.topic.channel == .live)
            #expect(envelope.topic.criterion == .messages)
            let messagePath = try #require(envelope.messagePath)
            #expect(messagePath.subject == envelope.topic.subject)
        }
    }
}
