import Testing

@testable import DittoProtocol

@Suite struct BuilderTests {
    let thing = try! ThingID("org.acme:device-1")

    @Test func liveEvent() throws {
        var headers = DittoHeaders()
        headers.correlationID = "c-1"
        let event = Envelope.liveEvent(
            thingID: thing, action: .modified, path: "/features/t/properties/value", value: 21.5, revision: 7,
            headers: headers)
        #expect(String(decoding: event.encoded(), as: UTF8.self)
            == #"{"topic":"org.acme/device-1/things/live/events/modified","headers":{"correlation-id":"c-1"},"path":"/features/t/properties/value","value":21.5,"revision":7}"#)
        #expect(try Envelope.decode(event.encoded()) == event)
    }

    @Test func liveCommand() throws {
        var headers = DittoHeaders()
        headers.correlationID = "cmd-1"
        let command = Envelope.liveCommand(
            thingID: thing, action: .modify, path: "/features/lamp/properties/on", value: true, headers: headers)
        #expect(String(decoding: command.encoded(), as: UTF8.self)
            == #"{"topic":"org.acme/device-1/things/live/commands/modify","headers":{"correlation-id":"cmd-1"},"path":"/features/lamp/properties/on","value":true}"#)
        #expect(!command.isResponse)
        #expect(try Envelope.decode(command.encoded()) == command)
        #expect(Envelope.commandResponse(to: command, status: 204).answers(command))
    }

    @Test func liveMessageThingAndFeatureLevel() throws {
        let message = try Envelope.liveMessage(
            thingID: thing, direction: .outbox, subject: "alarm/high", payload: .json(["level": 3]))
        #expect(message.topic.description == "org.acme/device-1/things/live/messages/alarm/high")
        #expect(message.path == "/outbox/messages/alarm/high")
        #expect(message.headers.contentType == "application/json")
        #expect(message.status == nil)
        #expect(try Envelope.decode(message.encoded()) == message)

        let feature = try Envelope.liveMessage(
            thingID: thing, featureID: "lamp", direction: .inbox, subject: "switch", payload: .binary([1, 2, 3]))
        #expect(feature.path == "/features/lamp/inbox/messages/switch")
        #expect(feature.value == "AQID")
        #expect(feature.messagePath == MessagePath(featureID: "lamp", direction: .inbox, subject: "switch"))
        _ = try Envelope.decode(feature.encoded())

        #expect(throws: DittoError.self) {
            try Envelope.liveMessage(thingID: thing, direction: .inbox, subject: "", payload: nil)
        }
        #expect(throws: DittoError.self) {
            try Envelope.liveMessage(thingID: thing, direction: .inbox, subject: "a~b", payload: nil)
        }
        #expect(throws: DittoError.self) {
            try Envelope.liveMessage(thingID: thing, featureID: "a/b", direction: .inbox, subject: "s", payload: nil)
        }
    }

    @Test func responsesKeepTopicPathAndCorrelation() throws {
        let request = try Envelope.decode(Array(#"{"topic":"org.acme/device-1/things/live/messages/ask","headers":{"correlation-id":"q-9","content-type":"text/plain"},"path":"/inbox/messages/ask","value":"hi"}"#.utf8))
        let response = Envelope.messageResponse(to: request, status: 200, payload: .text("fine"))
        #expect(response.topic == request.topic)
        #expect(response.path == request.path)
        #expect(response.status == 200)
        #expect(response.headers.correlationID == "q-9")
        #expect(response.headers.contentType == "text/plain; charset=UTF-8")
        #expect(response.value == "fine")
        #expect(try Envelope.decode(response.encoded()).isResponse)

        let command = try Envelope.decode(Array(#"{"topic":"org.acme/device-1/things/live/commands/retrieve","headers":{"correlation-id":"r-1"},"path":"/features/t/properties"}"#.utf8))
        let reply = Envelope.commandResponse(to: command, status: 200, value: ["value": 1])
        #expect(String(decoding: reply.encoded(), as: UTF8.self)
            == #"{"topic":"org.acme/device-1/things/live/commands/retrieve","headers":{"correlation-id":"r-1"},"path":"/features/t/properties","value":{"value":1},"status":200}"#)
    }

    @Test func acknowledgements() throws {
        let ack = try Envelope.acknowledgement(thingID: thing, label: "bridge:delivered", status: 200)
        #expect(ack.topic.description == "org.acme/device-1/things/live/acks/bridge:delivered")
        #expect(ack.path == "/")
        _ = try Envelope.decode(ack.encoded())
        for reserved in ["twin-persisted", "live-response", "search-persisted"] {
            let error = try #require(throws: DittoError.self) {
                try Envelope.acknowledgement(thingID: thing, label: reserved, status: 200)
            }
            #expect(error.error == "acknowledgement:ditto.acklabel.forbidden")
        }
        for bad in ["ab", "with space", "ümlaut", String(repeating: "a", count: 101)] {
            let error = try #require(throws: DittoError.self) {
                try Envelope.acknowledgement(thingID: thing, label: bad, status: 200)
            }
            #expect(error.error == "acknowledgement:label.invalid")
        }
        _ = try Envelope.acknowledgement(thingID: thing, label: String(repeating: "a", count: 100), status: 200)
        let placeholder = try Envelope.acknowledgement(thingID: thing, label: "{{connection:id}}:delivered", status: 200)
        #expect(placeholder.topic.subject == "{{connection:id}}:delivered")
        _ = try Envelope.decode(placeholder.encoded())
        #expect(throws: DittoError.self) {
            try Envelope.acknowledgement(thingID: thing, label: "{{Connection:id}}:delivered", status: 200)
        }
    }

    @Test func errorResponses() throws {
        let error = DittoError.timeout(milliseconds: 5000)
        let response = Envelope.errorResponse(thingID: thing, error: error)
        #expect(String(decoding: response.encoded(), as: UTF8.self)
            == #"{"topic":"org.acme/device-1/things/live/errors","headers":{},"path":"/","value":{"status":408,"error":"command.timeout","message":"The Command reached the specified timeout of 5000ms.","description":"Try increasing the command timeout."},"status":408}"#)
        #expect(try Envelope.decode(response.encoded()).error == error)
        let fallback = Envelope.errorResponse(thingID: nil, channel: .twin, error: .jsonInvalid("bad"))
        #expect(fallback.topic.description == "unknown/unknown/things/twin/errors")
        _ = try Envelope.decode(fallback.encoded())
    }

    @Test func payloadEncodingByContentType() {
        let bytes: [UInt8] = Array(#"{"a":1}"#.utf8)
        #expect(MessagePayload.from(bytes: bytes, contentType: "application/json") == .json(["a": 1]))
        #expect(MessagePayload.from(bytes: bytes, contentType: "application/vnd.eclipse.ditto+json") == .json(["a": 1]))
        #expect(MessagePayload.from(bytes: bytes, contentType: "application/td+json; charset=utf-8") == .json(["a": 1]))
        #expect(MessagePayload.from(bytes: bytes, contentType: "text/plain") == .text(#"{"a":1}"#))
        #expect(MessagePayload.from(bytes: bytes, contentType: "application/javascript") == .text(#"{"a":1}"#))
        #expect(MessagePayload.from(bytes: bytes, contentType: "application/merge-patch+json") == .binary(bytes))
        #expect(MessagePayload.from(bytes: bytes, contentType: "application/json ; charset=utf-8") == .binary(bytes))
        #expect(MessagePayload.from(bytes: bytes, contentType: nil) == .binary(bytes))
        #expect(MessagePayload.from(bytes: bytes, contentType: "application/octet-stream").envelopeValue == "eyJhIjoxfQ==")
        #expect(MessagePayload.from(envelopeValue: "eyJhIjoxfQ==", contentType: nil).bytes == bytes)
        #expect(MessagePayload.from(envelopeValue: "not base64!", contentType: nil).bytes == Array("not base64!".utf8))
        #expect(MessagePayload.from(envelopeValue: "x", contentType: "TEXT/PLAIN") == .text("x"))
        #expect(MessagePayload.from(envelopeValue: ["a": 1], contentType: "application/json").bytes == bytes)
    }

    @Test func base64() {
        for n in 0..<20 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 * 37 + 11) }
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
        }
        #expect(Base64.encode(Array("Man".utf8)) == "TWFu")
        #expect(Base64.decode("TWE") == Array("Ma".utf8))
        #expect(Base64.decode("TWE=") == Array("Ma".utf8))
        #expect(Base64.decode("T") == nil)
        #expect(Base64.decode("TW=E") == nil)
        #expect(Base64.decode("TWE===") == nil)
    }
}
