import BridgeConfig
import BridgeMapping
import DittoProtocol
import MQTT
import Testing

/// Requests whose headers Ditto would refuse (issue 10, items 4 and 9): refused with Ditto's 431, the device
/// that asked hears back, and no response the bridge builds for Ditto exceeds Ditto's header limit.
@Suite struct RequestLimitTests {
    static let bigID = String(repeating: "c", count: 10_000)

    var uplink: UplinkMapper {
        get throws { UplinkMapper(configuration: try configuration(UplinkMapperTests.yaml)) }
    }

    @Test func aDeviceRequestWithATenKilobyteCorrelationIDGetsA431() throws {
        var properties = PublishProperties()
        properties.responseTopic = "devices/d/answers"
        properties.correlationData = Array(Self.bigID.utf8)
        let message = publication("devices/d/ask/time", "{}", properties: properties)
        let mapper = try uplink
        let error = try #require(mappingError { _ = try mapper.map(message, environment: fixedEnvironment) })
        #expect(error.kind == .invalidProtocol)
        #expect(error.dittoError.status == 431)
        #expect(error.dittoError.error == "headers.too.large")

        let answer = try #require(mapper.errorAnswer(to: message, error: error))
        #expect(answer.topic == "devices/d/answers")
        #expect(answer.properties.correlationData == Array(Self.bigID.utf8))
        #expect(answer.properties.userProperties.contains { $0.name == "status" && $0.value == "431" })
        let body = try JSON.parse(answer.payload)
        #expect(body.objectValue?["error"] == "headers.too.large")
    }

    @Test func aDeviceRequestWithHeadersOverFiveKilobytesGetsA431() throws {
        var properties = PublishProperties()
        properties.responseTopic = "devices/d/answers"
        properties.correlationData = Array("q-1".utf8)
        properties.userProperties = userProperties([("x-big", String(repeating: "x", count: 6_000))])
        let message = publication("devices/d/ask/time", "{}", properties: properties)
        let mapper = try uplink
        let error = try #require(mappingError { _ = try mapper.map(message, environment: fixedEnvironment) })
        #expect(error.dittoError.status == 431)
        let answer = try #require(mapper.errorAnswer(to: message, error: error))
        #expect(answer.properties.correlationData == Array("q-1".utf8))
    }

    @Test func messagesThatAskNothingGetNoAnswer() throws {
        let mapper = try uplink
        let event = publication("devices/d/telemetry/t", "oops")
        let error = try #require(mappingError { _ = try mapper.map(event, environment: fixedEnvironment) })
        #expect(mapper.errorAnswer(to: event, error: error) == nil)
        let message = publication("devices/d/ask/time", "{")
        let messageError = try #require(mappingError { _ = try mapper.map(message, environment: fixedEnvironment) })
        #expect(mapper.errorAnswer(to: message, error: messageError) == nil)  // no response topic: nothing asked
    }

    @Test func aRefusedPassThroughRequestGetsDittosErrorEnvelope() throws {
        var properties = PublishProperties()
        properties.responseTopic = "devices/d/answers"
        properties.correlationData = Array("p-1".utf8)
        let json = #"{"topic":"org.example/d/things/twin/commands/delete","headers":{"correlation-id":"p-1"},"path":"/"}"#
        let message = publication("devices/d/ditto", json, properties: properties)
        let mapper = try uplink
        let error = try #require(mappingError { _ = try mapper.map(message, environment: fixedEnvironment) })
        let answer = try #require(mapper.errorAnswer(to: message, error: error))
        let response = try Envelope.decode(answer.payload)
        #expect(response.topic.criterion == .errors)
        #expect(response.status == 403)
        #expect(response.headers.correlationID == "p-1")
    }

    /// The runtime hands in the topic's kept route instead of having the rules matched again: same answers.
    @Test func anAnswerFromTheKeptRouteIsTheSame() throws {
        let mapper = try uplink
        var properties = PublishProperties()
        properties.responseTopic = "devices/d/answers"
        properties.correlationData = Array(Self.bigID.utf8)
        let json = #"{"topic":"org.example/d/things/twin/commands/delete","headers":{"correlation-id":"p-1"},"path":"/"}"#
        let messages = [
            publication("devices/d/ask/time", "{}", properties: properties),
            publication("devices/d/ditto", json, properties: properties),
            publication("devices/d/telemetry/t", "oops"),
        ]
        for message in messages {
            let error = try #require(mappingError { _ = try mapper.map(message, environment: fixedEnvironment) })
            let route = try #require(try mapper.route(topic: message.topic))
            #expect(mapper.errorAnswer(to: message, error: error, route: route)
                == mapper.errorAnswer(to: message, error: error), "\(message.topic)")
        }
        #expect(mapper.errorAnswer(to: messages[0], error: UplinkMapper.noRule("x"), route: nil) != nil)
    }

    @Test func dittoSideRequestsWithOversizedHeadersAreRefused() throws {
        let mapper = DownlinkMapper(configuration: try configuration(DownlinkMapperTests.yaml))
        let request = Envelope.liveCommandForTest(correlationID: Self.bigID)
        let error = try #require(mappingError { _ = try mapper.route(request) })
        #expect(error.dittoError.status == 431)
        // Its correlation id alone is over the limit: no response can reach the requester.
        #expect(Envelope.errorResponseWithinLimits(to: request, error: error.dittoError) == nil)
    }

    @Test func errorResponsesStayWithinDittosHeaderLimit() throws {
        let request = Envelope.liveCommandForTest(correlationID: "c-1")
        var extra = DittoHeaders()
        extra["x-big"] = String(repeating: "x", count: 6_000)
        let response = try #require(Envelope.errorResponseWithinLimits(
            to: request, error: DittoError.headersTooLarge(limit: DittoHeaders.sizeLimit), headers: extra))
        #expect(response.headers.correlationID == "c-1")
        #expect(response.headers["x-big"] == nil)
        try response.headers.checkSize()
        // Small headers are kept.
        var small = DittoHeaders()
        small["x-small"] = "1"
        let kept = try #require(Envelope.errorResponseWithinLimits(to: request, error: .timeout(milliseconds: 5), headers: small))
        #expect(kept.headers["x-small"] == "1")
    }
}

extension Envelope {
    static func liveCommandForTest(correlationID: String) -> Envelope {
        var headers = DittoHeaders()
        headers.correlationID = correlationID
        return Envelope(
            topic: TopicPath.liveCommandForTest, headers: headers, path: "/attributes/a", value: 1)
    }
}

extension TopicPath {
    static var liveCommandForTest: TopicPath {
        // A fixed, valid topic.
        (try? TopicPath(parsing: "org.example/dev-1/things/live/commands/modify")) ?? .fallbackErrors
    }
}
