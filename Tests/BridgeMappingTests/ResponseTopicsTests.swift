import BridgeConfig
import BridgeMapping
import Testing

/// `response-topics`: which MQTT 5 response topics a device may name for the answers to its requests.
struct ResponseTopicsTests {
    static func rule(_ ruleYAML: String, device: String = "") -> String {
        """
        connections:
          device: { host: 127.0.0.1\(device) }
        defaults: { namespace: org.example }
        uplink:
        \(ruleYAML)
        """
    }

    static func loadRule(_ ruleYAML: String, device: String = "") throws -> UplinkRule {
        try #require(try configuration(rule(ruleYAML, device: device)).uplink.first)
    }

    static let requests = """
          - name: requests
            topic: "devices/{deviceId}/requests/{subject}"
            thing-id: "{namespace}:{deviceId}"
            message: { subject: "{subject}", response: true }
        """

    @Test func theDefaultIsTheDevicesOwnTopicSpace() throws {
        let rule = try Self.loadRule(Self.requests)
        #expect(rule.responseTopics.description == "devices/{deviceId}/#")
        let variables = ["deviceId": "asker", "subject": "x", "namespace": "org.example"]
        func admits(_ topic: String) -> Bool {
            rule.responseTopics.admits(topic, requestTopic: "devices/asker/requests/x", variables: variables)
        }
        #expect(admits("devices/asker/answers"))
        #expect(admits("devices/asker/requests/x/answer"))
        #expect(admits("devices/asker"))  // `#` also matches its parent level, as in MQTT
        #expect(!admits("devices/victim/inbox/pwned"))
        #expect(!admits("devices/askerx/answers"))
        #expect(!admits("devices"))
        #expect(!admits("other/asker/answers"))
        #expect(!admits("/devices/asker/answers"))
        // Not topic names: a response topic is published to.
        #expect(!admits("devices/asker/+"))
        #expect(!admits("devices/asker/#"))
        #expect(!admits(""))
        #expect(!admits("devices/asker/\u{0}"))
    }

    @Test func aWildcardLevelBeforeTheDeviceIsTheRequestsOwnValue() throws {
        let rule = try Self.loadRule("""
              - name: tenants
                topic: "site/+/{deviceId}/ask"
                thing-id: "org.example:{deviceId}"
                message: { subject: ask, response: true }
            """)
        #expect(rule.responseTopics.description == "site/+/{deviceId}/#")
        #expect(rule.responseTopics.admits("site/t1/d/answers", requestTopic: "site/t1/d/ask", variables: ["deviceId": "d"]))
        #expect(!rule.responseTopics.admits("site/t2/d/answers", requestTopic: "site/t1/d/ask", variables: ["deviceId": "d"]))
    }

    @Test func theLastLevelWithTheDeviceCounts() throws {
        let rule = try Self.loadRule("""
              - name: nested
                topic: "site/{deviceId}/dev-{deviceId}/ask/{subject}"
                thing-id: "org.example:{deviceId}"
                message: { subject: "{subject}", response: true }
            """)
        #expect(rule.responseTopics.description == "site/{deviceId}/dev-{deviceId}/#")
        let request = "site/d/dev-d/ask/s"
        #expect(rule.responseTopics.admits("site/d/dev-d/r", requestTopic: request, variables: [:]))
        #expect(!rule.responseTopics.admits("site/d/r", requestTopic: request, variables: [:]))

        let rest = try Self.loadRule("""
              - name: rest
                topic: "ask/{deviceId...}"
                thing-id: "org.example:x"
                message: { subject: ask, response: true }
            """)
        #expect(rest.responseTopics.description == "ask/{deviceId}/#")
        #expect(rest.responseTopics.admits("ask/a/b/answers", requestTopic: "ask/a/b", variables: [:]))
        #expect(!rest.responseTopics.admits("ask/a/c", requestTopic: "ask/a/b", variables: [:]))
    }

    @Test func configuredFiltersAreTemplatesOverTheCaptures() throws {
        let rule = try Self.loadRule(Self.requests + """

                response-topics: ["answers/{namespace}/{deviceId}/+", "inbox/{thingName}", "devices/{deviceId}/#"]
            """)
        let variables = ["deviceId": "asker", "subject": "x", "namespace": "org.example", "thingName": "asker"]
        func admits(_ topic: String) -> Bool {
            rule.responseTopics.admits(topic, requestTopic: "devices/asker/requests/x", variables: variables)
        }
        #expect(admits("answers/org.example/asker/1"))
        #expect(admits("inbox/asker"))
        #expect(admits("devices/asker/a/b"))
        #expect(!admits("answers/org.example/victim/1"))
        #expect(!admits("answers/org.example/asker"))
        #expect(!admits("answers/org.example/asker/1/2"))
        #expect(!admits("inbox/asker/more"))
        #expect(!admits("devices/victim/inbox/pwned"))
    }

    @Test("A captured value is one level compared as text: '/', '+', '#' or an empty value widen nothing")
    func capturedValuesCannotInjectWildcards() throws {
        let rule = try Self.loadRule(Self.requests + """

                response-topics: ["answers/{deviceId}"]
            """)
        for value in ["+", "#", "a/b", "", "\u{0}"] {
            for topic in ["answers/x", "answers/+", "answers/#", "answers/a/b", "answers/", "answers"] {
                #expect(!rule.responseTopics.admits(topic, requestTopic: "devices/\(value)/requests/s",
                                                    variables: ["deviceId": value]), "\(value) \(topic)")
            }
        }
    }

    @Test func wildcardsDoNotMatchDollarTopics() throws {
        let rule = try Self.loadRule(Self.requests + """

                response-topics: ["#", "+/x"]
            """)
        #expect(rule.responseTopics.admits("a/x", requestTopic: "devices/d/requests/s", variables: [:]))
        #expect(!rule.responseTopics.admits("$SYS/x", requestTopic: "devices/d/requests/s", variables: [:]))
        #expect(!rule.responseTopics.admits("$share/x", requestTopic: "devices/d/requests/s", variables: [:]))
    }

    @Test func anEmptyListAdmitsNothing() throws {
        let rule = try Self.loadRule(Self.requests + "\n    response-topics: []")
        #expect(!rule.responseTopics.admits("devices/d/answers", requestTopic: "devices/d/requests/s",
                                            variables: ["deviceId": "d"]))
    }

    @Test func withoutADeviceIDNoResponseTopicIsAdmitted() throws {
        let rule = try Self.loadRule("""
              - name: sensors
                topic: "sensors/{name}/ask"
                thing-id: "org.example:{name}"
                message: { subject: ask }
            """)
        #expect(!rule.responseTopics.admits("sensors/a/answers", requestTopic: "sensors/a/ask", variables: ["name": "a"]))
        let passthrough = try Self.loadRule("""
              - name: native
                topic: "native/{name}"
                thing-id: "org.example:{name}"
                passthrough: true
            """)
        #expect(!passthrough.responseTopics.admits("native/a/r", requestTopic: "native/a", variables: ["name": "a"]))
    }
}
