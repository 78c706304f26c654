import BridgeConfig
import BridgeRuntime
import DittoProtocol
import Foundation
import MQTT
import Mosquitto
import MosquittoTestSupport
import Synchronization
import Testing

let downlinkConfig = baseConnections + """

    devices:
      status-topic: "devices/{deviceId}/status"
      offline-payloads: [offline]
    acks:
      delivered: "{connectionId}:delivered"
      answered: "{connectionId}:answered"
    uplink:
      - name: requests
        topic: "devices/{deviceId}/ask/{subject}"
        thing-id: "{namespace}:{deviceId}"
        message: { subject: "{subject}", timeout: 5s }
        payload: { format: json }
      - name: legacy-requests
        topic: "legacy/{deviceId}/ask/{correlationId}/{subject}"
        thing-id: "{namespace}:legacy-{deviceId}"
        message: { subject: "{subject}", response: true, timeout: 5s, reply-topic: "legacy/{deviceId}/answer/{correlationId}/{status}" }
        payload: { format: json }
    downlink:
      - name: legacy
        priority: 10
        match: { messages: { subject: "*" } }
        thing-id: "{namespace}:legacy-{deviceId}"
        topic: "legacy/{deviceId}/req/{correlationId}/{subject}"
        reply: { mode: topic, topic: "legacy/{deviceId}/res/{correlationId}/{status}" }
      - name: feature-messages
        match: { messages: { subject: "*", feature: "*" } }
        thing-id: "{namespace}:{deviceId}"
        topic: "devices/{deviceId}/features/{feature}/inbox/{subject}"
        reply: { mode: mqtt5, topic: "devices/{deviceId}/reply" }
      - name: inbox
        match: { messages: { subject: "*" } }
        thing-id: "{namespace}:{deviceId}"
        topic: "devices/{deviceId}/inbox/{subject}"
        reply: { mode: mqtt5, topic: "devices/{deviceId}/reply", timeout: 10s }
      - name: properties
        match: { commands: { actions: [modify, retrieve], path: "/features/{feature}/properties/{property...}" } }
        thing-id: "{namespace}:{deviceId}"
        topic: "devices/{deviceId}/cmd/{action}/{feature}/{property}"
        reply: { mode: mqtt5, topic: "devices/{deviceId}/reply" }
    """

/// An MQTT 5 device that answers every request on its response topic, echoing correlation data and user
/// properties, with `status` and a payload from `answer`.
func startMQTT5Device(_ harness: BridgeHarness, id: String, answer: @escaping @Sendable (MQTTMessage) -> (status: Int, payload: [UInt8])?)
    async throws -> (client: MosquittoClient, received: MessageCollector)
{
    let (client, received) = try await harness.device(id, collect: false)
    try await client.subscribe([Subscription(filter: "devices/\(id)/inbox/#"), Subscription(filter: "devices/\(id)/features/#"),
                                Subscription(filter: "devices/\(id)/cmd/#")])
    Task {
        for await request in client.messages {
            received.append(request)
            guard let responseTopic = request.properties.responseTopic, let reply = answer(request) else { continue }
            var properties = PublishProperties(correlationData: request.properties.correlationData,
                                               userProperties: request.properties.userProperties)
            properties.userProperties.append(UserProperty(name: "status", value: "\(reply.status)"))
            properties.contentType = "application/json"
            _ = try? await client.publish(to: responseTopic, payload: reply.payload, properties: properties)
        }
    }
    return (client, received)
}

func liveMessage(_ thing: String, subject: String, feature: String? = nil, correlationID: String, value: JSONValue = .string("go"),
                 headers extra: [(String, String)] = []) throws -> String {
    var headers = DittoHeaders()
    headers.correlationID = correlationID
    headers.contentType = "application/json"
    for (name, value) in extra { headers[name] = value }
    let envelope = try Envelope.liveMessage(thingID: ThingID(thing), featureID: feature, direction: .inbox, subject: subject,
                                            payload: .json(value), headers: headers)
    return String(decoding: envelope.encoded(), as: UTF8.self)
}

func liveCommand(_ thing: String, action: TopicPath.Action, path: String, value: JSONValue? = nil, correlationID: String) throws -> String {
    var headers = DittoHeaders()
    headers.correlationID = correlationID
    let envelope = Envelope(topic: .liveCommand(thingID: try ThingID(thing), action: action), headers: headers, path: path, value: value)
    return String(decoding: envelope.encoded(), as: UTF8.self)
}

@Suite("Downlink and round trips through a real broker", .serialized)
struct DownlinkTests {
    @Test("A live message reaches the MQTT 5 device and its answer is the response Ditto accepts (rules 1, 3, 5)")
    func messageRoundTrip() async throws {
        let harness = try await BridgeHarness(yaml: downlinkConfig)
        let (device, received) = try await startMQTT5Device(harness, id: "dev1") { _ in (200, Array(#"{"rebooted": true}"#.utf8)) }
        let request = try liveMessage("org.example:dev1", subject: "reboot", correlationID: "c-1",
                                      headers: [("x-custom", "ümlaut ✓"), ("ditto-originator", "secret"), ("traceparent", "00-abc-def-01")])
        try await harness.sendFromDitto(request, thingID: "org.example:dev1", correlationID: "c-1")

        let response = try #require(await harness.envelope(correlationID: "c-1"))
        let original = try Envelope.decode(Array(request.utf8))
        #expect(response.status == 200)                                 // rule 1: status makes it a response
        #expect(response.headers.correlationID == "c-1")               // rule 3: same correlation-id
        #expect(response.topic == original.topic)                      // same topic
        #expect(response.path == "/inbox/messages/reboot")             // rule 5: path string-equal, thing-level kept
        #expect(response.path == original.path)
        #expect(response.value == .object(["rebooted": .bool(true)]))
        #expect(response.headers.contentType == "application/json")
        #expect(response.headers["x-custom"] == "ümlaut ✓")             // custom header went to the device and came back
        #expect(harness.fromBridge.messages.first?.topic == "ditto/in/org.example:dev1")

        let delivered = try #require(received.messages.first)
        #expect(delivered.topic == "devices/dev1/inbox/reboot")
        #expect(delivered.payload == Array(#""go""#.utf8))
        #expect(delivered.properties.correlationData == Array("c-1".utf8))
        #expect(delivered.properties.userProperties.contains(UserProperty(name: "x-custom", value: "ümlaut ✓")))
        #expect(delivered.properties.userProperties.contains(UserProperty(name: "traceparent", value: "00-abc-def-01")))
        #expect(!delivered.properties.userProperties.contains { $0.name.hasPrefix("ditto-") || $0.name == "correlation-id" })
        let expiry = try #require(delivered.properties.messageExpiryInterval)
        #expect(expiry >= 1 && expiry <= 10)
        await device.disconnect()
        await harness.stop()
    }

    @Test("A feature message is answered with a feature-level response (rule 3: same addressing kind)")
    func featureMessage() async throws {
        let harness = try await BridgeHarness(yaml: downlinkConfig)
        let (device, received) = try await startMQTT5Device(harness, id: "dev2") { _ in (201, Array("\"ok\"".utf8)) }
        try await harness.sendFromDitto(try liveMessage("org.example:dev2", subject: "calibrate", feature: "thermo", correlationID: "c-2"),
                                        thingID: "org.example:dev2")
        let response = try #require(await harness.envelope(correlationID: "c-2"))
        #expect(response.status == 201)
        #expect(response.path == "/features/thermo/inbox/messages/calibrate")
        #expect(response.value == .string("ok"))
        #expect(received.messages.first?.topic == "devices/dev2/features/thermo/inbox/calibrate")
        await device.disconnect()
        await harness.stop()
    }

    @Test("Live commands: retrieve answered with a value, modify with 204 (rule 4: same signal, thing and path)")
    func liveCommands() async throws {
        let harness = try await BridgeHarness(yaml: downlinkConfig)
        let (device, received) = try await startMQTT5Device(harness, id: "dev3") { request in
            request.topic.contains("/retrieve/") ? (200, Array("21.5".utf8)) : (204, [])
        }
        try await harness.sendFromDitto(try liveCommand("org.example:dev3", action: .retrieve, path: "/features/temp/properties/value",
                                                        correlationID: "r-1"), thingID: "org.example:dev3")
        try await harness.sendFromDitto(try liveCommand("org.example:dev3", action: .modify, path: "/features/temp/properties/target",
                                                        value: .number(JSONNumber(22)), correlationID: "m-1"), thingID: "org.example:dev3")
        let retrieved = try #require(await harness.envelope(correlationID: "r-1"))
        #expect(retrieved.topic.description == "org.example/dev3/things/live/commands/retrieve")
        #expect(retrieved.path == "/features/temp/properties/value")
        #expect(retrieved.status == 200)
        #expect(retrieved.value == .number(JSONNumber(literal: "21.5")!))
        let modified = try #require(await harness.envelope(correlationID: "m-1"))
        #expect(modified.topic.description == "org.example/dev3/things/live/commands/modify")
        #expect(modified.path == "/features/temp/properties/target")
        #expect(modified.status == 204)
        #expect(modified.value == nil)
        let topics = Set(received.messages.map(\.topic))
        #expect(topics == ["devices/dev3/cmd/retrieve/temp/value", "devices/dev3/cmd/modify/temp/target"])
        await device.disconnect()
        await harness.stop()
    }

    @Test("MQTT 3.1.1 device: correlation id in the request topic, answer on .../res/{correlationId}/{status}")
    func mqtt311RoundTrip() async throws {
        let harness = try await BridgeHarness(yaml: downlinkConfig)
        let (device, _) = try await harness.device("legacy", version: .v311, collect: false)
        try await device.subscribe([Subscription(filter: "legacy/l1/req/#")])
        Task {
            for await request in device.messages {
                let levels = request.topic.split(separator: "/", omittingEmptySubsequences: false)
                guard levels.count >= 5 else { continue }
                _ = try? await device.publish(to: "legacy/l1/res/\(levels[3])/202", payload: Array("{\"done\":1}".utf8))
            }
        }
        for id in ["plain-id", "with/slash+plus#hash"] {
            try await harness.sendFromDitto(try liveMessage("org.example:legacy-l1", subject: "blink", correlationID: id),
                                            thingID: "org.example:legacy-l1")
            let response = try #require(await harness.envelope(correlationID: id))
            #expect(response.status == 202)
            #expect(response.path == "/inbox/messages/blink")
            #expect(response.value == .object(["done": .number(JSONNumber(1))]))
        }
        await device.disconnect()
        await harness.stop()
    }

    @Test("response-required false: the device gets the message, Ditto gets no response")
    func responseNotRequired() async throws {
        let harness = try await BridgeHarness(yaml: downlinkConfig)
        let (device, received) = try await startMQTT5Device(harness, id: "dev4") { _ in (200, []) }
        try await harness.sendFromDitto(try liveMessage("org.example:dev4", subject: "note", correlationID: "n-1",
                                                        headers: [("response-required", "false")]),
                                        thingID: "org.example:dev4")
        _ = await received.wait(for: 1)
        #expect(received.count == 1)
        #expect(received.messages.first?.properties.responseTopic == nil)
        try await Task.sleep(for: .milliseconds(500))
        #expect(harness.fromBridge.count == 0)
        await device.disconnect()
        await harness.stop()
    }

    @Test("A silent device: Ditto gets 408 just before its timeout, and a 408 ack for the answered label")
    func timeout() async throws {
        let harness = try await BridgeHarness(yaml: downlinkConfig)
        let (device, received) = try await startMQTT5Device(harness, id: "dev5") { _ in nil }
        let start = ContinuousClock.now
        try await harness.sendFromDitto(try liveMessage("org.example:dev5", subject: "ping", correlationID: "t-1",
                                                        headers: [("timeout", "1s"), ("requested-acks", #"["edge-bridge:answered"]"#)]),
                                        thingID: "org.example:dev5")
        let error = try #require(await harness.envelope(correlationID: "t-1") { $0.topic.criterion == .errors })
        let elapsed = ContinuousClock.now - start
        #expect(elapsed > .milliseconds(500) && elapsed < .seconds(3))
        #expect(error.status == 408)
        #expect(error.topic.description == "org.example/dev5/things/live/errors")
        #expect(error.value?["error"] == .string("command.timeout"))
        let ack = try #require(await harness.envelope(correlationID: "t-1") { $0.topic.criterion == .acks })
        #expect(ack.topic.description == "org.example/dev5/things/live/acks/edge-bridge:answered")
        #expect(ack.status == 408)
        #expect(received.count == 1)
        await device.disconnect()
        await harness.stop()
    }

    @Test("Offline device (last will on its status topic): immediate 503")
    func offlineDevice() async throws {
        let harness = try await BridgeHarness(yaml: downlinkConfig)
        let (device, _) = try await harness.device("dev6", will: .init(topic: "devices/dev6/status", payload: Array("offline".utf8)))
        try await device.publish(to: "devices/dev6/status", payload: Array("online".utf8))
        // The device dies without DISCONNECT: the broker publishes its will.
        await device.disconnectPublishingWill()
        try await Task.sleep(for: .milliseconds(300))
        let start = ContinuousClock.now
        try await harness.sendFromDitto(try liveMessage("org.example:dev6", subject: "ping", correlationID: "o-1"),
                                        thingID: "org.example:dev6")
        let error = try #require(await harness.envelope(correlationID: "o-1"))
        #expect(ContinuousClock.now - start < .seconds(2))
        #expect(error.status == 503)
        #expect(error.value?["error"] == .string("bridge:device.offline"))
        await harness.stop()
    }

    @Test("No downlink rule: immediate 404; invalid Ditto Protocol with a correlation id: 400")
    func unroutable() async throws {
        let harness = try await BridgeHarness(yaml: downlinkConfig)
        try await harness.sendFromDitto(try liveCommand("org.example:dev7", action: .delete, path: "/attributes/x", correlationID: "x-1"),
                                        thingID: "org.example:dev7")
        let notFound = try #require(await harness.envelope(correlationID: "x-1"))
        #expect(notFound.status == 404)
        #expect(notFound.value?["error"] == .string("bridge:route.notfound"))
        let invalid = #"{"topic":"org.example/dev7/things/live/messages/x","headers":{"correlation-id":"x-2"},"path":"/inbox/messages/other"}"#
        try await harness.sendFromDitto(invalid, thingID: "org.example:dev7", correlationID: "x-2")
        let badRequest = try #require(await harness.envelope(correlationID: "x-2"))
        #expect(badRequest.status == 400)
        #expect(harness.bridge.metrics["ditto.invalid"] == 1)
        await harness.stop()
    }

    @Test("50 concurrent requests to 10 devices are all answered and matched")
    func concurrentRequests() async throws {
        let harness = try await BridgeHarness(yaml: downlinkConfig)
        var devices: [MosquittoClient] = []
        for index in 0..<10 {
            let (device, _) = try await startMQTT5Device(harness, id: "c\(index)") { request in
                (200, Array("\"\(request.topic)\"".utf8))
            }
            devices.append(device)
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<50 {
                group.addTask {
                    try await harness.sendFromDitto(try liveMessage("org.example:c\(index % 10)", subject: "s\(index)", correlationID: "k-\(index)"),
                                                    thingID: "org.example:c\(index % 10)")
                }
            }
            try await group.waitForAll()
        }
        let envelopes = try await harness.envelopes(count: 50, timeout: .seconds(20))
        #expect(envelopes.count == 50)
        for envelope in envelopes {
            let index = try #require(envelope.headers.correlationID.flatMap { Int($0.dropFirst(2)) })
            #expect(envelope.status == 200)
            #expect(envelope.topic.description == "org.example/c\(index % 10)/things/live/messages/s\(index)")
            #expect(envelope.value == .string("devices/c\(index % 10)/inbox/s\(index)"))
        }
        for device in devices { await device.disconnect() }
        await harness.stop()
    }

    @Test("Acks: requested declared labels are issued, Ditto's reserved labels never")
    func acknowledgements() async throws {
        let harness = try await BridgeHarness(yaml: downlinkConfig)
        let (device, _) = try await startMQTT5Device(harness, id: "dev8") { _ in (200, Array("1".utf8)) }
        try await harness.sendFromDitto(try liveMessage("org.example:dev8", subject: "a", correlationID: "a-1",
                                                        headers: [("requested-acks", #"["edge-bridge:delivered","edge-bridge:answered","live-response","other:label"]"#)]),
                                        thingID: "org.example:dev8")
        let envelopes = try await harness.envelopes(count: 3)
        let acks = envelopes.filter { $0.topic.criterion == .acks }
        #expect(Set(acks.map { $0.topic.subject ?? "" }) == ["edge-bridge:delivered", "edge-bridge:answered"])
        #expect(acks.allSatisfy { $0.status == 200 && $0.headers.correlationID == "a-1" && $0.path == "/" })
        #expect(envelopes.filter { $0.topic.criterion == .messages }.count == 1)
        try await Task.sleep(for: .milliseconds(300))
        #expect(harness.fromBridge.count == 3)
        await device.disconnect()
        await harness.stop()
    }

    /// The bridge keeps the rule each signal (topic and path) goes to; what comes from the request itself
    /// (correlation id, `response-required`, `timeout`) must still be read from every request.
    @Test("More signals than the target table holds: every request reaches its device with its own headers")
    func moreSignalsThanTheTargetTableHolds() async throws {
        let harness = try await BridgeHarness(yaml: downlinkConfig, keptTopicLimit: 2)
        var devices: [(client: MosquittoClient, received: MessageCollector)] = []
        for index in 0..<3 {
            devices.append(try await startMQTT5Device(harness, id: "t\(index)") { request in
                (200, Array("\"\(request.topic)\"".utf8))
            })
        }
        // Six signals through a table of two, twice; in the second round each device's `s1` request needs no answer.
        for round in 0..<2 {
            for index in 0..<6 {
                let thing = "org.example:t\(index % 3)"
                let silent = round == 1 && index / 3 == 1
                try await harness.sendFromDitto(
                    try liveMessage(thing, subject: "s\(index / 3)", correlationID: "k-\(round)-\(index)",
                                    headers: silent ? [("response-required", "false")] : [("timeout", "\(5 + index)s")]),
                    thingID: thing)
            }
        }
        let envelopes = try await harness.envelopes(count: 9, timeout: .seconds(20))
        #expect(envelopes.count == 9)
        for envelope in envelopes {
            let id = try #require(envelope.headers.correlationID)
            let index = try #require(Int(id.split(separator: "-")[2]))
            #expect(!(id.hasPrefix("k-1-") && index / 3 == 1), "\(id) asked for no response")
            #expect(envelope.status == 200)
            #expect(envelope.topic.description == "org.example/t\(index % 3)/things/live/messages/s\(index / 3)")
            #expect(envelope.value == .string("devices/t\(index % 3)/inbox/s\(index / 3)"))
        }
        for (device, (client, received)) in devices.enumerated() {
            let requests = await received.wait(for: 4)
            #expect(requests.map(\.topic) == ["devices/t\(device)/inbox/s0", "devices/t\(device)/inbox/s1",
                                              "devices/t\(device)/inbox/s0", "devices/t\(device)/inbox/s1"])
            // The silent request has no response topic; the others expire with their own timeout.
            #expect(requests[3].properties.responseTopic == nil)
            #expect(requests[2].properties.responseTopic == "devices/t\(device)/reply")
            let expiry = try #require(requests[0].properties.messageExpiryInterval)
            #expect(expiry <= UInt32(5 + device))
            await client.disconnect()
        }
        // Round one alone evicts four; in round two a signal may still be there (an arbitrary one goes).
        #expect((4...10).contains(harness.bridge.metrics["downlink.signals-evicted"]))
        await harness.stop()
    }

    /// Correlation ids are unique per requester, not across things: the bridge finds a device's answer by
    /// correlation id and then by the thing whose device answers on that topic.
    @Test("One correlation id on requests to three things: each answer completes its own request")
    func sharedCorrelationID() async throws {
        let harness = try await BridgeHarness(yaml: downlinkConfig)
        let (client, received) = try await harness.device("shared", subscribe: ["devices/+/inbox/#"])
        for index in 0..<3 {
            let thing = "org.example:s\(index)"
            try await harness.sendFromDitto(try liveMessage(thing, subject: "hello", correlationID: "shared"), thingID: thing)
        }
        let requests = await received.wait(for: 3)
        #expect(requests.count == 3)
        // Answered in reverse order, while all three wait under the same correlation id.
        for request in requests.reversed() {
            let responseTopic = try #require(request.properties.responseTopic)
            try await client.publish(to: responseTopic, payload: Array("\"\(request.topic)\"".utf8),
                                     properties: PublishProperties(contentType: "application/json",
                                                                   correlationData: request.properties.correlationData))
        }
        let envelopes = try await harness.envelopes(count: 3)
        #expect(Set(envelopes.map(\.topic.description)) == Set((0..<3).map { "org.example/s\($0)/things/live/messages/hello" }))
        for envelope in envelopes {
            #expect(envelope.status == 200)
            #expect(envelope.headers.correlationID == "shared")
            #expect(envelope.value == .string("devices/\(envelope.topic.entityName)/inbox/hello"))
        }
        #expect(harness.bridge.metrics["reply.unmatched"] == 0)
        #expect(await harness.bridge.pendingRequestCounts.downlink == 0)
        await client.disconnect()
        await harness.stop()
    }

    @Test("The pending table never grows past its bound")
    func pendingBound() async throws {
        let harness = try await BridgeHarness(yaml: downlinkConfig, maximumPendingRequests: 5)
        let (device, received) = try await startMQTT5Device(harness, id: "dev9") { _ in nil }
        for index in 0..<12 {
            try await harness.sendFromDitto(try liveMessage("org.example:dev9", subject: "q", correlationID: "p-\(index)"),
                                            thingID: "org.example:dev9")
        }
        let rejected = await harness.fromBridge.wait(for: 7)
        #expect(rejected.count == 7)
        let statuses = try rejected.map { try Envelope.decode($0.payload) }.map { $0.value?["error"] }
        #expect(statuses.allSatisfy { $0 == .string("bridge:requests.toomany") })
        #expect(await received.wait(for: 5).count == 5)
        #expect(await harness.bridge.pendingRequestCounts.downlink == 5)
        await device.disconnect()
        await harness.stop()
    }

    @Test("Stopping the bridge answers requests still waiting for a device with 503")
    func shutdownAnswersPending() async throws {
        let harness = try await BridgeHarness(yaml: downlinkConfig)
        let (device, received) = try await startMQTT5Device(harness, id: "dev10") { _ in nil }
        try await harness.sendFromDitto(try liveMessage("org.example:dev10", subject: "slow", correlationID: "s-1"),
                                        thingID: "org.example:dev10")
        _ = await received.wait(for: 1)
        let watcher = try MosquittoClient(configuration: harness.broker.clientConfiguration(clientID: "watcher"), logger: harnessLogger)
        try await watcher.connect()
        try await watcher.subscribe([Subscription(filter: "ditto/in/#")])
        let seen = MessageCollector(watcher.messages)
        harness.bridge.stop()
        let answer = try #require(await seen.wait(for: 1).first)
        let envelope = try Envelope.decode(answer.payload)
        #expect(envelope.status == 503)
        #expect(envelope.value?["error"] == .string("bridge:shutting.down"))
        #expect(envelope.headers.correlationID == "s-1")
        await watcher.disconnect()
        await device.disconnect()
        await harness.stop()
    }

    @Test("Device broker down: immediate 503 instead of a timeout")
    func deviceBrokerDown() async throws {
        let yaml = downlinkConfig.replacingOccurrences(
            of: "device: { host: 127.0.0.1, port: PORT,", with: "device: { host: 127.0.0.1, port: DEVICE_PORT,")
        let harness = try await BridgeHarness(yaml: yaml, separateDeviceBroker: true)
        harness.deviceBroker?.kill9()
        try await Task.sleep(for: .milliseconds(300))
        let start = ContinuousClock.now
        try await harness.sendFromDitto(try liveMessage("org.example:dev11", subject: "ping", correlationID: "b-1"),
                                        thingID: "org.example:dev11")
        let error = try #require(await harness.envelope(correlationID: "b-1"))
        #expect(ContinuousClock.now - start < .seconds(2))
        #expect(error.status == 503)
        #expect(error.value?["error"] == .string("bridge:devicebroker.unavailable"))
        await harness.stop()
    }

    @Test("A redelivered request whose correlation-id is still pending is not sent to the device twice")
    func redeliveryDeduplicated() async throws {
        let harness = try await BridgeHarness(yaml: downlinkConfig)
        let (device, received) = try await startMQTT5Device(harness, id: "dev12") { _ in nil }
        let request = try liveMessage("org.example:dev12", subject: "once", correlationID: "d-1")
        try await harness.sendFromDitto(request, thingID: "org.example:dev12")
        try await harness.sendFromDitto(request, thingID: "org.example:dev12")
        _ = await received.wait(for: 2, timeout: .milliseconds(800))
        #expect(received.count == 1)
        #expect(harness.bridge.metrics["downlink.dropped.duplicate"] == 1)
        await device.disconnect()
        await harness.stop()
    }

    @Test("Requests to one device reach it in Ditto's order")
    func orderPerDevice() async throws {
        let harness = try await BridgeHarness(yaml: downlinkConfig)
        let (device, received) = try await startMQTT5Device(harness, id: "dev13") { _ in (204, []) }
        for index in 0..<30 {
            try await harness.sendFromDitto(try liveCommand("org.example:dev13", action: .modify, path: "/features/f/properties/p",
                                                            value: .number(JSONNumber(index)), correlationID: "o-\(index)"),
                                            thingID: "org.example:dev13")
        }
        let messages = await received.wait(for: 30)
        #expect(messages.map { String(decoding: $0.payload, as: UTF8.self) } == (0..<30).map { "\($0)" })
        await device.disconnect()
        await harness.stop()
    }
}
