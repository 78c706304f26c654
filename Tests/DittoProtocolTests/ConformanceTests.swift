import Testing

@testable import DittoProtocol

/// Conformance over Ditto's 351 documentation examples (issue #6 acceptance).
@Suite struct ConformanceTests {
    /// The examples Ditto's own code rejects (FACTS.md appendix), with the error code Ditto answers.
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
                let envelope = try Envelope.decode(example.bytes)
                accepted += 1
                #expect(expected == nil, "\(example.name) decoded but Ditto rejects it with \(expected ?? "")")
                _ = envelope
            } catch {
                rejected += 1
                #expect(expected == error.error, "\(example.name): \(error.debugDescription)")
            }
        }
        print("conformance: \(Corpus.examples.count) examples, \(accepted) accepted, \(rejected) rejected")
        #expect(accepted == 335)
        #expect(rejected == 16)
    }
}
