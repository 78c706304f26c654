import Logging
import MQTT
import Mosquitto
import MosquittoTestSupport

/// `bridge-bench mqtt`: the MQTT client against a private local mosquitto (loopback, 2 KB max payload 128 B).
enum MQTTBenchmarks {
    static let logger: Logger = {
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        return logger
    }()

    static func client(_ broker: TestBroker, _ id: String) async throws -> MosquittoClient {
        let client = try MosquittoClient(configuration: broker.clientConfiguration(clientID: id), logger: logger)
        try await client.connect()
        return client
    }

    static func run() async throws {
        let broker = try TestBroker()
        print("== mqtt: MosquittoClient against mosquitto on 127.0.0.1 (128-byte payloads)")
        let payload = [UInt8](repeating: 0x61, count: 128)

        // Publish throughput, nobody subscribed: the broker's acknowledgement is all that is measured.
        let publisher = try await client(broker, "bench-pub")
        for qos in [QoS.atMostOnce, .atLeastOnce] {
            let count = qos == .atMostOnce ? 100_000 : 50_000
            let start = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                for lane in 0..<32 {
                    group.addTask {
                        for _ in stride(from: lane, to: count, by: 32) {
                            try await publisher.publish(to: "bench/throughput", payload: payload, qos: qos)
                        }
                    }
                }
                try await group.waitForAll()
            }
            print("publish QoS \(qos.rawValue), 32 in flight: \(rate(count, ContinuousClock.now - start))")
        }

        // Sequential QoS 1: each publish waits for its PUBACK.
        var acks = LatencySamples()
        let sequential = 5_000
        let sequentialStart = ContinuousClock.now
        for _ in 0..<sequential {
            let start = ContinuousClock.now
            try await publisher.publish(to: "bench/sequential", payload: payload, qos: .atLeastOnce)
            acks.record(ContinuousClock.now - start)
        }
        print("publish QoS 1 sequential (PUBACK round trip): \(rate(sequential, ContinuousClock.now - sequentialStart)); \(acks.summary)")

        // End to end: publisher -> broker -> subscriber stream, latency from publish call to receipt.
        for qos in [QoS.atMostOnce, .atLeastOnce] {
            let subscriber = try await client(broker, "bench-sub-\(qos.rawValue)")
            try await subscriber.subscribe([Subscription(filter: "bench/e2e/\(qos.rawValue)", qos: qos)])
            let count = 20_000
            let origin = ContinuousClock.now
            let receiver = Task { () -> (LatencySamples, Duration) in
                var latencies = LatencySamples()
                var received = 0
                for await message in subscriber.messages {
                    let sent = message.payload.prefix(8).enumerated().reduce(Int64(0)) { $0 | Int64($1.element) << (8 * $1.offset) }
                    latencies.record((ContinuousClock.now - origin) - .microseconds(sent))
                    received += 1
                    if received == count { break }
                }
                return (latencies, ContinuousClock.now - origin)
            }
            for _ in 0..<count {
                let micros = (ContinuousClock.now - origin).microseconds
                var body = payload
                for index in 0..<8 { body[index] = UInt8(truncatingIfNeeded: micros >> (8 * index)) }
                try await publisher.publish(to: "bench/e2e/\(qos.rawValue)", payload: body, qos: qos)
            }
            let (latencies, elapsed) = await receiver.value
            print("end to end QoS \(qos.rawValue) (publish awaited, then broker -> subscriber): \(rate(count, elapsed)); latency \(latencies.summary)")
            await subscriber.disconnect()
        }
        await publisher.disconnect()
        broker.stop()
    }
}
