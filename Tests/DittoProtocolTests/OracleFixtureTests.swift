import Foundation
import Testing

@testable import DittoProtocol

/// Ditto's own verdicts (its Java parser and protocol adapter, run as `ditto-oracle`; see
/// `Resources/oracle/README.md`) on every message the bridge was seen to emit or receive, held without Java:
/// the bridge's validation (``Envelope/decode(_:)``) must agree with each, except where listed below.
@Suite struct OracleFixtureTests {
    struct Fixture: Sendable {
        /// `<file>:<line>`
        let id: String
        let source: String
        let bytes: [UInt8]
        let ok: Bool
        let error: String?
        let entity: String?
        /// Ditto's signal type and name, e.g. `things.events:attributeModified`.
        let signal: String?
        /// Whether Ditto's own rendering of the accepted signal is JSON (`Infinity` is not).
        let roundTripIsJSON: Bool
    }

    static let files = ["documentation-examples.jsonl", "numbers.jsonl", "map.jsonl", "integration.jsonl"]

    static let fixtures: [Fixture] = {
        let candidates = [
            Bundle.module.resourceURL?.appendingPathComponent("oracle"),
            Bundle.module.resourceURL?.appendingPathComponent("Resources/oracle"),
            Bundle.module.bundleURL.appendingPathComponent("Resources/oracle"),
            Bundle.module.bundleURL.appendingPathComponent("Contents/Resources/Resources/oracle"),
        ].compactMap { $0 }
        guard let root = candidates.first(where: { FileManager.default.fileExists(atPath: $0.path) }) else { return [] }
        let examples = Dictionary(Corpus.examples.map { ($0.name, $0.bytes) }, uniquingKeysWith: { first, _ in first })
        var result: [Fixture] = []
        for file in files {
            guard let data = FileManager.default.contents(atPath: root.appendingPathComponent(file).path) else { continue }
            for (index, line) in String(decoding: data, as: UTF8.self).split(separator: "\n").enumerated() {
                guard let object = try? JSON.parse(String(line)).objectValue,
                      let ditto = object["ditto"]?.objectValue, let ok = ditto["ok"]?.boolValue
                else { continue }
                let bytes: [UInt8]? = object["text"]?.stringValue.map { Array($0.utf8) }
                    ?? object["example"]?.stringValue.flatMap { examples[$0] }
                guard let bytes else { continue }
                result.append(Fixture(
                    id: "\(file):\(index + 1)", source: object["source"]?.stringValue ?? "", bytes: bytes, ok: ok,
                    error: ditto["error"]?.stringValue, entity: ditto["entity"]?.stringValue,
                    signal: ditto["signal"]?.stringValue,
                    roundTripIsJSON: ditto["roundTripIsJSON"]?.boolValue ?? true))
            }
        }
        return result
    }()

    /// Where the bridge deliberately refuses what Ditto's parser accepts, with the code the bridge answers.
    static let beyondDoubleRange = "a number beyond the double range: Ditto keeps its text in a merge patch or a message "
        + "payload but reads it as Infinity wherever it reads the value (and writes Infinity, not JSON, for an event "
        + "it parsed); the bridge's one number rule refuses it everywhere (issue #22, item 1)"
    static let deliberate: [String: (error: String, reason: String)] = {
        var list: [String: (error: String, reason: String)] = [:]
        for id in ["numbers.jsonl:65", "numbers.jsonl:66", "numbers.jsonl:68", "numbers.jsonl:69", "numbers.jsonl:71",
                   "numbers.jsonl:72", "numbers.jsonl:74", "numbers.jsonl:75", "numbers.jsonl:80", "numbers.jsonl:81",
                   "map.jsonl:79", "map.jsonl:80", "map.jsonl:81", "map.jsonl:167", "map.jsonl:168", "map.jsonl:169",
                   "map.jsonl:190", "map.jsonl:191", "map.jsonl:192"] {
            list[id] = ("json.invalid", beyondDoubleRange)
        }
        return list
    }()

    @Test func everyFixtureIsThere() {
        #expect(Self.fixtures.count == 351 + 84 + 328 + 433)
        let ids = Set(Self.fixtures.map(\.id))
        for id in Self.deliberate.keys { #expect(ids.contains(id), "\(id) listed but not a fixture") }
    }

    @Test func theBridgeAgreesWithDittosParser() {
        var agreed = 0
        var signals = 0
        for fixture in Self.fixtures {
            let expectedError: String?
            if let deliberate = Self.deliberate[fixture.id] {
                #expect(fixture.ok, "\(fixture.id): listed as accepted by Ditto")
                expectedError = deliberate.error
            } else if fixture.ok {
                expectedError = fixture.roundTripIsJSON ? nil : "json.invalid"
            } else {
                expectedError = fixture.error
            }
            let context = "\(fixture.id) (\(fixture.source)): \(String(decoding: fixture.bytes.prefix(300), as: UTF8.self))"
            do {
                let envelope = try Envelope.decode(fixture.bytes)
                #expect(expectedError == nil, "bridge accepts, Ditto answers \(expectedError ?? ""): \(context)")
                if expectedError == nil, envelope.topic.group == .things, let entity = fixture.entity {
                    #expect(envelope.entityThingID?.description == entity, "entity differs: \(context)")
                }
                if expectedError == nil, let signal = fixture.signal {
                    signals += 1
                    let bridgeSignal = String(describing: envelope.thingSignal)
                    #expect(Self.sameSignal(signal, envelope), "Ditto makes \(signal) of it, the bridge \(bridgeSignal): \(context)")
                }
                if expectedError == nil { agreed += 1 }
            } catch {
                #expect(expectedError == error.error, "bridge refuses with \(error.error): \(error.message); \(context)")
                if expectedError == error.error { agreed += 1 }
            }
        }
        print("oracle fixtures: \(agreed) of \(Self.fixtures.count) as expected (\(Self.deliberate.count) of them "
              + "deliberately refused); \(signals) signals of the same kind")
        #expect(signals > 1_000)
    }

    /// Whether Ditto's signal (`<type>:<name>`) is the kind the bridge reads the envelope as
    /// (``Envelope/thingSignal``): event, command, response or error, message or its response, acknowledgement,
    /// with the same action; a signal outside things and messages is one the bridge does not model.
    static func sameSignal(_ signal: String, _ envelope: Envelope) -> Bool {
        let parts = signal.split(separator: ":", maxSplits: 1)
        let type = String(parts[0])
        let name = parts.count > 1 ? parts[1].lowercased() : ""
        switch (type, envelope.thingSignal) {
        case ("things.events", .event(let action, _)?):
            return name.hasSuffix(action.rawValue.lowercased())
        case ("things.commands", .command(let action, _, nil)?):
            return name.hasPrefix(action.rawValue.lowercased())
        case ("things.responses", .error?):
            return name == "errorresponse"
        case ("things.responses", .command(let action, _, .some)?):
            return name.hasPrefix(action.rawValue.lowercased())
        case ("messages.commands", .message(_, nil)?), ("messages.responses", .message(_, .some)?):
            return true
        case (_, .acknowledgement?):
            return type.hasPrefix("acknowledgement")
        case (_, nil):
            return !type.hasPrefix("things.") && !type.hasPrefix("messages.") && !type.hasPrefix("acknowledgement")
        default:
            return false
        }
    }

    /// The limits themselves, so that a number rule that drifts shows which boundary moved.
    @Test func numberVerdictsAtDittosLimits() throws {
        let numbers = Self.fixtures.filter { $0.id.hasPrefix("numbers.jsonl:") && $0.source.contains("live event modified") }
        #expect(numbers.count == 28)
        for fixture in numbers {
            let readable = fixture.ok && fixture.roundTripIsJSON
            let text = String(decoding: fixture.bytes, as: UTF8.self)
            let literal = try #require(text.split(separator: "\"value\":").last?.dropLast(#","revision":1}"#.count))
            #expect((JSONNumber(literal: String(literal)) != nil) == readable, "\(literal): Ditto reads it: \(readable)")
            #expect((JSONNumber.rangeRefusal(literal: String(literal)) == nil) == readable, "\(literal)")
        }
    }
}
