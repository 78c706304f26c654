import BridgeConfig
import BridgeMapping
import DittoProtocol
import Foundation
import MQTT
import Testing

/// For every command action on `/`, the attributes, features and feature properties, and for live messages, the
/// response the bridge builds from each device status (absent, 200, 201, 204, 400, 404, 409, 500), with and without
/// a payload, plus answers that do not fit their request: each is held to Ditto's own verdict on exactly that
/// message (`Tests/DittoProtocolTests/Resources/responses/response-matrix.jsonl`, made with Ditto's parser; see
/// the NOTICE there). Ditto must accept it as a response of the requested thing, with the request's correlation id.
///
/// When the bridge's responses change on purpose, the test names the cases whose message is not in the fixture;
/// `RESPONSE_MATRIX_DUMP=<file>` writes every built message (one `{"name", "message"}` per line) to run through
/// the oracle again.
@Suite struct ResponseMatrixTests {
    static let yaml = """
        defaults: { namespace: org.example }
        downlink:
          - name: messages
            match: { messages: { subject: "*" } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/inbox/{subject}"
            reply: { mode: mqtt5, topic: "devices/{deviceId}/reply" }
          - name: feature-messages
            match: { messages: { subject: "*", feature: "*" } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/features/{feature}/inbox/{subject}"
            reply: { mode: mqtt5, topic: "devices/{deviceId}/reply" }
          - name: commands
            match: { commands: { actions: [create, modify, merge, delete, retrieve] } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/commands/{action}"
            reply: { mode: mqtt5, topic: "devices/{deviceId}/reply" }
        """

    static let thing = "org.example:dev-1"

    /// Each path with the value a device that has the resource answers with.
    static let resources: [(path: String, value: String)] = [
        ("/", #"{"thingId":"org.example:dev-1","attributes":{"a":1}}"#),
        ("/attributes", #"{"a":1}"#),
        ("/attributes/a", "1"),
        ("/features", #"{"f":{"properties":{"p":1}}}"#),
        ("/features/f", #"{"properties":{"p":1}}"#),
        ("/features/f/properties", #"{"p":1}"#),
        ("/features/f/properties/p", "1"),
    ]

    static let statuses: [String?] = [nil, "200", "201", "204", "400", "404", "409", "500"]

    struct Case: Sendable {
        var name: String
        var request: String
        var status: String?
        var payload: String
        /// The error code the requester gets, nil: a success response.
        var expectedError: String? = nil
    }

    static func request(_ action: String, _ path: String, value: String?) -> String {
        let headers = action == "merge" ? #"{"correlation-id":"c-1","content-type":"application/merge-patch+json"}"#
            : #"{"correlation-id":"c-1"}"#
        let valueField = value.map { #","value":\#($0)"# } ?? ""
        return #"{"topic":"org.example/dev-1/things/live/commands/\#(action)","headers":\#(headers),"path":"\#(path)"\#(valueField)}"#
    }

    static let cases: [Case] = {
        var cases: [Case] = []
        for action in ["create", "modify", "merge", "delete", "retrieve"] {
            for (path, value) in resources where action != "create" || path == "/" {
                // A create names no thingId: the thing is the topic's.
                let requestValue: String? = switch action {
                case "create": #"{"attributes":{"a":1}}"#
                case "modify", "merge": value
                default: nil
                }
                let request = request(action, path, value: requestValue)
                for status in statuses {
                    for payload in ["", value] {
                        let code = status.flatMap(Int.init)
                        let expected: String? = if let code, code >= 400 {
                            "bridge:device.error"
                        } else if action == "retrieve" && payload.isEmpty {
                            "bridge:device.reply.invalid"
                        } else {
                            nil
                        }
                        cases.append(Case(
                            name: "\(action) \(path) status \(status ?? "absent") \(payload.isEmpty ? "without" : "with") payload",
                            request: request, status: status, payload: payload, expectedError: expected))
                    }
                }
            }
        }
        for path in ["/inbox/messages/ask", "/features/f/inbox/messages/ask"] {
            let request = #"{"topic":"org.example/dev-1/things/live/messages/ask","headers":{"correlation-id":"c-1","content-type":"application/json"},"path":"\#(path)","value":{"q":1}}"#
            for status in statuses {
                for payload in ["", "42", "hello"] {
                    cases.append(Case(name: "message \(path) status \(status ?? "absent") payload '\(payload)'",
                                      request: request, status: status, payload: payload))
                }
            }
        }
        // Answers that do not fit the request: Ditto refuses them as sent (see `unfitAsSent`), so the requester
        // gets the bridge's error instead.
        let unfit: [(String, String, String?, String)] = [
            ("retrieve /features/f answered 42", request("retrieve", "/features/f", value: nil), "200", "42"),
            ("retrieve /attributes answered [1,2]", request("retrieve", "/attributes", value: nil), "200", "[1,2]"),
            ("modify /features/f answered 201 42", request("modify", "/features/f", value: #"{"properties":{}}"#), "201", "42"),
            ("create / answered 201 without thingId", request("create", "/", value: "{}"), "201", #"{"attributes":{}}"#),
            ("create / answered 201 with another thingId", request("create", "/", value: "{}"), "201",
             #"{"thingId":"org.example:someone-else"}"#),
            ("retrieve / answered with another thingId", request("retrieve", "/", value: nil), "200",
             #"{"thingId":"org.example:someone-else"}"#),
            ("modify /features/f/definition answered 201 [\"bad\"]",
             request("modify", "/features/f/definition", value: #"["a:b:1"]"#), "201", #"["bad"]"#),
            ("retrieve /policyId answered \"bad\"", request("retrieve", "/policyId", value: nil), "200", #""bad""#),
            // Ditto reads integers as 64-bit (json.invalid beyond); the bridge neither sends it nor makes it a string.
            ("retrieve /attributes/serial answered 12345678901234567890",
             request("retrieve", "/attributes/serial", value: nil), "200", "12345678901234567890"),
            ("retrieve /features/f answered a property beyond 64 bits",
             request("retrieve", "/features/f", value: nil), "200", #"{"properties":{"n":-9223372036854775809}}"#),
        ]
        for (name, request, status, payload) in unfit {
            cases.append(Case(name: "unfit: \(name)", request: request, status: status, payload: payload,
                              expectedError: "bridge:device.reply.invalid"))
        }
        return cases
    }()

    /// What the bridge sent for the unfit answers before it checked them (the answer's value as it came), with the
    /// error Ditto gives, or the other thing Ditto takes it for.
    static let unfitAsSent: [(name: String, message: String)] = [
        ("retrieve /features/f answered 42",
         #"{"topic":"org.example/dev-1/things/live/commands/retrieve","headers":{"correlation-id":"c-1"},"path":"/features/f","value":42,"status":200}"#),
        ("retrieve /attributes answered [1,2]",
         #"{"topic":"org.example/dev-1/things/live/commands/retrieve","headers":{"correlation-id":"c-1"},"path":"/attributes","value":[1,2],"status":200}"#),
        ("modify /features/f answered 201 42",
         #"{"topic":"org.example/dev-1/things/live/commands/modify","headers":{"correlation-id":"c-1"},"path":"/features/f","value":42,"status":201}"#),
        ("create / answered 201 without thingId",
         #"{"topic":"org.example/dev-1/things/live/commands/create","headers":{"correlation-id":"c-1"},"path":"/","value":{"attributes":{}},"status":201}"#),
        ("create / answered 201 with another thingId",
         #"{"topic":"org.example/dev-1/things/live/commands/create","headers":{"correlation-id":"c-1"},"path":"/","value":{"thingId":"org.example:someone-else"},"status":201}"#),
        ("modify /features/f/definition answered 201 [\"bad\"]",
         #"{"topic":"org.example/dev-1/things/live/commands/modify","headers":{"correlation-id":"c-1"},"path":"/features/f/definition","value":["bad"],"status":201}"#),
        ("retrieve /policyId answered \"bad\"",
         #"{"topic":"org.example/dev-1/things/live/commands/retrieve","headers":{"correlation-id":"c-1"},"path":"/policyId","value":"bad","status":200}"#),
    ]

    struct Verdict {
        var message: JSONValue
        var ok: Bool
        var error: String?
        var entity: String?
        var correlationID: String?
    }

    static let fixtureURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("DittoProtocolTests/Resources/responses/response-matrix.jsonl")

    static func fixture() throws -> [String: Verdict] {
        let text = try String(contentsOf: fixtureURL, encoding: .utf8)
        var verdicts: [String: Verdict] = [:]
        for line in text.split(separator: "\n") {
            let row = try #require(try JSON.parse(Array(line.utf8)).objectValue)
            let ditto = try #require(row["ditto"]?.objectValue)
            let name = try #require(row["name"]?.stringValue)
            verdicts[name] = Verdict(message: try #require(row["message"]), ok: ditto["ok"]?.boolValue == true,
                                     error: ditto["error"]?.stringValue, entity: ditto["entity"]?.stringValue,
                                     correlationID: ditto["correlationId"]?.stringValue)
        }
        return verdicts
    }

    func response(to testCase: Case, mapper: DownlinkMapper) throws -> Envelope {
        let request = try envelope(testCase.request)
        let route = try mapper.route(request)
        var pairs: [(String, String)] = []
        if let status = testCase.status { pairs.append(("status", status)) }
        let answer = publication("devices/dev-1/reply", testCase.payload, properties: PublishProperties(
            correlationData: bytes("c-1"), userProperties: userProperties(pairs)))
        let reply = try #require(mapper.reply(from: answer))
        return try mapper.response(to: request, route: route, reply: reply)
    }

    @Test func everyResponseIsOneDittoAcceptsForTheRequester() throws {
        let mapper = DownlinkMapper(configuration: try configuration(Self.yaml))
        let verdicts = try Self.fixture()
        var dump = ""
        var notInFixture: [String] = []
        var counts: [String: Int] = [:]
        for testCase in Self.cases {
            let built = try response(to: testCase, mapper: mapper)
            let message = try JSON.parse(built.encoded())
            dump += String(decoding: JSON.serialize(.object(["name": .string(testCase.name), "message": message])), as: UTF8.self) + "\n"
            // The bridge's own model agrees with Ditto without Java at hand.
            #expect(throws: Never.self, "\(testCase.name)") { try Envelope.decode(built.encoded()) }
            #expect(built.topic.thingID?.description == Self.thing, "\(testCase.name)")
            #expect(built.headers.correlationID == "c-1", "\(testCase.name)")
            #expect(built.error?.error == testCase.expectedError, "\(testCase.name): \(String(decoding: built.encoded(), as: UTF8.self))")
            guard let verdict = verdicts[testCase.name], verdict.message == message else {
                notInFixture.append(testCase.name)
                continue
            }
            #expect(verdict.ok, "\(testCase.name): Ditto refuses \(String(decoding: built.encoded(), as: UTF8.self)) with \(verdict.error ?? "")")
            #expect(verdict.entity == Self.thing, "\(testCase.name): Ditto takes it for \(verdict.entity ?? "no thing")")
            #expect(verdict.correlationID == "c-1", "\(testCase.name)")
            counts[built.topic.criterion == .errors ? "errors" : built.topic.criterion.rawValue, default: 0] += 1
        }
        if let path = ProcessInfo.processInfo.environment["RESPONSE_MATRIX_DUMP"] {
            try dump.write(toFile: path, atomically: true, encoding: .utf8)
        }
        #expect(notInFixture.isEmpty, "built messages not in the fixture (run them through the oracle): \(notInFixture)")
        #expect(Self.cases.count == 522)
        print("response matrix: \(Self.cases.count) responses, all accepted by Ditto: \(counts.sorted { $0.key < $1.key })")
    }

    /// The MQTT 3.1.1 ways of answering (the status as a reply topic level, or next to the value in a JSON reply)
    /// build the same responses as MQTT 5 for every command case, so the fixture's verdicts hold for them too.
    @Test(arguments: ["topic", "payload"])
    func mqtt311RepliesBuildTheSameResponses(_ mode: String) throws {
        let reply = mode == "topic"
            ? #"{ mode: topic, topic: "devices/{deviceId}/res/{correlationId}/{status}" }"#
            : #"{ mode: payload, topic: "devices/{deviceId}/answer", correlation-pointer: /id, status-pointer: /status }"#
        let mqtt311 = DownlinkMapper(configuration: try configuration("""
            connections: { device: { host: 127.0.0.1, mqtt-version: "3.1.1" } }
            defaults: { namespace: org.example }
            downlink:
              - name: commands
                match: { commands: { actions: [create, modify, merge, delete, retrieve] } }
                thing-id: "{namespace}:{deviceId}"
                topic: "devices/{deviceId}/commands/{correlationId}/{action}"
                reply: \(reply)
            """))
        let mqtt5 = DownlinkMapper(configuration: try configuration(Self.yaml))
        var compared = 0
        for testCase in Self.cases where testCase.request.contains("/commands/") {
            let request = try envelope(testCase.request)
            let route = try mqtt311.route(request)
            let answer: MQTTMessage
            if mode == "topic" {
                // A level that is no status stands for none.
                answer = publication("devices/dev-1/res/c-1/\(testCase.status ?? "none")", testCase.payload)
            } else {
                var document = "{\"id\":\"c-1\""
                if let status = testCase.status { document += ",\"status\":\(status)" }
                if !testCase.payload.isEmpty { document += ",\"value\":\(testCase.payload)" }
                answer = publication("devices/dev-1/answer", document + "}")
            }
            let reply = try #require(mqtt311.reply(from: answer), "\(testCase.name)")
            let built = try mqtt311.response(to: request, route: route, reply: reply)
            let reference = try response(to: testCase, mapper: mqtt5)
            #expect(try JSON.parse(built.encoded()) == (try JSON.parse(reference.encoded())), "\(testCase.name)")
            compared += 1
        }
        #expect(compared == 474)
    }

    /// docs/CONFIG.md: a status must be an integer 100–599, spaces around it ignored; anything else is no status,
    /// so the rule's `default-status` or the action's usual one applies.
    @Test(arguments: [(" 404 ", 404), ("404", 404), ("abc", 200), ("999", 200), ("42", 200), ("", 200), ("-1", 200),
                      ("4 04", 200), ("404.0", 200)] as [(String, Int)])
    func statusUserProperty(_ status: String, _ expected: Int) throws {
        let mapper = DownlinkMapper(configuration: try configuration(Self.yaml))
        let response = try response(to: Case(
            name: "", request: #"{"topic":"org.example/dev-1/things/live/messages/ask","headers":{"correlation-id":"c-1"},"path":"/inbox/messages/ask","value":1}"#,
            status: status, payload: "1"), mapper: mapper)
        #expect(response.status == expected)
        let modify = try self.response(to: Case(name: "", request: Self.request("modify", "/attributes/a", value: "1"),
                                                status: status, payload: ""), mapper: mapper)
        #expect(modify.status == (expected == 404 ? 404 : 204))
    }

    /// The unfit answers as the bridge used to send them: Ditto refuses each, or takes it for another thing, and the
    /// bridge's model says so too.
    @Test func unfitAnswersAsSentAreNotResponsesOfTheRequestedThing() throws {
        let verdicts = try Self.fixture()
        for (name, text) in Self.unfitAsSent {
            let verdict = try #require(verdicts["as sent: \(name)"], "\(name)")
            #expect(verdict.message == (try JSON.parse(Array(text.utf8))))
            #expect(!verdict.ok || verdict.entity != Self.thing, "\(name)")
            let refusedHere: Bool
            do {
                let decoded = try Envelope.decode(Array(text.utf8))
                refusedHere = decoded.valueThingID.map { $0 != Self.thing } ?? false
            } catch {
                refusedHere = true
                if let code = verdict.error { #expect(error.error == code, "\(name)") }
            }
            #expect(refusedHere, "\(name)")
        }
    }
}
