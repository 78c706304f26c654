import BridgeConfig
import BridgeRuntime
import Logging
import MQTT
import Mosquitto
import MosquittoTestSupport

/// `bridge-bench bridge`: the whole bridge on a private mosquitto. Uplink: device JSON telemetry -> live events
/// at a client in Ditto's place. Downlink: Ditto live messages -> MQTT 5 device -> answers -> Ditto responses.
enum BridgeBenchmarks {
    static func config(port: Int) -> String {
        """
        connections:
          device: { host: 127.0.0.1, port: \(port), client-id: bench-bridge-devices }
          ditto: { host: 127.0.0.1, port: \(port), client-id: bench-bridge-ditto }
        defaults: { namespace: org.bench }
        uplink:
          - name: telemetry
            topic: "devices/{deviceId}/telemetry/{sensor}"
            thing-id: "{namespace}:{deviceId}"
            event: { action: modified, path: "/features/{sensor}/properties/value" }
            payload: { format: json, pointer: /value }
        downlink:
          - name: inbox
            match: { messages: { subject: "*" } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/inbox/{subject}"
            reply: { mode: mqtt5, topic: "devices/{deviceId}/reply" }
        """
    }

    static func run() async throws {
        let broker = try TestBroker()
        let configuration = try BridgeConfiguration.parse(yaml: config(port: broker.port), environment: [:])
        var logger = Logger(label: "bench-bridge")
        logger.logLevel = .error
        let bridge = try BridgeService(configuration: configuration, logger: logger)
        let running = Task { try await bridge.run() }
        await bridge.waitUntilReady()
        print("== bridge: device -> bridge -> Ditto on one local mosquitto (debug logging off)")

        let ditto = try await MQTTBenchmarks.client(broker, "bench-ditto")
        try await ditto.subscribe([Subscription(filter: "ditto/in/#")])
        let device = try await MQTTBenchmarks.client(broker, "bench-device")

        // Uplink: 20,000 telemetry messages from 10 devices, 32 publishes in flight.
        let count = 20_000
        let origin = ContinuousClock.now
        let receiver = Task { () -> Duration in
            var received = 0
            for await _ in ditto.messages {
                received += 1
                if received == count { break }
            }
            return ContinuousClock.now - origin
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<32 {
                group.addTask {
                    for index in stride(from: lane, to: count, by: 32) {
                        try await device.publish(to: "devices/dev-\(index % 10)/telemetry/temperature",
                                                 payload: Array(#"{"value": \#(Double(index) / 10), "unit": "C"}"#.utf8))
                    }
                }
            }
            try await group.waitForAll()
        }
        let uplinkElapsed = await receiver.value
        print("uplink telemetry -> live events: \(rate(count, uplinkElapsed)) (\(count) messages)")

        // Downlink round trips: Ditto sends a live message, the device answers, Ditto gets the response.
        try await device.subscribe([Subscription(filter: "devices/+/inbox/#")])
        let responder = Task {
            for await request in device.messages {
                guard let responseTopic = request.properties.responseTopic else { continue }
                _ = try? await device.publish(to: responseTopic, payload: Array("\"ok\"".utf8),
                                              properties: PublishProperties(correlationData: request.properties.correlationData))
            }
        }
        var roundTrips = LatencySamples()
        let requests = 2_000
        let downlinkStart = ContinuousClock.now
        var responses = ditto.messages.makeAsyncIterator()
        for index in 0..<requests {
            let id = "bench-\(index)"
            let request = #"{"topic":"org.bench/dev-1/things/live/messages/ping","headers":{"correlation-id":"\#(id)","content-type":"application/json"},"path":"/inbox/messages/ping","value":1}"#
            let start = ContinuousClock.now
            try await ditto.publish(to: "ditto/out/org.bench:dev-1", payload: Array(request.utf8),
                                    properties: PublishProperties(responseTopic: "ditto/in/org.bench:dev-1",
                                                                  correlationData: Array(id.utf8)))
            _ = await responses.next()
            roundTrips.record(ContinuousClock.now - start)
        }
        print("downlink request -> device -> response, one at a time: \(rate(requests, ContinuousClock.now - downlinkStart)); \(roundTrips.summary)")
        responder.cancel()
        bridge.stop()
        _ = try? await running.value
        await device.disconnect()
        await ditto.disconnect()
        broker.stop()
    }
}
