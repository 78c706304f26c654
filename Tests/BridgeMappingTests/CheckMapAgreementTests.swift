import BridgeConfig
import BridgeMapping
import DittoProtocol
import Foundation
import MQTT
import Testing

/// Property (issue 10): for random uplink rules and payloads, when `check` accepts a rule, `map` never fails on
/// a payload of the shape the rule documents, and Ditto accepts what it makes. Seeded, so a failure repeats.
@Suite struct CheckMapAgreementTests {
    /// SplitMix64: small, seeded, the same sequence on every platform.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }

        mutating func pick<T>(_ items: [T]) -> T { items[Int.random(in: 0..<items.count, using: &self)] }
        mutating func chance(_ percent: Int) -> Bool { Int.random(in: 0..<100, using: &self) < percent }
    }

    /// Keys for paths and payload members, some of which Ditto refuses in paths (`é`, control characters).
    static let keyCharacters: [Character] = Array("abcxyz019-_~: ") + ["é", "/", "\u{1}", "日"]

    static func key(_ g: inout Generator, pathSafe: Bool = false) -> String {
        let count = Int.random(in: 1...6, using: &g)
        var text = ""
        for _ in 0..<count {
            var c = g.pick(keyCharacters)
            // A `/` in a literal path level would make two levels; a YAML scalar cannot hold a raw control character.
            while pathSafe && (c == "/" || c == "\u{1}") { c = g.pick(keyCharacters) }
            if !pathSafe && c == "\u{1}" { c = "x" }
            text.append(c)
        }
        return text
    }

    struct Case {
        var yaml: String
        var topic: String
        var payloads: [[UInt8]]
        var summary: String
    }

    static func yamlQuoted(_ text: String) -> String {
        var out = "\""
        for c in text.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "\""
    }

    /// A JSON value of the kind Ditto accepts for an event `action` at `path`, or any JSON when the kind is free.
    /// A value Ditto takes for an event at `path`, of the shape docs/CONFIG.md documents: the resource's JSON
    /// kind, and what Ditto's thing model reads inside it (a whole thing names its own `thingId`, definitions and
    /// policy ids follow their grammar).
    static func value(for path: String?, action: String, thing: String, _ g: inout Generator) -> JSONValue {
        let identifier = JSONValue.string(g.pick(["org.example:sensor:1.0.0", "ns:n:2", "https://models.example.com/s.jsonld"]))
        var candidates: [JSONValue] = [randomObject(&g), .string(key(&g)), .array([.number(JSONNumber(1))]), .number(JSONNumber(Int.random(in: -99...99, using: &g))),
                                       .object(["thingId": .string(thing)]), .array([identifier])]
        if path == "/policyId" { candidates.append(.string(thing)) } else { candidates.append(identifier) }
        candidates.shuffle(using: &g)
        guard let path, let thingID = (try? ThingID(thing)) ?? (try? ThingID("org.example:d")) else { return candidates[0] }
        for candidate in candidates {
            let event = Envelope.liveEvent(thingID: thingID, action: TopicPath.Action(rawValue: action) ?? .modified,
                                           path: path, value: candidate, revision: 1)
            if (try? event.validate()) != nil { return candidate }
        }
        return candidates[0]
    }

    static func randomObject(_ g: inout Generator) -> JSONValue {
        var object = JSONObject()
        for _ in 0..<Int.random(in: 0...3, using: &g) { object[key(&g)] = .number(JSONNumber(Int.random(in: 0...9, using: &g))) }
        return .object(object)
    }

    /// A document in which `pointer` selects `value`: arrays where a token is an index, objects elsewhere.
    static func document(placing value: JSONValue, at tokens: ArraySlice<String>, in base: JSONValue?,
                         _ g: inout Generator) -> JSONValue {
        guard let token = tokens.first else { return value }
        if let index = Int(token), index >= 0, token == String(index), base?.objectValue == nil {
            var array: [JSONValue] = base?.arrayValue ?? []
            while array.count <= index { array.append(.number(JSONNumber(array.count))) }
            array[index] = document(placing: value, at: tokens.dropFirst(), in: array[index].objectValue == nil && array[index].arrayValue == nil ? nil : array[index], &g)
            return .array(array)
        }
        var object = base?.objectValue ?? JSONObject()
        object[token] = document(placing: value, at: tokens.dropFirst(), in: object[token], &g)
        if g.chance(30) { object[key(&g) + "-other"] = .bool(true) }
        return .object(object)
    }

    static func pointerTokens(_ g: inout Generator, first: String? = nil) -> [String] {
        var tokens = [first ?? key(&g)]
        for _ in 0..<Int.random(in: 0...2, using: &g) {
            tokens.append(g.chance(40) ? String(Int.random(in: 0...3, using: &g)) : key(&g))
        }
        return tokens
    }

    static func makeCase(_ g: inout Generator) -> Case {
        let sensorCaptured = g.chance(50)
        let topicTemplate = "devices/{deviceId}/" + (sensorCaptured ? "{sensor}" : "t\(Int.random(in: 0...9, using: &g))")
        let thingID = g.pick(["{namespace}:{deviceId}", "{namespace}:{deviceId|lower}", "org.acme:dev-{deviceId}", "{deviceId}"])
        let deviceID = g.pick(["Dev-1", "pump-4", "a_b", "x"])
        let sensor = g.pick(["temp", "flow-2", "s_1"])
        let topic = "devices/\(deviceID)/" + (sensorCaptured ? sensor : String(topicTemplate.split(separator: "/").last ?? "t0"))
        let thing = switch thingID {
        case "{namespace}:{deviceId}": "org.example:\(deviceID)"
        case "{namespace}:{deviceId|lower}": "org.example:\(deviceID.lowercased())"
        case "org.acme:dev-{deviceId}": "org.acme:dev-\(deviceID)"
        default: deviceID
        }

        // Payload format and selection.
        let format = g.pick(["json", "json", "json", "number", "boolean", "text", "bytes"])
        var payloadYAML = "payload: \(format)"
        enum Selection { case whole, pointer([String]), fields([(String, [String])]) }
        var selection = Selection.whole
        if format == "json" {
            switch Int.random(in: 0..<3, using: &g) {
            case 0: break
            case 1:
                let tokens = pointerTokens(&g)
                selection = .pointer(tokens)
                payloadYAML = "payload: { format: json, pointer: \(yamlQuoted(RFC6901Pointer(tokens: tokens).description)) }"
            default:
                var fields: [(String, [String])] = []
                for n in 0..<Int.random(in: 1...3, using: &g) {
                    // Distinct first tokens, so that one document can hold every field.
                    fields.append(("f\(n)\(key(&g, pathSafe: true).filter { $0.isLetter })", pointerTokens(&g, first: "m\(n)")))
                }
                selection = .fields(fields)
                let entries = fields.map { "\(yamlQuoted($0.0)): \(yamlQuoted(RFC6901Pointer(tokens: $0.1).description))" }
                payloadYAML = "payload: { format: json, fields: { \(entries.joined(separator: ", ")) } }"
            }
        }

        // What the rule emits.
        var actionYAML: String
        var eventPath: String?
        var eventAction = "modified"
        if g.chance(70) {
            eventAction = g.pick(["created", "modified", "merged", "deleted"])
            let k1 = key(&g, pathSafe: true)
            let k2 = key(&g, pathSafe: true)
            let feature = sensorCaptured && g.chance(50) ? "{sensor}" : k1
            let path = g.pick([
                "/features/\(feature)/properties/value", "/attributes/\(k1)", "/attributes", "/features/\(feature)",
                "/features/\(feature)/properties", "/policyId", "/definition", "/features/\(feature)/definition", "/",
                "/features/\(feature)/desiredProperties/\(k1)/\(k2)", "/unknown/\(k1)",
            ])
            eventPath = path.replacingOccurrences(of: "{sensor}", with: sensor)
            actionYAML = "event: { action: \(eventAction), path: \(yamlQuoted(path)) }"
        } else {
            var spec = "subject: \(sensorCaptured && g.chance(50) ? "\"{sensor}\"" : "alarm")"
            if g.chance(30) { spec += ", feature: \(yamlQuoted(sensorCaptured ? "{sensor}" : "f1"))" }
            if g.chance(50) {
                let contentType = g.pick(["application/json", "text/plain", "application/octet-stream",
                                          "application/merge-patch+json", "application/vnd.acme+json", "text/csv; charset=utf-8"])
                spec += ", content-type: \(yamlQuoted(contentType))"
            }
            actionYAML = "message: { \(spec) }"
        }

        let yaml = """
            defaults: { namespace: org.example }
            uplink:
              - name: rule
                topic: \(yamlQuoted(topicTemplate))
                thing-id: \(yamlQuoted(thingID))
                \(actionYAML)
                \(payloadYAML)
            """

        // Payloads of the documented shape.
        var payloads: [[UInt8]] = []
        for _ in 0..<3 {
            switch format {
            case "number":
                let number = g.pick(["21.5", "-3", "0", "1e3", "  7 ", "9223372036854775807", "-0.001\n"])
                payloads.append(Array(number.utf8))
            case "boolean":
                payloads.append(Array(g.pick(["true", "false", "1", "0", "on", "OFF", " True\n"]).utf8))
            case "text" where eventPath == "/definition" && ["created", "modified"].contains(eventAction):
                payloads.append(Array(g.pick(["org.example:pump:1.0.0", "https://models.example.com/pump.jsonld"]).utf8))
            case "text" where eventPath == "/policyId" && eventAction == "modified":
                payloads.append(Array(thing.utf8))
            case "text":
                payloads.append(Array(g.pick(["hello", "", "日本語 ✓", "{\"not\": \"parsed\"}", "line\nbreak"]).utf8))
            case "bytes":
                payloads.append((0..<Int.random(in: 0...16, using: &g)).map { _ in UInt8.random(in: 0...255, using: &g) })
            default:
                let document: JSONValue
                switch selection {
                case .whole:
                    document = value(for: eventPath, action: eventAction, thing: thing, &g)
                case .pointer(let tokens):
                    let selected = value(for: eventPath, action: eventAction, thing: thing, &g)
                    document = Self.document(placing: selected, at: tokens[...], in: nil, &g)
                case .fields(let fields):
                    var built: JSONValue?
                    for (_, tokens) in fields {
                        built = Self.document(placing: .number(JSONNumber(Int.random(in: 0...9, using: &g))), at: tokens[...],
                                              in: built, &g)
                    }
                    document = built ?? .object(JSONObject())
                }
                payloads.append(JSON.serialize(document))
            }
        }
        return Case(yaml: yaml, topic: topic, payloads: payloads, summary: "\(actionYAML) \(payloadYAML)")
    }

    @Test func checkAcceptingARuleMeansMapNeverFailsOnItsPayloads() throws {
        var g = Generator(state: 0x1D1770_0000_0010)
        var accepted = 0
        var refused = 0
        var mapped = 0
        for _ in 0..<400 {
            let c = Self.makeCase(&g)
            let configuration: BridgeConfiguration
            do {
                configuration = try BridgeConfiguration.parse(yaml: c.yaml, fileName: "p.yaml", environment: [:])
            } catch {
                refused += 1
                continue
            }
            accepted += 1
            let mapper = UplinkMapper(configuration: configuration)
            for payload in c.payloads {
                do {
                    let result = try mapper.map(MQTTMessage(topic: c.topic, payload: payload), environment: fixedEnvironment)
                    _ = try Envelope.decode(result.envelope.encoded())
                    mapped += 1
                } catch {
                    Issue.record("check accepted \(c.summary) but \(c.topic) with \(String(decoding: payload, as: UTF8.self)) fails: \(error)")
                }
            }
        }
        print("check/map property: \(accepted) rules accepted, \(refused) refused, \(mapped) payloads mapped")
        // Both sides of the property are exercised.
        #expect(accepted >= 150)
        #expect(refused >= 40)
    }

    static let focusedYAML = """
        defaults: { namespace: org.example }
        uplink:
          - name: reading
            topic: "devices/{deviceId}/readings"
            thing-id: "{namespace}:{deviceId}"
            event: { path: /features/meter/properties/last }
            payload: { format: json, pointer: "/readings/1/a~1b" }
          - name: attributes
            topic: "devices/{deviceId}/attributes"
            thing-id: "{namespace}:{deviceId}"
            event: { path: /attributes }
            payload: json
        """

    @Test func devicePointersReadArraysAndEscapes() throws {
        let mapper = UplinkMapper(configuration: try configuration(Self.focusedYAML))
        let payload = #"{"readings":[{"a/b":1},{"a/b":{"v":2}}]}"#
        let event = try mapper.map(publication("devices/d/readings", payload), environment: fixedEnvironment).envelope
        #expect(event.value == ["v": 2])
        let missing = try #require(mappingError {
            _ = try mapper.map(publication("devices/d/readings", #"{"readings":[{"a/b":1}]}"#), environment: fixedEnvironment)
        })
        #expect(missing.kind == .invalidPayload)
    }

    @Test func aJSONValueOfTheWrongKindIsRefusedWithDittosReason() throws {
        let mapper = UplinkMapper(configuration: try configuration(Self.focusedYAML))
        let error = try #require(mappingError {
            _ = try mapper.map(publication("devices/d/attributes", "5"), environment: fixedEnvironment)
        })
        #expect(error.kind == .invalidPayload)
        #expect(error.dittoError.error == "json.format.invalid")
        #expect(try mapper.map(publication("devices/d/attributes", #"{"a":1}"#), environment: fixedEnvironment).envelope.value == ["a": 1])
    }

    @Test(arguments: [
        ("event: { action: modified, path: /attributes }\n    payload: number", "Ditto refuses a live modified event at '/attributes' with a number value"),
        ("event: { action: created, path: /policyId }\n    payload: text", "Ditto refuses a live created event at '/policyId'"),
        ("event: { path: /policyId }\n    payload: { format: json, fields: { a: /a } }", "Ditto refuses a live modified event at '/policyId' with a json value"),
        ("event: { path: /unknown/x }\n    payload: json", "Ditto refuses a live modified event at '/unknown/x'"),
        ("event: { path: \"/attributes/fé\" }\n    payload: json", "'fé' is not a key Ditto accepts"),
    ] as [(String, String)])
    func checkRefusesEventsDittoRefuses(_ lines: String, _ message: String) {
        let yaml = """
            defaults: { namespace: org.example }
            uplink:
              - name: rule
                topic: "devices/{deviceId}/x"
                thing-id: "{namespace}:{deviceId}"
                \(lines)
            """
        do {
            _ = try BridgeConfiguration.parse(yaml: yaml, fileName: "t.yaml", environment: [:])
            Issue.record("check accepted \(lines)")
        } catch {
            #expect(error.errors.count == 1)
            #expect(error.errors.first?.message.contains(message) == true, "\(error)")
        }
    }
}
