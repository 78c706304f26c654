import Testing

@testable import DittoProtocol

@Suite struct ResponseMatchingTests {
    let thing = try! ThingID("org.acme:device-1")

    func message(featureID: String? = nil, subject: String = "ask", id: String = "c-1") throws -> Envelope {
        var headers = DittoHeaders()
        headers.correlationID = id
        return try Envelope.liveMessage(
            thingID: thing, featureID: featureID, direction: .inbox, subject: subject, payload: .text("?"),
            headers: headers)
    }

    @Test func messageResponses() throws {
        let request = try message()
        let response = Envelope.messageResponse(to: request, status: 200, payload: .text("ok"))
        #expect(response.answers(request))
        // Without status the "response" would be a new message.
        var noStatus = response
        noStatus.status = nil
        #expect(!noStatus.answers(request))
        // Another correlation-id, subject or addressing kind does not answer.
        var otherID = response
        otherID.headers.correlationID = "c-2"
        #expect(!otherID.answers(request))
        let feature = try message(featureID: "lamp")
        #expect(!Envelope.messageResponse(to: feature, status: 200, payload: nil).answers(request))
        #expect(Envelope.messageResponse(to: feature, status: 200, payload: nil).answers(feature))
        let claim = try message(subject: "claim")
        #expect(Envelope.messageResponse(to: claim, status: 204, payload: nil).answers(claim))
        // The direction is not compared.
        var outbox = response
        outbox.path = "/outbox/messages/ask"
        #expect(outbox.answers(request))
        // An error response with the same correlation-id always answers.
        let error = Envelope.errorResponse(to: request, error: .timeout(milliseconds: 10))
        #expect(error.answers(request))
    }

    @Test func commandResponses() throws {
        let command = try Envelope.decode(#"{"topic":"org.acme/device-1/things/live/commands/modify","headers":{"correlation-id":"cmd-7"},"path":"/features/t/properties/target","value":21}"#)
        let response = Envelope.commandResponse(to: command, status: 204)
        #expect(response.answers(command))
        var prefixed = response
        prefixed.headers.correlationID = "cmd-7:device"
        #expect(prefixed.answers(command))
        var otherPath = response
        otherPath.path = "/features/t/properties"
        #expect(!otherPath.answers(command))
        var otherAction = response
        otherAction.topic.action = .retrieve
        #expect(!otherAction.answers(command))
        var twin = response
        twin.topic.channel = .twin
        #expect(!twin.answers(command))
        #expect(!command.answers(command))
    }

    @Test func payloadSizeLimit() throws {
        try MessagePayload.binary(Array(repeating: 0, count: MessagePayload.sizeLimit)).checkSize()
        let error = try #require(throws: DittoError.self) {
            try MessagePayload.text(String(repeating: "x", count: MessagePayload.sizeLimit + 1)).checkSize()
        }
        #expect(error.status == 413)
        #expect(error.error == "messages:payload.toolarge")
    }

    @Test func headerEqualityIgnoresOrderAndNameCase() {
        let a = DittoHeaders([("Correlation-ID", "x"), ("b", "2")])
        let b = DittoHeaders([("b", "2"), ("correlation-id", "x")])
        #expect(a == b)
        #expect(a.hashValue == b.hashValue)
        #expect(a != DittoHeaders([("b", "2"), ("correlation-id", "y")]))
    }
}
