import Testing

@testable import DittoProtocol

/// Deterministic fuzzing: 100,000 random and mutated inputs through the envelope decoder and the topic
/// parser. Every input must give a value or a typed `DittoError` (typed throws make anything else a
/// compile error); a crash, trap or hang fails the run. Decoded envelopes must survive encode → decode.
@Suite struct FuzzTests {
    /// SplitMix64: small, fast, reproducible.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let tokens: [[UInt8]] = [
        "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u", "\\ud800", "\\udc00", "\\u0000", "null", "true", "false",
        "-", "0", "1e999", "-0.0", "12345678901234567890123", "1.0", "\"topic\"", "\"path\"", "\"status\"",
        "\"headers\"", "\"revision\"", "\"value\"", "/", "//", "~", "~0", "~1", "_", "things", "live", "twin",
        "messages", "commands", "events", "acks", "errors", "policies", "connections", "inbox", "outbox",
        "features", "ü", "名", "😀", "\u{7F}", " ", "\n", "\t",
    ].map { Array($0.utf8) } + [[0xFF], [0xC3], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0x00]]

    /// Lets the run's other tests (and the servers some of them start) have the cooperative pool every 500
    /// inputs: it has one thread per core, and a fuzz loop that never yields holds one of them for seconds.
    static func yieldNow(every i: Int) async {
        if i % 500 == 0 { await Task.yield() }
    }

    static func mutate(_ input: [UInt8], using rng: inout Generator) -> [UInt8] {
        var bytes = input
        let rounds = Int.random(in: 1...4, using: &rng)
        for _ in 0..<rounds {
            let position = bytes.isEmpty ? 0 : Int.random(in: 0..<bytes.count, using: &rng)
            switch Int.random(in: 0..<8, using: &rng) {
            case 0 where !bytes.isEmpty:
                bytes[position] = UInt8.random(in: 0...255, using: &rng)
            case 1 where !bytes.isEmpty:
                bytes[position] ^= 1 << UInt8.random(in: 0..<8, using: &rng)
            case 2:
                bytes.insert(contentsOf: tokens.randomElement(using: &rng) ?? [], at: position)
            case 3 where !bytes.isEmpty:
                let end = min(bytes.count, position + Int.random(in: 1...16, using: &rng))
                bytes.removeSubrange(position..<end)
            case 4 where !bytes.isEmpty:
                let end = min(bytes.count, position + Int.random(in: 1...32, using: &rng))
                bytes.insert(contentsOf: bytes[position..<end], at: position)
            case 5:
                bytes = Array(bytes.prefix(position))
            case 6:
                let other = Corpus.examples.randomElement(using: &rng)?.bytes ?? []
                let cut = other.isEmpty ? 0 : Int.random(in: 0..<other.count, using: &rng)
                bytes = Array(bytes.prefix(position)) + other[cut...]
            default:
                let depth = Int.random(in: 1...400, using: &rng)
                bytes.insert(contentsOf: Array(repeating: UInt8(ascii: "["), count: depth), at: position)
            }
        }
        return bytes
    }

    static func randomJSONish(using rng: inout Generator) -> [UInt8] {
        var bytes: [UInt8] = []
        for _ in 0..<Int.random(in: 0...40, using: &rng) {
            if Bool.random(using: &rng) {
                bytes += tokens.randomElement(using: &rng) ?? []
            } else {
                bytes.append(UInt8.random(in: 0...255, using: &rng))
            }
        }
        return bytes
    }

    /// Mutating a valid envelope's JSON (not its bytes) keeps inputs deep inside the decoder's checks.
    static func structuralMutation(using rng: inout Generator) -> [UInt8] {
        guard let example = Corpus.examples.randomElement(using: &rng),
            case .object(var object) = try? JSON.parse(example.bytes)
        else { return [] }
        let fields = ["topic", "headers", "path", "value", "status", "revision", "timestamp", "extra", "metadata", "fields"]
        let field = fields.randomElement(using: &rng) ?? "topic"
        let replacements: [JSONValue] = [
            .null, true, 0, -1, 99, 200, 1_000, 1.5, "", "/", "x", "//", [], [:], ["correlation-id": 1],
            ["requested-acks": "a,b"], ["response-required": "maybe"], ["timeout": "5x"],
            "ns/n/things/live/messages/", "ns/n/things/live/acks/live-response", "ns/ü/things/live/commands/modify",
            "/inbox/messages/", "2020-13-01T00:00:00Z", .number(JSONNumber(literal: "9223372036854775807")!),
        ]
        if Bool.random(using: &rng) {
            object[field] = nil
        } else {
            object[field] = replacements.randomElement(using: &rng)
        }
        return JSON.serialize(.object(object))
    }

    @Test func envelopeDecoderSurvives100kInputs() async throws {
        var rng = Generator(state: 0xD177_0000_0000_0006)
        let corpus = Corpus.examples.map(\.bytes)
        try #require(!corpus.isEmpty)
        var decoded = 0
        var rejected = 0
        var codes: [String: Int] = [:]
        let total = 100_000
        for i in 0..<total {
            await Self.yieldNow(every: i)
            let input: [UInt8]
            switch i % 4 {
            case 0, 1: input = Self.mutate(corpus[i % corpus.count], using: &rng)
            case 2: input = Self.structuralMutation(using: &rng)
            default: input = Self.randomJSONish(using: &rng)
            }
            do {
                let envelope = try Envelope.decode(input)
                decoded += 1
                // Whatever decodes must encode to something that decodes to the same envelope.
                let again = try Envelope.decode(envelope.encoded())
                #expect(again == envelope)
            } catch {
                rejected += 1
                codes[error.error, default: 0] += 1
                #expect(error.status >= 400 && error.status < 500)
                #expect(!error.error.isEmpty && !error.message.isEmpty)
            }
        }
        print("fuzz: \(total) envelope inputs, \(decoded) decoded, \(rejected) rejected; codes: \(codes.sorted { $0.value > $1.value })")
        #expect(decoded + rejected == total)
        #expect(decoded > 1_000)
        #expect(rejected > 10_000)
    }

    @Test func topicParserAndJSONSurviveRandomInput() async throws {
        var rng = Generator(state: 0x70_0000_0000_0001)
        let topics = Corpus.examples.compactMap { try? JSON.parse($0.bytes)["topic"]?.stringValue }
        try #require(!topics.isEmpty)
        var parsed = 0
        for i in 0..<20_000 {
            await Self.yieldNow(every: i)
            let base = Array(topics[i % topics.count].utf8)
            let bytes = i % 2 == 0 ? Self.mutate(base, using: &rng) : Self.randomJSONish(using: &rng)
            let text = String(decoding: bytes, as: UTF8.self)
            if let topic = try? TopicPath(parsing: text) {
                parsed += 1
                // Serialization is stable from then on.
                let serialized = topic.description
                if let again = try? TopicPath(parsing: serialized) { #expect(again.description == serialized) }
            }
            if let value = try? JSON.parse(bytes) {
                #expect(try JSON.parse(JSON.serialize(value)) == value)
            }
        }
        #expect(parsed > 100)
    }
}

extension FuzzTests {
    /// The small parsers and validators the bridge feeds with device and config input.
    @Test func smallParsersSurviveRandomStrings() async throws {
        var rng = Generator(state: 0x5EED_0000_0000_0003)
        let knownHeaders = [
            "correlation-id", "response-required", "requested-acks", "timeout", "channel", "content-type",
            "if-equal", "at-historical-revision", "ditto-auth-context", "declared-acks", "status", "x-custom",
        ]
        var accepted = 0
        for i in 0..<20_000 {
            await Self.yieldNow(every: i)
            let bytes = Self.randomJSONish(using: &rng)
            let text = String(decoding: bytes, as: UTF8.self)
            if (try? ThingID(text)) != nil { accepted += 1 }
            if let pointer = try? JSONPointer(text) {
                #expect((try? JSONPointer(pointer.description))?.segments == pointer.segments, "\(Array(text.utf8)) -> \(pointer.segments)")
            }
            if let duration = DittoDuration(parsing: text) { #expect(duration.milliseconds >= 0) }
            _ = ContentTypeStrategy(contentType: text)
            if let decoded = Base64.decode(text) { #expect(Base64.decode(Base64.encode(decoded)) == decoded) }
            _ = MessagePath(parsing: text)
            _ = MessagePayload.from(bytes: bytes, contentType: i % 2 == 0 ? "application/json" : text)
            _ = AcknowledgementLabel.isValid(text, allowPlaceholder: true)
            var headers = DittoHeaders()
            headers[knownHeaders[i % knownHeaders.count]] = text
            if (try? headers.validate()) != nil {
                _ = headers.json
                _ = headers.requestedAcks
                _ = headers.timeout
            }
        }
        #expect(accepted >= 0)
    }
}

extension FuzzTests {
    /// `parseKeepingCompactText` parses exactly as `parse` does, and the range it returns is byte for byte what
    /// `serialize` writes: the uplink copies that range into events instead of writing the value again.
    @Test func compactTextIsTheSerialization() async throws {
        var rng = Generator(state: 0xC0_4EAC_0000_0001)
        var compactFound = 0
        var notCompact = 0
        var scanned = 0
        let examples = Corpus.examples.map(\.bytes)
        try #require(!examples.isEmpty)
        for i in 0..<40_000 {
            await Self.yieldNow(every: i)
            let base = examples[i % examples.count]
            let input: [UInt8]
            switch i % 4 {
            case 0: input = base
            case 1: input = JSON.serialize((try? JSON.parse(base)) ?? .null)
            case 2: input = Self.mutate(JSON.serialize((try? JSON.parse(base)) ?? .null), using: &rng)
            default: input = Self.randomJSONish(using: &rng)
            }
            let plain = Result { () throws(JSONParseError) in try JSON.parse(input) }
            let kept = Result { () throws(JSONParseError) in try JSON.parseKeepingCompactText(input) }
            if Self.scansLikeTheParser(input, kept) { scanned += 1 }
            switch (plain, kept) {
            case (.success(let value), .success(let result)):
                #expect(result.value == value)
                if let range = result.compact {
                    compactFound += 1
                    #expect(Array(input[range]) == JSON.serialize(value), "\(String(decoding: input, as: UTF8.self))")
                } else {
                    notCompact += 1
                }
            case (.failure(let error), .failure(let same)):
                #expect(error == same)
            default:
                Issue.record("parse and parseKeepingCompactText disagree on \(String(decoding: input, as: UTF8.self))")
            }
        }
        #expect(compactFound > 5_000)
        #expect(notCompact > 5_000)
        #expect(scanned > 5_000)
    }

    /// `compactValue` finds exactly what `parseKeepingCompactText` finds for texts with ASCII strings, with the
    /// value's kind, and nothing for any other text; true when it found a value.
    static func scansLikeTheParser(_ input: [UInt8], _ kept: Result<(value: JSONValue, compact: Range<Int>?), JSONParseError>,
                                   sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        let scanned = JSON.compactValue(input)
        let text = String(decoding: input, as: UTF8.self)
        if case .success(let result) = kept, let range = result.compact, input[range].allSatisfy({ $0 < 0x80 }) {
            #expect(scanned?.range == range, "\(text)", sourceLocation: sourceLocation)
            #expect(scanned?.kind == result.value.kind, "\(text)", sourceLocation: sourceLocation)
        } else {
            #expect(scanned == nil, "\(text)", sourceLocation: sourceLocation)
        }
        return scanned != nil
    }

    /// The edges the random texts rarely reach: nesting at and beyond the limit, objects of 16 and 17 members, a
    /// key repeated as the 16th or 17th, every kind at the top.
    @Test func compactScanAtTheEdges() throws {
        let limit = JSON.maximumDepth
        func members(_ count: Int, repeating: Int? = nil) -> String {
            "{" + (0..<count).map { #""k\#($0 == repeating ? 0 : $0)":\#($0)"# }.joined(separator: ",") + "}"
        }
        let texts = [
            String(repeating: "[", count: limit) + String(repeating: "]", count: limit),
            String(repeating: "[", count: limit + 1) + String(repeating: "]", count: limit + 1),
            String(repeating: #"{"a":"#, count: limit) + "1" + String(repeating: "}", count: limit),
            String(repeating: #"{"a":"#, count: limit + 1) + "1" + String(repeating: "}", count: limit + 1),
            members(16), members(17), members(16, repeating: 15), members(17, repeating: 16), members(2, repeating: 1),
            "1", "-0.5e+3", "01", "1.", "\"a\"", "true", "false", "null", "nul", "[]", "{}", "[,]", "{,}", "[1,]",
            #"{"a":1,}"#, #"{"a"}"#, #"{"a":}"#, "\"\u{7F}\"", "\"a\u{1}\"", #""é""#, " [1] ", "[1] x", "", " ",
        ]
        var found = 0
        for text in texts {
            let input = Array(text.utf8)
            let kept = Result { () throws(JSONParseError) in try JSON.parseKeepingCompactText(input) }
            if Self.scansLikeTheParser(input, kept) { found += 1 }
        }
        #expect(found == 13)
    }

    @Test(arguments: [
        (#"{"a":1,"b":[true,null,"x"]}"#, 0..<27),
        (#" {"a":1} "#, 1..<8),
        ("\n[1,2.50,-0,1e9]\t", 1..<16),
        (#""ü名😀""#, 0..<11),
        (#"{"a":1,"a":2}"#, nil),
        (#"{"a": 1}"#, nil),
        (#"[1, 2]"#, nil),
        (#""\u00e9""#, nil),
        (#""a\/b""#, nil),
        (#"{"k":"line\n"}"#, nil),
    ] as [(String, Range<Int>?)])
    func compactTextCases(text: String, expected: Range<Int>?) throws {
        let bytes = Array(text.utf8)
        let result = try JSON.parseKeepingCompactText(bytes)
        #expect(result.compact == expected)
        #expect(result.value == (try JSON.parse(bytes)))
    }
}
