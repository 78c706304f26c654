import BridgeConfig
import BridgeMapping
import DittoProtocol
import Testing

/// The Ditto errors a requester gets when the bridge cannot deliver: valid Ditto Protocol, right statuses.
@Suite struct ErrorTests {
    let request: Envelope

    init() throws {
        request = try envelope(#"{"topic":"org.example/d/things/live/messages/reboot","headers":{"correlation-id":"c-1"},"path":"/inbox/messages/reboot"}"#)
    }

    @Test(arguments: ["offline", "broker", "delivery", "pending", "timeout"])
    func bridgeErrorsAreValidErrorResponses(_ which: String) throws {
        let (error, status): (DittoError, Int) = switch which {
        case "offline": (BridgeErrors.deviceOffline(try ThingID("org.example:d")), 503)
        case "broker": (BridgeErrors.deviceBrokerUnavailable(), 503)
        case "delivery": (BridgeErrors.deliveryFailed("not authorized"), 503)
        case "pending": (BridgeErrors.tooManyPendingRequests(1000), 503)
        default: (BridgeErrors.deviceTimeout(.milliseconds(1500)), 408)
        }
        #expect(error.status == status)
        let response = try redecoded(Envelope.errorResponse(to: request, error: error))
        #expect(response.topic.description == "org.example/d/things/live/errors")
        #expect(response.headers.correlationID == "c-1")
        #expect(response.error == error)
    }

    @Test func deviceTimeoutNamesTheMilliseconds() {
        #expect(BridgeErrors.deviceTimeout(.milliseconds(1500)).message == "The Command reached the specified timeout of 1500ms.")
        #expect(BridgeErrors.deviceTimeout(.seconds(60)).error == "command.timeout")
    }

    @Test(arguments: [
        (MappingError.Kind.noRule, 404), (.payloadTooLarge, 413), (.invalidPayload, 400), (.invalidIdentifier, 400),
        (.thingMismatch, 400), (.invalidProtocol, 400), (.template, 400),
    ])
    func mappingErrorsHaveDittoStatuses(_ kind: MappingError.Kind, _ status: Int) throws {
        let error = MappingError(kind, "why")
        #expect(error.dittoError.status == status)
        #expect(error.description == "\(kind.rawValue): why")
        try redecoded(Envelope.errorResponse(to: request, error: error.dittoError))
    }

    @Test func aProtocolErrorKeepsDittosOwnError() {
        let error = MappingError(protocolError: .headersTooLarge(limit: 5120))
        #expect(error.kind == .invalidProtocol)
        #expect(error.dittoError.status == 431)
        #expect(error.dittoError.error == "headers.too.large")
    }
}
