import BridgeConfig
import BridgeMapping
import DittoProtocol
import MQTT
import Testing

/// The header matrix of issue 5: each mapping in both directions, MQTT 5 and 3.1.1.
@Suite struct HeaderMapperTests {
    static let yaml = """
        defaults: { namespace: org.example }
        headers:
          allow: ["x-*", "myapp-*"]
          deny: ["x-secret-*"]
          rename: { x-old: x-new }
        uplink:
          - name: messages
            topic: "devices/{deviceId}/messages/{subject}"
            thing-id: "{namespace}:{deviceId}"
            message: { subject: "{subject}" }
            headers:
              static: { x-gateway: "gw-{deviceId}", x-thing: "{thingId}", x-echo: "{header:x-trace-id}" }
          - name: own-policy
            topic: "devices/{deviceId}/other/{subject}"
            thing-id: "{namespace}:{deviceId}"
            message: { subject: "{subject}" }
            headers: { allow: ["y-*"], trace-context: false }
        downlink:
          - name: inbox
            match: { messages: { subject: "*" } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/inbox/{subject}"
        """

    /// No header block: the standard policy (everything custom crosses).
    static let openYAML = """
        defaults: { namespace: org.example }
        uplink:
          - name: messages
            topic: "devices/{deviceId}/messages/{subject}"
            thing-id: "{namespace}:{deviceId}"
            message: { subject: "{subject}" }
        downlink:
          - name: inbox
            match: { messages: { subject: "*" } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/inbox/{subject}"
        """

    static let noTraceYAML = """
        defaults: { namespace: org.example }
        headers: { trace-context: false }
        uplink:
          - name: messages
            topic: "devices/{deviceId}/messages/{subject}"
            thing-id: "{namespace}:{deviceId}"
            message: { subject: "{subject}" }
        downlink:
          - name: inbox
            match: { messages: { subject: "*" } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/inbox/{subject}"
        """

    func mapper(_ yaml: String = yaml) throws -> HeaderMapper {
        HeaderMapper(policy: try configuration(yaml).uplink[0].headers)
    }

    func uplink(_ properties: PublishProperties, yaml: String = yaml, request: Bool = false,
                variables: [String: String] = ["deviceId": "dev-1", "thingId": "org.example:dev-1"]) throws -> DittoHeaders {
        try mapper(yaml).dittoHeaders(properties: properties, variables: variables, request: request,
                                      generateCorrelationID: { "generated-id" })
    }

    /// A live message from Ditto with these headers, published to the device by the downlink mapper.
    func downlink(_ headers: [(String, String)], yaml: String = yaml) throws -> MQTTMessage {
        let mapper = DownlinkMapper(configuration: try configuration(yaml))
        var object = JSONObject()
        for (name, value) in headers { object[name] = .string(value) }
        let request = Envelope(topic: .liveMessage(thingID: try ThingID("org.example:dev-1"), subject: "hello"),
                               headers: DittoHeaders(json: object), path: "/inbox/messages/hello", value: .string("hi"))
        let route = try mapper.route(request)
        return try mapper.devicePublication(for: request, route: route, messageExpiry: nil)
    }

    // MARK: correlation data <-> correlation-id

    @Test func correlationDataBecomesCorrelationIDAndBack() throws {
        let headers = try uplink(PublishProperties(correlationData: bytes("req-17")))
        #expect(headers.correlationID == "req-17")
        let published = try downlink([("correlation-id", "req-17")])
        #expect(published.properties.correlationData == bytes("req-17"))
    }

    @Test(arguments: [
        [0xFF, 0x00, 0x10, 0x80] as [UInt8],
        [0x00],
        Array("line\nbreak".utf8),
        Array("base64:looks-encoded".utf8),
        Array("tab\there".utf8),
    ])
    func binaryCorrelationDataSurvivesARoundTrip(_ data: [UInt8]) throws {
        let headers = try uplink(PublishProperties(correlationData: data))
        let id = try #require(headers.correlationID)
        #expect(id.hasPrefix(CorrelationID.base64Prefix))
        #expect(id.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value < 0x7F })
        #expect(CorrelationID.correlationData(for: id) == data)
        // And through Ditto and back to the device.
        let published = try downlink([("correlation-id", id)])
        #expect(published.properties.correlationData == data)
    }

    @Test func utf8CorrelationDataIsKeptAsText() {
        #expect(CorrelationID.fromCorrelationData(bytes("Grüße-東京-1")) == "Grüße-東京-1")
        #expect(CorrelationID.correlationData(for: "Grüße-東京-1") == bytes("Grüße-東京-1"))
        // Not valid base64 after the prefix: sent as the text it is.
        #expect(CorrelationID.correlationData(for: "base64:!!!") == bytes("base64:!!!"))
    }

    @Test func missingOrEmptyCorrelationDataGetsAGeneratedID() throws {
        #expect(try uplink(PublishProperties(correlationData: [])).correlationID == "generated-id")
        #expect(try uplink(PublishProperties()).correlationID == "generated-id")
        #expect(!CorrelationID.generate().isEmpty)
        #expect(CorrelationID.generate() != CorrelationID.generate())
        // A UUID in form: 8-4-4-4-12 lower-case hex digits, version 4; the last group counts up.
        let ids = (0..<20).map { _ in CorrelationID.generate() }
        for id in ids {
            let groups = id.split(separator: "-", omittingEmptySubsequences: false)
            #expect(groups.map(\.count) == [8, 4, 4, 4, 12], "\(id)")
            #expect(id.allSatisfy { $0 == "-" || $0.isHexDigit && !$0.isUppercase }, "\(id)")
            #expect(groups.count == 5 && groups[2].first == "4", "\(id)")
        }
        let counters = ids.compactMap { UInt64($0.suffix(12), radix: 16) }
        #expect(counters.count == 20 && zip(counters, counters.dropFirst()).allSatisfy { $0 < $1 })
    }

    @Test func aCorrelationIDUserPropertyDoesNotReplaceCorrelationData() throws {
        let headers = try uplink(PublishProperties(
            correlationData: bytes("from-data"), userProperties: userProperties([("x-a", "1"), ("correlation-id", "fake")])))
        #expect(headers.correlationID == "from-data")
    }

    // MARK: content type, payload format indicator, expiry

    @Test func contentTypeCrossesBothWays() throws {
        let headers = try uplink(PublishProperties(contentType: "application/vnd.acme+json"))
        #expect(headers.contentType == "application/vnd.acme+json")
        let published = try downlink([("correlation-id", "c"), ("content-type", "text/plain")])
        #expect(published.properties.contentType == "text/plain")
        #expect(published.properties.userProperties.isEmpty)
    }

    @Test func payloadFormatIndicatorMarksTextPayloadsToTheDevice() throws {
        let published = try downlink([("correlation-id", "c"), ("content-type", "text/plain")])
        #expect(published.properties.payloadFormatIndicator == 1)
    }

    @Test func messageExpiryBecomesTimeoutOnlyForRequests() throws {
        let properties = PublishProperties(messageExpiryInterval: 30)
        #expect(try uplink(properties, request: true).timeout?.duration == .seconds(30))
        #expect(try uplink(properties, request: false).timeout == nil)
        // Ditto's maximum live timeout is 60 s.
        #expect(try uplink(PublishProperties(messageExpiryInterval: 3600), request: true).timeout?.duration == .seconds(60))
        #expect(try uplink(PublishProperties(messageExpiryInterval: 0), request: true).timeout == nil)
    }

    @Test func timeoutBecomesMessageExpiryToTheDevice() throws {
        let properties = HeaderMapper(policy: try configuration(Self.yaml).downlink[0].headers)
            .deviceProperties(headers: DittoHeaders([("timeout", "5s")]), messageExpiry: 5)
        #expect(properties.messageExpiryInterval == 5)
        #expect(properties.userProperties.isEmpty)
    }

    // MARK: user properties <-> custom headers

    @Test func allowDenyAndRenameApplyFromTheDevice() throws {
        let headers = try uplink(PublishProperties(userProperties: userProperties([
            ("x-keep", "1"), ("myapp-id", "2"), ("x-secret-key", "3"), ("other", "4"), ("x-old", "5"),
        ])))
        #expect(headers["x-keep"] == "1")
        #expect(headers["myapp-id"] == "2")
        #expect(headers["x-secret-key"] == nil)
        #expect(headers["other"] == nil)
        #expect(headers["x-old"] == nil)
        #expect(headers["x-new"] == "5")
    }

    @Test func allowDenyAndRenameApplyToTheDevice() throws {
        let published = try downlink([
            ("correlation-id", "c"), ("x-keep", "1"), ("myapp-id", "2"), ("x-secret-key", "3"), ("other", "4"),
            ("x-old", "5"),
        ])
        #expect(published.properties.userProperties == userProperties([
            ("x-keep", "1"), ("myapp-id", "2"), ("x-new", "5"),
        ]))
    }

    @Test func duplicateUserPropertiesKeepTheLaterValue() throws {
        let headers = try uplink(PublishProperties(userProperties: userProperties([
            ("x-a", "first"), ("x-b", "b"), ("x-a", "second"),
        ])))
        #expect(headers["x-a"] == "second")
        #expect(headers.names.filter { $0.lowercased() == "x-a" }.count == 1)
    }

    @Test func caseDifferentNamesGiveOneValueAndKeepTheSpelling() throws {
        let single = try uplink(PublishProperties(userProperties: userProperties([("X-Trace-Id", "t")])))
        #expect(single.names.contains("X-Trace-Id"))
        #expect(single["x-trace-id"] == "t")

        let both = try uplink(PublishProperties(userProperties: userProperties([("X-Mode", "a"), ("x-mode", "b")])))
        #expect(both.names.filter { $0.lowercased() == "x-mode" } == ["x-mode"])
        #expect(both["X-MODE"] == "b")

        let published = try downlink([("correlation-id", "c"), ("X-Mode", "A")])
        #expect(published.properties.userProperties == userProperties([("X-Mode", "A")]))
    }

    @Test func nonASCIIValuesCrossUnchanged() throws {
        let value = "Grüße aus Zürich, 東京 🌡️"
        let headers = try uplink(PublishProperties(userProperties: userProperties([("x-place", value)])))
        #expect(headers["x-place"] == value)
        let decoded = DittoHeaders(json: headers.json)
        #expect(decoded["x-place"] == value)
        let published = try downlink([("correlation-id", "c"), ("x-place", value)])
        #expect(published.properties.userProperties == userProperties([("x-place", value)]))
    }

    @Test func aRulesOwnListsReplaceTheGlobalOnes() throws {
        let policy = try configuration(Self.yaml).uplink[1].headers
        let headers = try HeaderMapper(policy: policy).dittoHeaders(
            properties: PublishProperties(userProperties: userProperties([
                ("y-a", "1"), ("x-keep", "2"), ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            ])),
            generateCorrelationID: { "id" })
        #expect(headers["y-a"] == "1")
        #expect(headers["x-keep"] == nil)
        #expect(headers["traceparent"] == nil)
        // Renames merge: the global one still applies where allowed.
        #expect(policy.renamed("x-old") == "x-new")
    }

    // MARK: trace context

    @Test func traceContextCrossesByDefaultEvenWhenAllowDoesNotListIt() throws {
        let trace = [("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), ("tracestate", "a=b")]
        let headers = try uplink(PublishProperties(userProperties: userProperties(trace)))
        #expect(headers["traceparent"] == trace[0].1)
        #expect(headers["tracestate"] == "a=b")
        let published = try downlink([("correlation-id", "c")] + trace)
        #expect(published.properties.userProperties == userProperties(trace))
    }

    @Test func traceContextStopsWithTraceContextFalse() throws {
        let trace = [("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), ("tracestate", "a=b")]
        let headers = try uplink(PublishProperties(userProperties: userProperties(trace + [("x-a", "1")])),
                                 yaml: Self.noTraceYAML)
        #expect(headers["traceparent"] == nil)
        #expect(headers["tracestate"] == nil)
        #expect(headers["x-a"] == "1")
        let published = try downlink([("correlation-id", "c"), ("x-a", "1")] + trace, yaml: Self.noTraceYAML)
        #expect(published.properties.userProperties == userProperties([("x-a", "1")]))
    }

    // MARK: static headers

    @Test func staticHeadersRenderTheirTemplates() throws {
        let headers = try uplink(PublishProperties(userProperties: userProperties([("x-trace-id", "t-9")])))
        #expect(headers["x-gateway"] == "gw-dev-1")
        #expect(headers["x-thing"] == "org.example:dev-1")
        #expect(headers["x-echo"] == "t-9")
    }

    @Test func staticHeadersReplaceWhatTheDeviceSent() throws {
        let headers = try uplink(PublishProperties(userProperties: userProperties([("X-Gateway", "forged")])))
        #expect(headers["x-gateway"] == "gw-dev-1")
    }

    @Test func aStaticHeaderNamingAnAbsentHeaderIsLeftOut() throws {
        let headers = try uplink(PublishProperties())
        #expect(headers["x-echo"] == nil)
        #expect(headers["x-gateway"] == "gw-dev-1")
    }

    // MARK: reserved headers

    @Test(arguments: reservedSamples)
    func reservedHeadersFromTheDeviceAreDropped(_ name: String) throws {
        let headers = try uplink(PublishProperties(userProperties: userProperties([(name, "live"), ("x-a", "1")])),
                                 yaml: Self.openYAML)
        #expect(headers[name] == nil)
        #expect(headers["x-a"] == "1")
    }

    @Test(arguments: reservedSamples)
    func reservedHeadersFromDittoDoNotReachTheDevice(_ name: String) throws {
        let mapper = HeaderMapper(policy: try configuration(Self.openYAML).downlink[0].headers)
        let headers = DittoHeaders([(name, "live"), ("x-a", "1"), ("correlation-id", "c")])
        #expect(mapper.customHeaders(headers).map(\.name) == ["x-a"])
        let properties = mapper.deviceProperties(headers: headers)
        #expect(properties.userProperties == userProperties([("x-a", "1")]))
    }

    @Test func dittoRequestVocabularyIsNotAUserProperty() throws {
        let published = try downlink([
            ("correlation-id", "c"), ("response-required", "true"), ("requested-acks", "[\"edge:answered\"]"),
            ("timeout", "5s"), ("content-type", "application/json"), ("x-a", "1"),
        ], yaml: Self.openYAML)
        #expect(published.properties.userProperties == userProperties([("x-a", "1")]))
    }

    // MARK: Ditto's header rules

    @Test func oversizeHeadersAreRejectedWithDittos431() throws {
        let big = String(repeating: "x", count: 6_000)
        let mapper = try mapper(Self.openYAML)
        let error = mappingError {
            _ = try mapper.dittoHeaders(
                properties: PublishProperties(userProperties: userProperties([("x-big", big)])),
                generateCorrelationID: { "id" })
        }
        #expect(error?.kind == .invalidProtocol)
        #expect(error?.dittoError.status == 431)
        #expect(error?.dittoError.error == "headers.too.large")
    }

    @Test func headersJustUnderTheLimitPass() throws {
        let value = String(repeating: "y", count: 4_000)
        let headers = try uplink(PublishProperties(userProperties: userProperties([("x-big", value)])), yaml: Self.openYAML)
        #expect(headers["x-big"] == value)
    }

    @Test(arguments: [("timeout", "abc"), ("dry-run", "maybe"), ("allow-policy-lockout", "yes"),
                      ("put-metadata", "{\"not\": \"a list\"}")])
    func invalidKnownHeaderValuesAreDittos400(_ header: (String, String)) throws {
        let mapper = try mapper(Self.openYAML)
        let error = mappingError {
            // A request: the bridge acts on (and so checks) its `timeout`; other known headers cross.
            _ = try mapper.dittoHeaders(
                properties: PublishProperties(userProperties: userProperties([header])), request: true,
                generateCorrelationID: { "id" })
        }
        #expect(error?.kind == .invalidProtocol)
        #expect(error?.dittoError.status == 400)
        #expect(error?.dittoError.error == "header.invalid" || error?.dittoError.error == "acknowledgement:label.invalid")
    }

    @Test func validKnownHeaderValuesPass() throws {
        let headers = try uplink(PublishProperties(userProperties: userProperties([
            ("dry-run", "false"), ("put-metadata", "[]"), ("timeout", "250ms"),
        ])), yaml: Self.openYAML, request: true)
        #expect(headers["dry-run"] == "false")
        #expect(headers["put-metadata"] == "[]")
        #expect(headers.timeout?.duration == .milliseconds(250))
    }

    /// Issue #22, item 4: Ditto's request headers are the bridge's; from a device they never reach Ditto (on a
    /// request the bridge reads `timeout` and writes its own).
    @Test(arguments: [false, true])
    func headersTheBridgeOwnsDoNotCrossFromDevices(request: Bool) throws {
        let owned = ReservedHeaders.managedNames.subtracting(["correlation-id", "content-type"]).sorted()
        let properties = PublishProperties(userProperties: userProperties(
            owned.map { ($0, $0 == "timeout" ? "2s" : "true") } + [("Response-Required", "false"), ("x-kept", "k")]))
        let headers = try uplink(properties, yaml: Self.openYAML, request: request)
        for name in owned where !(request && name == "timeout") {
            #expect(headers[name] == nil, "\(name) crossed")
        }
        #expect(headers["x-kept"] == "k")
        #expect(headers.timeout?.duration == (request ? .seconds(2) : nil))
    }
}
