import Foundation
import Logging
import Mosquitto
import MosquittoTestSupport
import Synchronization

/// `bridge-bench datapath`: the bridge as a real process against the zero-work relay (`mqtt-relay`) in the same
/// run, on private brokers. Prints a table per scenario (bridge, relay, ratio) and writes a JSON file.
///
/// Options: `--runs N` (median of N, default 3), `--quick` (short runs), `--scenario NAME` (one scenario),
/// `--out FILE` (JSON path, default `bench-results/datapath-<time>.json`), `--bin DIR` (release binaries).
enum DataPathBenchmarks {
    struct Scenario {
        var name: String
        var qos: QoS
        /// nil: as fast as the subject takes them.
        var rate: Int?
        var twoBrokers: Bool
        var downlink = false
    }

    struct Result: Codable {
        var throughput: Double = 0
        var p50: Double = 0
        var p99: Double = 0
        var max: Double = 0
        var cpuMicrosecondsPerMessage: Double = 0
        var peakRSSKiB: Int = 0
        var sent = 0
        var received = 0
        var outOfOrder = 0
    }

    static let devices = 20

    static func scenarios(quick: Bool) -> [Scenario] {
        [
            Scenario(name: "uplink-qos0-unthrottled", qos: .atMostOnce, rate: nil, twoBrokers: false),
            Scenario(name: "uplink-qos1-unthrottled", qos: .atLeastOnce, rate: nil, twoBrokers: false),
            Scenario(name: "uplink-2brokers-qos0", qos: .atMostOnce, rate: nil, twoBrokers: true),
            Scenario(name: "uplink-2brokers-qos1", qos: .atLeastOnce, rate: nil, twoBrokers: true),
            Scenario(name: "uplink-qos1-1000/s", qos: .atLeastOnce, rate: 1_000, twoBrokers: false),
            Scenario(name: "uplink-qos1-5000/s", qos: .atLeastOnce, rate: 5_000, twoBrokers: false),
            Scenario(name: "downlink-roundtrip-1000/s", qos: .atLeastOnce, rate: 1_000, twoBrokers: false, downlink: true),
        ]
    }

    static func run(arguments: [String]) async throws {
        func option(_ name: String) -> String? {
            arguments.firstIndex(of: name).flatMap { $0 + 1 < arguments.count ? arguments[$0 + 1] : nil }
        }
        let quick = arguments.contains("--quick")
        let runs = Int(option("--runs") ?? (quick ? "1" : "3")) ?? 3
        let only = option("--scenario")
        let binaries = option("--bin") ?? ".build/release"
        let bridgePath = binaries + "/ditto-mqtt-bridge"
        let relayPath = binaries + "/mqtt-relay"
        for path in [bridgePath, relayPath] where !FileManager.default.isExecutableFile(atPath: path) {
            print("bridge-bench datapath: \(path) is missing; build with `swift build -c release` (scripts/bench.sh does)")
            return
        }
        let seconds = quick ? 2.0 : 5.0
        var report: [String: [String: Result]] = [:]
        print("== datapath: bridge (real process, shipped settings: persistent sessions, spool) vs zero-work relay")
        print("   \(devices) devices, ~128-byte JSON payloads, \(Int(seconds)) s per run, median of \(runs) run(s)")
        for scenario in scenarios(quick: quick) where only == nil || only == scenario.name {
            var results: [String: [Result]] = [:]
            for _ in 0..<runs {
                results["bridge", default: []].append(try await measure(scenario, subject: .bridge(bridgePath), seconds: seconds))
                if !scenario.downlink {
                    results["relay", default: []].append(try await measure(scenario, subject: .relay(relayPath), seconds: seconds))
                }
            }
            let medians = results.mapValues(median)
            report[scenario.name] = medians
            printRow(scenario, medians)
        }
        let sha = (try? shell("git", ["rev-parse", "--short", "HEAD"]))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "unknown"
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
        let path = option("--out") ?? "bench-results/datapath-\(sha)-\(stamp).json"
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let document = Document(commit: sha, date: stamp, runs: runs, seconds: seconds, scenarios: report)
        try encoder.encode(document).write(to: URL(fileURLWithPath: path))
        print("wrote \(path)")
    }

    struct Document: Codable {
        var commit: String
        var date: String
        var runs: Int
        var seconds: Double
        var scenarios: [String: [String: Result]]
    }

    static func median(_ results: [Result]) -> Result {
        func mid(_ key: (Result) -> Double) -> Double {
            let sorted = results.map(key).sorted()
            return sorted[sorted.count / 2]
        }
        var result = results[0]
        result.throughput = mid(\.throughput)
        result.p50 = mid(\.p50)
        result.p99 = mid(\.p99)
        result.max = mid(\.max)
        result.cpuMicrosecondsPerMessage = mid(\.cpuMicrosecondsPerMessage)
        result.peakRSSKiB = Int(mid { Double($0.peakRSSKiB) })
        return result
    }

    static func printRow(_ scenario: Scenario, _ medians: [String: Result]) {
        guard let bridge = medians["bridge"] else { return }
        func line(_ name: String, _ r: Result) -> String {
            "\(name.padding(toLength: 7, withPad: " ", startingAt: 0)) \(String(Int(r.throughput)).leftPad(7)) msg/s  "
                + "p50 \(format(r.p50).leftPad(6)) µs  p99 \(format(r.p99).leftPad(7)) µs  max \(format(r.max).leftPad(7)) µs  "
                + "CPU \(format(r.cpuMicrosecondsPerMessage).leftPad(5)) µs/msg  RSS \(r.peakRSSKiB / 1024) MiB  "
                + "lost \(r.sent - r.received)  reordered \(r.outOfOrder)"
        }
        print("-- \(scenario.name)")
        print("   " + line("bridge", bridge))
        if let relay = medians["relay"] {
            print("   " + line("relay", relay))
            print("   ratio   throughput \(String(format: "%.2f", bridge.throughput / max(relay.throughput, 1))) x, "
                  + "CPU per message \(String(format: "%.2f", bridge.cpuMicrosecondsPerMessage / max(relay.cpuMicrosecondsPerMessage, 0.001))) x, "
                  + "p99 +\(format(bridge.p99 - relay.p99)) µs")
        }
    }

    enum Subject {
        case bridge(String)
        case relay(String)
    }

    // MARK: one measurement

    static func measure(_ scenario: Scenario, subject: Subject, seconds: Double) async throws -> Result {
        let deviceBroker = try TestBroker()
        let dittoBroker = scenario.twoBrokers ? try TestBroker() : deviceBroker
        let directory = deviceBroker.directory.appendingPathComponent("subject")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let process = Process()
        switch subject {
        case .bridge(let path):
            let config = directory.appendingPathComponent("bridge.yaml")
            try bridgeConfig(devicePort: deviceBroker.port, dittoPort: dittoBroker.port, qos: scenario.qos,
                             spool: directory.appendingPathComponent("spool").path).write(to: config, atomically: true, encoding: .utf8)
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = ["run", "--config", config.path, "--log-level", "error"]
        case .relay(let path):
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = ["--source-port", "\(deviceBroker.port)", "--target-port", "\(dittoBroker.port)",
                                 "--filter", "devices/#", "--prefix", "ditto/in", "--qos", "\(scenario.qos.rawValue)"]
        }
        let logPath = FileManager.default.temporaryDirectory.appendingPathComponent("datapath-\(scenario.name.replacingOccurrences(of: "/", with: "-"))-\(process.arguments?.first == "run" ? "bridge" : "relay").log").path
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: logPath)
        try process.run()
        defer {
            if process.isRunning {
                process.terminate()
                process.waitUntilExit()
            }
            if scenario.twoBrokers { dittoBroker.stop() }
            deviceBroker.stop()
        }
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let loop = MQTTEventLoop(name: "bench load")
        let receiverLoop = MQTTEventLoop(name: "bench receive")
        let receiver = Receiver(devices: devices)
        let dittoSide = try MosquittoClient(
            configuration: dittoBroker.clientConfiguration(clientID: "bench-ditto"), logger: logger, eventLoop: receiverLoop)
        await receiverLoop.submit { dittoSide.setHandlers(message: { receiver.receive($0) }) }
        try await dittoSide.connect()
        try await dittoSide.subscribe([Subscription(filter: "ditto/in/#", qos: scenario.qos)])

        if scenario.downlink {
            defer { Task { await dittoSide.disconnect() } }
            return try await measureDownlink(scenario, deviceBroker: deviceBroker, dittoSide: dittoSide, receiver: receiver,
                                             loop: loop, pid: process.processIdentifier, seconds: seconds, logger: logger)
        }
        let generator = try Generator(broker: deviceBroker, loop: loop, qos: scenario.qos, logger: logger)
        try await generator.connect()
        // Ready: a probe gets through.
        let readyBy = ContinuousClock.now + .seconds(20)
        while receiver.count == 0, ContinuousClock.now < readyBy {
            await generator.probe()
            try await Task.sleep(for: .milliseconds(100))
        }
        try await Task.sleep(for: .milliseconds(300))
        receiver.reset()
        let cpuBefore = cpuTicks(process.processIdentifier)
        let start = ContinuousClock.now
        let sent = await generator.run(rate: scenario.rate, seconds: seconds)
        // Drain: wait until everything arrived or nothing moves for a second.
        var last = -1
        while receiver.count < sent, receiver.count != last {
            last = receiver.count
            try await Task.sleep(for: .seconds(1))
        }
        let cpuAfter = cpuTicks(process.processIdentifier)
        _ = start
        var result = receiver.result()
        result.sent = sent
        result.cpuMicrosecondsPerMessage = Double(cpuAfter - cpuBefore) * 1_000_000 / Double(clockTicks) / Double(max(result.received, 1))
        result.peakRSSKiB = peakRSS(process.processIdentifier)
        await generator.disconnect()
        await dittoSide.disconnect()
        await loop.shutdown()
        await receiverLoop.shutdown()
        return result
    }

    static func measureDownlink(_ scenario: Scenario, deviceBroker: TestBroker, dittoSide: MosquittoClient, receiver: Receiver,
                                loop: MQTTEventLoop, pid: Int32, seconds: Double, logger: Logger) async throws -> Result {
        // A device that answers every request on its response topic at once, on its own loop thread.
        let device = try MosquittoClient(configuration: deviceBroker.clientConfiguration(clientID: "bench-device"),
                                         logger: logger, eventLoop: loop)
        await loop.submit {
            device.setHandlers(message: { request in
                guard let responseTopic = request.properties.responseTopic else { return }
                var properties = PublishProperties(contentType: "application/json", correlationData: request.properties.correlationData)
                properties.userProperties = [UserProperty(name: "status", value: "200")]
                _ = device.publishNow(to: responseTopic, payload: Array(#"{"ok":true}"#.utf8), qos: .atLeastOnce,
                                      properties: properties, token: 0)
            })
        }
        try await device.connect()
        try await device.subscribe([Subscription(filter: "devices/+/inbox/#", qos: .atLeastOnce)])
        try await Task.sleep(for: .seconds(1))
        let interval = Duration.seconds(1) / (scenario.rate ?? 1_000)
        let total = Int(Double(scenario.rate ?? 1_000) * seconds)
        receiver.reset()
        let cpuBefore = cpuTicks(pid)
        var next = ContinuousClock.now
        for index in 0..<total {
            let thing = "org.bench:dev-\(String(format: "%02d", index % devices))"
            let id = "rt-\(index)-\(monotonicNanoseconds())"
            let json = #"{"topic":"org.bench/\#(thing.dropFirst(10))/things/live/messages/ping","headers":{"correlation-id":"\#(id)","content-type":"application/json"},"path":"/inbox/messages/ping","value":{"i":\#(index)}}"#
            try await dittoSide.publish(to: "ditto/out/\(thing)", payload: Array(json.utf8), qos: .atLeastOnce,
                                        properties: PublishProperties(contentType: "application/vnd.eclipse.ditto+json",
                                                                      responseTopic: "ditto/in/\(thing)", correlationData: Array(id.utf8)))
            next += interval
            let now = ContinuousClock.now
            if next > now { try await Task.sleep(until: next) }
        }
        var last = -1
        while receiver.count < total, receiver.count != last {
            last = receiver.count
            try await Task.sleep(for: .seconds(1))
        }
        let cpuAfter = cpuTicks(pid)
        var result = receiver.result()
        result.sent = total
        result.throughput = Double(result.received) / seconds
        result.cpuMicrosecondsPerMessage = Double(cpuAfter - cpuBefore) * 1_000_000 / Double(clockTicks) / Double(max(result.received, 1))
        result.peakRSSKiB = peakRSS(pid)
        await device.disconnect()
        await loop.shutdown()
        return result
    }

    static func bridgeConfig(devicePort: Int, dittoPort: Int, qos: QoS, spool: String) -> String {
        """
        connections:
          device: { host: 127.0.0.1, port: \(devicePort), client-id: bench-bridge-devices }
          ditto: { host: 127.0.0.1, port: \(dittoPort), client-id: bench-bridge-ditto }
        ditto: { qos: \(qos.rawValue) }
        defaults: { namespace: org.bench, qos: \(qos.rawValue) }
        spool: { directory: "\(spool)" }
        uplink:
          - name: telemetry
            topic: "devices/{deviceId}/telemetry/{sensor}"
            thing-id: "{namespace}:{deviceId}"
            event: { action: modified, path: "/features/{sensor}/properties/value" }
            payload: { format: json }
        downlink:
          - name: inbox
            match: { messages: { subject: "*" } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/inbox/{subject}"
            reply: { mode: mqtt5, topic: "devices/{deviceId}/reply" }
        """
    }

    // MARK: process numbers

    static let clockTicks = Int(sysconf(Int32(_SC_CLK_TCK)))

    /// utime + stime of a process, in clock ticks (/proc/PID/stat fields 14 and 15).
    static func cpuTicks(_ pid: Int32) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")")
        else { return 0 }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After the command: field 3 is at index 0, so utime (14) is at 11 and stime (15) at 12.
        guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return 0 }
        return user + system
    }

    /// VmHWM in KiB.
    static func peakRSS(_ pid: Int32) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
        else { return 0 }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0") ?? 0
    }

    static func shell(_ command: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [command] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        process.waitUntilExit()
        return String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }
}

func monotonicNanoseconds() -> Int64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Int64(spec.tv_sec) * 1_000_000_000 + Int64(spec.tv_nsec)
}

extension String {
    func leftPad(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}

/// Counts what arrives on the Ditto side: per-device order from the sequence number in the payload, latency
/// from the send time in it (`"s":<seq>,"d":<device>,"t":<ns>`, inside the relay's raw copy and inside the
/// bridge's live event alike).
///
/// SAFETY: `state` is guarded by its mutex; the handler runs on the receive loop's thread.
final class Receiver: @unchecked Sendable {
    struct State {
        var count = 0
        var outOfOrder = 0
        var lastSequence: [Int]
        var latencies: [Int64] = []
        var first: Int64 = 0
        var last: Int64 = 0
    }

    private let state: Mutex<State>

    init(devices: Int) {
        state = Mutex(State(lastSequence: Array(repeating: -1, count: devices)))
    }

    var count: Int { state.withLock { $0.count } }

    func reset() {
        state.withLock { state in
            state = State(lastSequence: Array(repeating: -1, count: state.lastSequence.count))
        }
    }

    func receive(_ message: MQTTMessage) {
        let now = monotonicNanoseconds()
        let payload = message.payload
        let sequence = Self.number(after: Array(#""s":"#.utf8), in: payload)
        let device = Self.number(after: Array(#""d":"#.utf8), in: payload)
        let sent = Self.number(after: Array(#""t":"#.utf8), in: payload)
        state.withLock { state in
            if state.count == 0 { state.first = now }
            state.last = now
            state.count += 1
            if let sent, sent > 0 { state.latencies.append(now - Int64(sent)) }
            if let device, let sequence, device >= 0, device < state.lastSequence.count {
                if sequence <= state.lastSequence[device] { state.outOfOrder += 1 }
                state.lastSequence[device] = max(state.lastSequence[device], sequence)
            }
        }
    }

    func result() -> DataPathBenchmarks.Result {
        state.withLock { state in
            var result = DataPathBenchmarks.Result()
            result.received = state.count
            let span = Double(state.last - state.first) / 1e9
            result.throughput = span > 0 ? Double(state.count) / span : 0
            let sorted = state.latencies.sorted()
            if !sorted.isEmpty {
                func at(_ p: Double) -> Double { Double(sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * p))]) / 1_000 }
                result.p50 = at(0.5)
                result.p99 = at(0.99)
                result.max = at(1)
            }
            result.outOfOrder = state.outOfOrder
            return result
        }
    }

    static func number(after key: [UInt8], in bytes: [UInt8]) -> Int? {
        guard bytes.count > key.count else { return nil }
        var index = 0
        outer: while index + key.count < bytes.count {
            for offset in 0..<key.count where bytes[index + offset] != key[offset] {
                index += 1
                continue outer
            }
            var cursor = index + key.count
            var value = 0
            var digits = 0
            while cursor < bytes.count, bytes[cursor] >= 48, bytes[cursor] <= 57 {
                value = value * 10 + Int(bytes[cursor] - 48)
                cursor += 1
                digits += 1
            }
            return digits > 0 ? value : nil
        }
        return nil
    }
}

/// 20 device connections on one loop, publishing from the loop's thread at a fixed rate or as fast as the
/// broker acknowledges (QoS 1: at most 100 in flight per device; QoS 0: paced by the socket).
///
/// SAFETY: mutable state is only touched on `loop`'s thread.
final class Generator: @unchecked Sendable {
    let loop: MQTTEventLoop
    let clients: [MosquittoClient]
    let qos: QoS
    private var sequences: [Int]
    private var sent = 0
    private var limit = 0
    private var done: CheckedContinuation<Int, Never>?
    private var deadline = ContinuousClock.now
    private var perTick = 0
    private var paced = false
    private var nextDevice = 0

    init(broker: TestBroker, loop: MQTTEventLoop, qos: QoS, logger: Logger) throws {
        self.loop = loop
        self.qos = qos
        var clients: [MosquittoClient] = []
        for index in 0..<DataPathBenchmarks.devices {
            var configuration = broker.clientConfiguration(clientID: "bench-dev-\(index)")
            configuration.maxInflightPublishes = 100
            clients.append(try MosquittoClient(configuration: configuration, logger: logger, eventLoop: loop))
        }
        self.clients = clients
        sequences = Array(repeating: 0, count: clients.count)
    }

    func connect() async throws {
        await loop.submit {
            for client in self.clients {
                client.setHandlers(message: nil, publishCompleted: { _, _ in }, capacityAvailable: { [unowned self] in
                    if !self.paced { self.fill() }
                })
            }
        }
        for client in clients { try await client.connect() }
    }

    func probe() async {
        await loop.submit { _ = self.publish(device: 0, sequence: -1) }
    }

    private func publish(device: Int, sequence: Int) -> Bool {
        let client = clients[device]
        guard client.canPublishNow else { return false }
        let body = #"{"s":\#(sequence),"d":\#(device),"t":\#(monotonicNanoseconds()),"v":21.5,"u":"celsius","pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#
        _ = client.publishNow(to: "devices/dev-\(device < 10 ? "0" : "")\(device)/telemetry/temp", payload: Array(body.utf8),
                              qos: qos, token: 1)
        return true
    }

    /// Publishes for `seconds` and returns how many were sent.
    func run(rate: Int?, seconds: Double) async -> Int {
        await withCheckedContinuation { continuation in
            loop.execute { [self] in
                done = continuation
                deadline = .now + .milliseconds(Int64(seconds * 1_000))
                sent = 0
                sequences = Array(repeating: 0, count: clients.count)
                if let rate {
                    paced = true
                    perTick = max(1, rate / 1_000)
                    tick(at: .now)
                } else {
                    paced = false
                    fill()
                    checkDeadline()
                }
            }
        }
    }

    private func checkDeadline() {
        guard !paced else { return }
        if ContinuousClock.now >= deadline {
            finish()
        } else {
            loop.schedule(at: .now + .milliseconds(10)) { [self] in
                fill()
                checkDeadline()
            }
        }
    }

    private func finish() {
        if let done {
            self.done = nil
            let count = sent
            deadline = .now
            done.resume(returning: count)
        }
    }

    /// Unthrottled: as many as the in-flight windows take, round-robin over the devices.
    private func fill() {
        guard done != nil, ContinuousClock.now < deadline else { return }
        var stalled = 0
        while stalled < clients.count {
            let device = nextDevice
            nextDevice = (nextDevice + 1) % clients.count
            if publish(device: device, sequence: sequences[device]) {
                sequences[device] += 1
                sent += 1
                stalled = 0
                if qos == .atMostOnce, sent % 1_000 == 0 { break }
            } else {
                stalled += 1
            }
        }
    }

    private func tick(at time: ContinuousClock.Instant) {
        guard done != nil else { return }
        if time >= deadline { return finish() }
        for _ in 0..<perTick {
            let device = nextDevice
            nextDevice = (nextDevice + 1) % clients.count
            if publish(device: device, sequence: sequences[device]) {
                sequences[device] += 1
                sent += 1
            }
        }
        loop.schedule(at: time + .milliseconds(1)) { [self] in tick(at: time + .milliseconds(1)) }
    }

    func disconnect() async {
        for client in clients { await client.disconnect() }
    }
}
