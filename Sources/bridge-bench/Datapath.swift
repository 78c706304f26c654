import DittoProtocol
import DittoWebSocketTestSupport
import Foundation
import Logging
import MQTT
import Mosquitto
import MosquittoTestSupport
import Synchronization

/// `bridge-bench datapath`: the bridge as a real process against the zero-work relay (`mqtt-relay`), on fresh
/// private brokers per measurement, with the load from clients in this process. See docs/PERFORMANCE.md.
enum Datapath {
    enum Subject: String, Codable, CaseIterable, Sendable {
        /// The bridge; `mqtt-relay` on the project's event loop; `mqtt-relay --threaded-loop` on libmosquitto's
        /// own threaded loop (uplink only), which tells what the project's loop costs from what libmosquitto does.
        case bridge, relay
        case relayThreaded = "relay-threaded"

        /// The references the bridge's numbers are divided by.
        static let references: [Subject] = [.relay, .relayThreaded]
    }

    struct Scenario: Sendable {
        enum Kind: String, Sendable { case uplink, downlink }
        /// How the bridge reaches Ditto: a Ditto-side broker, or Ditto's WebSocket binding `/ws/2` (here a sink in
        /// this process, ``DittoWebSocketSink``).
        enum Transport: String, Sendable { case mqtt, websocket }

        private(set) var name: String
        let kind: Kind
        let qos: QoS
        /// Messages (or round trips) per second; nil: as fast as the subject keeps up (uplink: closed loop with
        /// a window; downlink: one request at a time).
        let rate: Int?
        let brokers: Int
        /// Uplink over one connection, the device topics `dev/<n>/telemetry` cycling over this many topics (so
        /// the bridge keeps what each topic decides for that many); nil: the 20 devices' topics.
        var topics: Int? = nil
        private(set) var transport = Transport.mqtt

        /// The threaded relay only where the loop is compared: the downlink has no such mode, and a relay keeps
        /// nothing per topic, so one reference is enough for the `topics` scenarios (and keeps `--runs 3` short).
        /// Over WebSocket the bridge alone: the relays have no WebSocket side; its MQTT twin is the reference.
        var subjects: [Subject] {
            if transport == .websocket { return [.bridge] }
            return kind == .uplink && topics == nil ? Subject.allCases : [.bridge, .relay]
        }

        /// The MQTT scenario with the same load that a WebSocket scenario is compared with.
        var mqttTwin: String? { transport == .websocket ? String(name.dropFirst(Self.webSocketPrefix.count)) : nil }

        static let webSocketPrefix = "ws-"

        var summary: String {
            transport == .websocket ? mqttSummary + ", Ditto over its WebSocket binding (/ws/2)" : mqttSummary
        }

        private var mqttSummary: String {
            let pace = rate.map { "\($0) msg/s" } ?? (kind == .uplink ? "unthrottled" : "sequential")
            switch kind {
            case .uplink:
                if let topics {
                    return "uplink QoS \(qos.rawValue), \(pace), one connection cycling over \(topics) topics dev/<n>/telemetry"
                }
                return "uplink QoS \(qos.rawValue), \(pace), \(brokers == 1 ? "one broker" : "two brokers (device -> Ditto side)")"
            case .downlink:
                return "downlink round trips (live message -> MQTT 5 device -> response), \(rate.map { "\($0)/s" } ?? "one at a time")"
            }
        }

        static let all: [Scenario] = overMQTT + overMQTT.filter { $0.brokers == 1 && $0.topics == nil }.map { twin in
            var scenario = twin
            scenario.name = webSocketPrefix + twin.name
            scenario.transport = .websocket
            return scenario
        }

        static let overMQTT: [Scenario] = [
            Scenario(name: "uplink-q0-max", kind: .uplink, qos: .atMostOnce, rate: nil, brokers: 1),
            Scenario(name: "uplink-q1-max", kind: .uplink, qos: .atLeastOnce, rate: nil, brokers: 1),
            Scenario(name: "uplink-q0-max-2b", kind: .uplink, qos: .atMostOnce, rate: nil, brokers: 2),
            Scenario(name: "uplink-q1-max-2b", kind: .uplink, qos: .atLeastOnce, rate: nil, brokers: 2),
            Scenario(name: "uplink-q0-1000", kind: .uplink, qos: .atMostOnce, rate: 1_000, brokers: 1),
            Scenario(name: "uplink-q1-1000", kind: .uplink, qos: .atLeastOnce, rate: 1_000, brokers: 1),
            Scenario(name: "uplink-q0-5000", kind: .uplink, qos: .atMostOnce, rate: 5_000, brokers: 1),
            Scenario(name: "uplink-q1-5000", kind: .uplink, qos: .atLeastOnce, rate: 5_000, brokers: 1),
            Scenario(name: "downlink-1000", kind: .downlink, qos: .atLeastOnce, rate: 1_000, brokers: 1),
            Scenario(name: "downlink-seq", kind: .downlink, qos: .atLeastOnce, rate: nil, brokers: 1),
            Scenario(name: "uplink-q1-topics-20", kind: .uplink, qos: .atLeastOnce, rate: 2_000, brokers: 1, topics: 20),
            Scenario(name: "uplink-q1-topics-50k", kind: .uplink, qos: .atLeastOnce, rate: 2_000, brokers: 1, topics: 50_000),
            Scenario(name: "uplink-q1-topics-200k", kind: .uplink, qos: .atLeastOnce, rate: 2_000, brokers: 1, topics: 200_000),
        ]

        /// The device topic of message `index` in a `topics` scenario.
        static func cycledTopic(_ index: Int, of topics: Int) -> String { "dev/\(index % topics)/telemetry" }
    }

    struct Settings: Codable {
        var runs = 1
        var quick = false
        var scenarios: [String] = []
        var subjects: [Subject] = Subject.allCases
        var output: String?
        var binDirectory: String
        /// Length of each measured window.
        var seconds = 4.0
        /// Unthrottled uplink: at most this many messages (or `seconds`, whichever ends first).
        var unthrottledCount = 100_000
        var warmup = 2_000
        /// Unthrottled uplink: messages sent but not yet received, at most.
        var window = 500
        var devices = 20
        var deviceConnections = 20
        /// Give the bridge an on-disk spool (a fresh directory per measurement).
        var spool = false

        static let usage = """
            usage: bridge-bench datapath [--runs N] [--quick] [--scenario NAME]... [--subject S]
                                         [--seconds S] [--count N] [--window N] [--device-connections N]
                                         [--spool] [--output FILE] [--bin-dir DIR] [--list]
              --runs N        run every scenario N times and report the median of each number (default 1)
              --quick         short smoke run: 1 s windows, 10,000 messages at most, small warm-up
              --scenario NAME only this scenario (repeatable); --list prints them. The ws- scenarios reach Ditto
                              over its WebSocket binding (the bridge only); selected together with their MQTT
                              twin (the name without ws-), the two run interleaved and the report compares them
              --subject S     only this subject: bridge, relay or relay-threaded (repeatable)
              --seconds S     measured window per scenario (default 4)
              --count N       unthrottled uplink: at most N messages (default 100000)
              --window N      unthrottled uplink: at most N messages sent and not yet received (default 500)
              --device-connections N  MQTT connections the 20 devices share (default 20: one each)
              --spool         give the bridge an on-disk spool (config key `spool`; bridges that have one)
              --output FILE   JSON results (default bench-results/datapath-<commit>-<time>.json)
              --bin-dir DIR   where ditto-mqtt-bridge and mqtt-relay are (default: next to bridge-bench)
            """

        static func parse(_ arguments: [String]) throws -> Settings? {
            let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
            var settings = Settings(binDirectory: URL(fileURLWithPath: executable).deletingLastPathComponent().path)
            var quick = false
            var explicitSubjects = false
            var seconds: Double?
            var count: Int?
            var remaining = arguments[...]
            func value(_ option: String) throws -> String {
                guard let next = remaining.popFirst() else { throw BenchFailure("\(option) needs a value\n\(usage)") }
                return next
            }
            func number(_ option: String, _ range: ClosedRange<Int>) throws -> Int {
                let text = try value(option)
                guard let number = Int(text), range.contains(number) else {
                    throw BenchFailure("\(option) must be a whole number in \(range.lowerBound)...\(range.upperBound), not '\(text)'")
                }
                return number
            }
            while let argument = remaining.popFirst() {
                switch argument {
                case "--runs": settings.runs = try number(argument, 1...99)
                case "--quick": quick = true
                case "--scenario":
                    let name = try value(argument)
                    guard Scenario.all.contains(where: { $0.name == name }) else {
                        throw BenchFailure("unknown scenario '\(name)'; known: \(Scenario.all.map(\.name).joined(separator: ", "))")
                    }
                    settings.scenarios.append(name)
                case "--subject":
                    let name = try value(argument)
                    guard let subject = Subject(rawValue: name) else {
                        throw BenchFailure("--subject must be one of \(Subject.allCases.map(\.rawValue).joined(separator: ", ")), not '\(name)'")
                    }
                    if !explicitSubjects { settings.subjects = [] }
                    explicitSubjects = true
                    settings.subjects.append(subject)
                case "--seconds":
                    let text = try value(argument)
                    guard let parsed = Double(text), parsed >= 0.2, parsed <= 600 else {
                        throw BenchFailure("--seconds must be a number of seconds in 0.2...600, not '\(text)'")
                    }
                    seconds = parsed
                case "--count": count = try number(argument, 100...10_000_000)
                case "--window": settings.window = try number(argument, 1...1_000_000)
                case "--device-connections": settings.deviceConnections = try number(argument, 1...settings.devices)
                case "--spool": settings.spool = true
                case "--output": settings.output = try value(argument)
                case "--bin-dir": settings.binDirectory = try value(argument)
                case "--list":
                    for scenario in Scenario.all { say("\(scenario.name.padding(toLength: 21, withPad: " ", startingAt: 0)) \(scenario.summary)") }
                    return nil
                case "-h", "--help":
                    say(usage)
                    return nil
                default:
                    throw BenchFailure("unknown option '\(argument)'\n\(usage)")
                }
            }
            if quick {
                settings.quick = true
                settings.seconds = 1
                settings.unthrottledCount = 10_000
                settings.warmup = 300
            }
            if let seconds { settings.seconds = seconds }
            if let count { settings.unthrottledCount = count }
            return settings
        }
    }

    /// The numbers of one measurement (uplink: per message; downlink: per round trip). Latencies in µs.
    struct Measurement: Codable {
        var sent = 0.0
        var received = 0.0
        var lost = 0.0
        var duplicates = 0.0
        var reordered = 0.0
        /// Downlink: responses that were not 2xx.
        var errorResponses = 0.0
        var seconds = 0.0
        var throughput = 0.0
        var latencyP50Microseconds = 0.0
        var latencyP99Microseconds = 0.0
        var latencyMaxMicroseconds = 0.0
        /// The subject's utime + stime over the measured window, per message.
        var cpuMicrosecondsPerMessage = 0.0
        /// The subject's CPU time over the measured window, in % of one core.
        var cpuPercent = 0.0
        var peakRSSMiB = 0.0
        /// RssAnon at the end of the measurement: the heap, what the subject keeps (per topic, per message).
        var rssAnonMiB = 0.0
        /// The broker(s) and this benchmark process, for context (they share the machine with the subject).
        var brokerCPUMicrosecondsPerMessage = 0.0
        var loadCPUMicrosecondsPerMessage = 0.0

        static var fields: [WritableKeyPath<Measurement, Double>] {
            [
            \.sent, \.received, \.lost, \.duplicates, \.reordered, \.errorResponses, \.seconds, \.throughput,
            \.latencyP50Microseconds, \.latencyP99Microseconds, \.latencyMaxMicroseconds, \.cpuMicrosecondsPerMessage,
            \.cpuPercent, \.peakRSSMiB, \.rssAnonMiB, \.brokerCPUMicrosecondsPerMessage, \.loadCPUMicrosecondsPerMessage,
            ]
        }

        /// Each number's median over the runs, independently.
        static func median(_ runs: [Measurement]) -> Measurement {
            var result = Measurement()
            for field in fields {
                let values = runs.map { $0[keyPath: field] }.sorted()
                guard !values.isEmpty else { continue }
                let middle = values.count / 2
                result[keyPath: field] = values.count % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2
            }
            return result
        }
    }

    struct ScenarioReport: Codable {
        var name: String
        var description: String
        var runs: [String: [Measurement]]
        var median: [String: Measurement]
        /// bridge / relay of the medians.
        var throughputRatio: Double?
        var cpuRatio: Double?
        /// bridge / relay-threaded of the medians.
        var throughputRatioThreaded: Double?
        var cpuRatioThreaded: Double?
        /// A WebSocket scenario's bridge against its MQTT twin's, measured in the same run.
        var comparison: WebSocketComparison?
    }

    /// A WebSocket scenario's bridge next to the bridge of its MQTT twin, and issue 24's goals for the pair.
    struct WebSocketComparison: Codable {
        var mqttScenario: String
        var webSocket: Measurement
        var mqtt: Measurement
        /// CPU per message (or round trip) over WebSocket / over MQTT.
        var cpuRatio: Double?
        /// Each goal that applies to the scenario: what it says, and whether the medians meet it.
        var goals: [Goal]

        struct Goal: Codable {
            var goal: String
            var met: Bool
        }

        static let maximumUplinkCPURatio = 1.5
        static let maximumLatencyMicroseconds = 1_000.0

        init?(_ scenario: Scenario, webSocket: ScenarioReport, mqtt: ScenarioReport) {
            guard let ws = webSocket.median[Subject.bridge.rawValue], let twin = mqtt.median[Subject.bridge.rawValue] else { return nil }
            mqttScenario = mqtt.name
            self.webSocket = ws
            self.mqtt = twin
            cpuRatio = twin.cpuMicrosecondsPerMessage > 0 ? ws.cpuMicrosecondsPerMessage / twin.cpuMicrosecondsPerMessage : nil
            goals = []
            switch scenario.kind {
            case .uplink:
                goals.append(Goal(goal: "CPU per message <= \(Self.maximumUplinkCPURatio) x MQTT's",
                                  met: cpuRatio.map { $0 <= Self.maximumUplinkCPURatio } ?? false))
                if scenario.rate == 1_000 {
                    goals.append(Goal(goal: "p99 < 1 ms", met: ws.latencyP99Microseconds < Self.maximumLatencyMicroseconds))
                }
            case .downlink:
                if scenario.rate == 1_000 {
                    goals.append(Goal(goal: "round trip p50 < 1 ms", met: ws.latencyP50Microseconds < Self.maximumLatencyMicroseconds))
                }
            }
            // Everything sent must arrive: a loss would make the other numbers meaningless.
            goals.append(Goal(goal: "nothing lost", met: ws.lost == 0))
        }
    }

    /// Puts each WebSocket scenario right after its MQTT twin when both are selected, as one group whose runs
    /// interleave; every other scenario is a group of its own.
    static func groupedWithTwins(_ selected: [Scenario]) -> [[Scenario]] {
        let names = Set(selected.map(\.name))
        var groups: [[Scenario]] = []
        for scenario in selected {
            if let twin = scenario.mqttTwin, names.contains(twin) { continue }
            groups.append([scenario] + selected.filter { $0.mqttTwin == scenario.name })
        }
        return groups
    }

    struct Report: Codable {
        var commit: String
        var date: String
        var host: [String: String]
        var settings: Settings
        var scenarios: [ScenarioReport]
    }

    static let logger: Logger = {
        var logger = Logger(label: "bench-datapath")
        logger.logLevel = .error
        return logger
    }()

    static func run(arguments: [String]) async throws {
        guard let settings = try Settings.parse(arguments) else { return }
        let signalSources = Children.installSignalHandlers()
        defer { signalSources.forEach { $0.cancel() } }
        let selected = settings.scenarios.isEmpty
            ? Scenario.all
            : Scenario.all.filter { settings.scenarios.contains($0.name) }
        let commit = commitDescription()
        say("== datapath: bridge vs zero-work relays, \(settings.devices) devices, \(Telemetry.size)-byte payloads, "
            + "\(settings.seconds) s windows, \(settings.runs) run(s), commit \(commit)")
        say("   subjects from \(settings.binDirectory); CPU from the process CPU-time clocks (ns), peak RSS = VmHWM")

        var reports: [ScenarioReport] = []
        for group in groupedWithTwins(selected) {
            let units = group.flatMap { scenario in
                scenario.subjects.filter(settings.subjects.contains).map { (scenario: scenario, subject: $0) }
            }
            let measured = group.filter { scenario in units.contains { $0.scenario.name == scenario.name } }
            guard !measured.isEmpty else { continue }
            for scenario in measured { say("\n-- \(scenario.name): \(scenario.summary)") }
            var runs: [String: [String: [Measurement]]] = [:]
            for run in 0..<settings.runs {
                // Alternate who goes first, so a drift in the machine's load does not favour one subject (or one
                // transport: a WebSocket scenario's runs alternate with its MQTT twin's).
                for (scenario, subject) in run % 2 == 0 ? units : units.reversed() {
                    let measurement = scenario.kind == .uplink
                        ? try await measureUplink(scenario, subject, settings)
                        : try await measureDownlink(scenario, subject, settings)
                    runs[scenario.name, default: [:]][subject.rawValue, default: []].append(measurement)
                    let label = measured.count > 1 ? "\(scenario.name) \(subject.rawValue)" : subject.rawValue
                    say("   run \(run + 1) \(label.padding(toLength: max(14, label.count), withPad: " ", startingAt: 0)) "
                        + "\(whole(measurement.throughput)) /s, p99 \(whole(measurement.latencyP99Microseconds)) µs, "
                        + "CPU \(decimal(measurement.cpuMicrosecondsPerMessage)) µs/\(scenario.kind == .uplink ? "msg" : "round trip"), "
                        + "lost \(whole(measurement.lost))")
                }
            }
            for scenario in measured {
                let medians = (runs[scenario.name] ?? [:]).mapValues(Measurement.median)
                var report = ScenarioReport(name: scenario.name, description: scenario.summary, runs: runs[scenario.name] ?? [:],
                                            median: medians)
                report.throughputRatio = ratio(medians, \.throughput, to: .relay)
                report.cpuRatio = ratio(medians, \.cpuMicrosecondsPerMessage, to: .relay)
                report.throughputRatioThreaded = ratio(medians, \.throughput, to: .relayThreaded)
                report.cpuRatioThreaded = ratio(medians, \.cpuMicrosecondsPerMessage, to: .relayThreaded)
                if let twin = scenario.mqttTwin, let twinReport = reports.first(where: { $0.name == twin }) {
                    report.comparison = WebSocketComparison(scenario, webSocket: report, mqtt: twinReport)
                }
                if measured.count > 1 { say("\n-- \(scenario.name)") }
                printTable(report, scenario: scenario, runs: settings.runs)
                reports.append(report)
            }
        }
        printSummary(reports)
        printWebSocketComparisons(reports)

        let report = Report(commit: commit, date: ISO8601DateFormatter().string(from: Date()), host: hostDescription(),
                            settings: settings, scenarios: reports)
        let path = settings.output ?? defaultOutputPath(commit: commit)
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(report).write(to: URL(fileURLWithPath: path))
        say("\nresults: \(path)")
    }

    /// The bridge's median over `reference`'s; nil when one of them was not measured.
    static func ratio(_ medians: [String: Measurement], _ field: KeyPath<Measurement, Double>, to reference: Subject) -> Double? {
        guard let bridge = medians[Subject.bridge.rawValue], let other = medians[reference.rawValue], other[keyPath: field] > 0 else {
            return nil
        }
        return bridge[keyPath: field] / other[keyPath: field]
    }

    // MARK: - Subjects

    /// Where the bridge reaches Ditto: the Ditto-side broker's port, or the WebSocket sink.
    enum DittoEndpoint {
        case broker(port: Int)
        case webSocket(url: String, username: String, passwordFile: String)
    }

    static func bridgeConfig(devicePort: Int, ditto: DittoEndpoint, qos: QoS, spool: String?, cycledTopics: Bool = false) -> String {
        // Session settings are the bridge's defaults (as shipped); the brokers are fresh per measurement. The
        // whole JSON payload becomes the live event's value, so the send timestamp inside it reaches the receiver.
        let dittoConnection = switch ditto {
        case .broker(let port):
            """
              ditto: { host: 127.0.0.1, port: \(port), client-id: bench-bridge-ditto, reconnect: { initial: 100ms, maximum: 1s } }
            ditto: { qos: \(qos.rawValue) }
            """
        case .webSocket(let url, let username, let passwordFile):
            // Over WebSocket `ditto:` takes no QoS (frames on one socket); the device side keeps the scenario's.
            """
              ditto: { transport: websocket, url: "\(url)", username: \(username), password-file: "\(passwordFile)", reconnect: { initial: 100ms, maximum: 1s } }
            """
        }
        return """
        connections:
          device: { host: 127.0.0.1, port: \(devicePort), client-id: bench-bridge-devices, reconnect: { initial: 100ms, maximum: 1s } }
        \(dittoConnection)
        defaults: { namespace: org.bench, qos: \(qos.rawValue) }
        uplink:
          - name: telemetry
            topic: "devices/{deviceId}/telemetry/{sensor}"
            thing-id: "{namespace}:{deviceId}"
            event: { action: modified, path: "/features/{sensor}/properties/value" }
            payload: { format: json }
        \(cycledTopics ? Self.cycledTopicsRule : "")downlink:
          - name: inbox
            match: { messages: { subject: "*" } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/inbox/{subject}"
            reply: { mode: mqtt5, topic: "devices/{deviceId}/reply", timeout: 5s }

        """ + (spool.map { "spool: { directory: \"\($0)\" }\n" } ?? "")
    }

    static let relayPrefix = "relay"

    /// The uplink rule of the `topics` scenarios (one thing per topic, like a gateway's topic per point).
    static let cycledTopicsRule = """
      - name: points
        topic: "dev/{deviceId}/telemetry"
        thing-id: "{namespace}:point-{deviceId}"
        event: { action: modified, path: "/features/telemetry/properties/value" }
        payload: { format: json }

    """

    /// Starts the subject; with `webSocket`, the bridge reaches Ditto over that sink instead of `dittoPort`.
    static func startSubject(_ subject: Subject, kind: Scenario.Kind, devicePort: Int, dittoPort: Int, qos: QoS, directory: URL,
                             settings: Settings, cycledTopics: Bool = false, webSocket: DittoWebSocketSink? = nil) throws -> ChildProcess {
        let log = directory.appendingPathComponent("\(subject.rawValue).log").path
        switch subject {
        case .bridge:
            let config = directory.appendingPathComponent("bridge.yaml")
            let spool = settings.spool ? directory.appendingPathComponent("spool").path : nil
            var ditto = DittoEndpoint.broker(port: dittoPort)
            if let webSocket {
                let passwordFile = directory.appendingPathComponent("ditto-password")
                try webSocket.password.write(to: passwordFile, atomically: true, encoding: .utf8)
                ditto = .webSocket(url: webSocket.url, username: webSocket.username, passwordFile: passwordFile.path)
            }
            try bridgeConfig(devicePort: devicePort, ditto: ditto, qos: qos, spool: spool, cycledTopics: cycledTopics)
                .write(to: config, atomically: true, encoding: .utf8)
            return try ChildProcess(name: "ditto-mqtt-bridge", executable: settings.binDirectory + "/ditto-mqtt-bridge",
                                    arguments: ["run", "--config", config.path, "--log-level", "warning"], logFile: log)
        case .relay, .relayThreaded:
            return try ChildProcess(name: "mqtt-relay", executable: settings.binDirectory + "/mqtt-relay",
                                    arguments: ["--source-port", "\(devicePort)", "--target-port", "\(dittoPort)",
                                                "--mode", kind.rawValue,
                                                "--filter", cycledTopics ? "dev/+/telemetry" : "devices/+/telemetry/+",
                                                "--prefix", relayPrefix, "--qos", "\(qos.rawValue)"]
                                        + (subject == .relayThreaded ? ["--threaded-loop"] : []),
                                    logFile: log)
        }
    }

    /// Fresh brokers (registered for cleanup) and a scratch directory for one measurement.
    static func withBrokers<T>(_ count: Int, _ body: ([TestBroker], URL) async throws -> T) async throws -> T {
        // No queue limit: a subject that falls behind must show as slow, not lose messages at the broker.
        var brokers: [TestBroker] = []
        defer {
            for broker in brokers {
                if let pid = broker.processIdentifier { Children.unregister(pid) }
                broker.stop()
            }
        }
        for _ in 0..<count {
            let broker = try TestBroker(.init(maxQueuedMessages: 0))
            if let pid = broker.processIdentifier { Children.register(pid) }
            brokers.append(broker)
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bench-datapath-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        return try await body(brokers, directory)
    }

    static func client(_ broker: TestBroker, _ id: String) async throws -> MosquittoClient {
        var configuration = broker.clientConfiguration(clientID: id)
        configuration.maxInflightPublishes = 10_000
        let client = try MosquittoClient(configuration: configuration, logger: logger)
        try await client.connect()
        return client
    }

    struct CPUReading {
        var subject: Int64
        var brokers: Int64
        var load: Int64
        var time: Int64

        init(subject: ChildProcess, brokers: [TestBroker]) throws {
            guard let reading = ProcFS.cpuMicroseconds(subject.pid) else {
                throw BenchFailure("\(subject.name) is gone:\n\(subject.logTail())")
            }
            self.subject = reading
            self.brokers = brokers.compactMap { $0.processIdentifier.flatMap(ProcFS.cpuMicroseconds) }.reduce(0, +)
            load = ProcFS.cpuMicroseconds(getpid()) ?? 0
            time = monotonicNanoseconds()
        }
    }

    static func fill(_ measurement: inout Measurement, from start: CPUReading, to end: CPUReading, subject: ChildProcess, count: Int) {
        let perMessage = { (microseconds: Int64) in count > 0 ? Double(microseconds) / Double(count) : 0 }
        measurement.cpuMicrosecondsPerMessage = perMessage(end.subject - start.subject)
        measurement.brokerCPUMicrosecondsPerMessage = perMessage(end.brokers - start.brokers)
        measurement.loadCPUMicrosecondsPerMessage = perMessage(end.load - start.load)
        measurement.cpuPercent = Double(end.subject - start.subject) / (Double(end.time - start.time) / 1_000) * 100
        measurement.peakRSSMiB = Double(ProcFS.statusKiB("VmHWM", subject.pid) ?? 0) / 1_024
        measurement.rssAnonMiB = Double(ProcFS.statusKiB("RssAnon", subject.pid) ?? 0) / 1_024
    }

    /// Sends probes until one comes through the subject: it is connected and subscribed on both sides.
    static func waitUntilFlowing(_ subject: ChildProcess, probe: (Int) async throws -> Void, arrived: () -> Bool) async throws {
        let deadline = monotonicNanoseconds() + 30_000_000_000
        var attempt = 0
        while !arrived() {
            guard subject.isRunning else { throw BenchFailure("\(subject.name) exited:\n\(subject.logTail())") }
            guard monotonicNanoseconds() < deadline else {
                throw BenchFailure("nothing came through \(subject.name) within 30 s:\n\(subject.logTail())")
            }
            try await probe(attempt)
            attempt += 1
            for _ in 0..<20 where !arrived() { try await Task.sleep(for: .milliseconds(10)) }
        }
    }

    // MARK: - Uplink

    static func measureUplink(_ scenario: Scenario, _ subject: Subject, _ settings: Settings) async throws -> Measurement {
        try await withBrokers(scenario.brokers) { brokers, directory in
            let deviceBroker = brokers[0]
            let dittoBroker = brokers[brokers.count - 1]
            let receiver = scenario.transport == .websocket
                ? try TelemetryReceiver()
                : try TelemetryReceiver(port: dittoBroker.port, filter: subject == .bridge ? "ditto/in/#" : relayPrefix + "/#",
                                        qos: Int32(scenario.qos.rawValue))
            return try await finally {
                let child = try startSubject(subject, kind: .uplink, devicePort: deviceBroker.port, dittoPort: dittoBroker.port,
                                             qos: scenario.qos, directory: directory, settings: settings,
                                             cycledTopics: scenario.topics != nil, webSocket: receiver.sink)
                defer { child.stop() }
                let fleet = try await DeviceFleet(port: deviceBroker.port, devices: settings.devices,
                                                  connections: scenario.topics == nil ? settings.deviceConnections : 1,
                                                  cycledTopics: scenario.topics)
                defer { fleet.close() }
                return try await uplink(scenario, settings, child: child, brokers: brokers, fleet: fleet, receiver: receiver)
            } then: {
                await receiver.close()
            }
        }
    }

    /// Runs `body`, then `cleanup` whether it threw or not (a `defer` cannot await).
    static func finally<T>(_ body: () async throws -> T, then cleanup: () async -> Void) async throws -> T {
        let result: Result<T, any Error>
        do { result = .success(try await body()) } catch { result = .failure(error) }
        await cleanup()
        return try result.get()
    }

    static func uplink(_ scenario: Scenario, _ settings: Settings, child: ChildProcess, brokers: [TestBroker], fleet: DeviceFleet,
                       receiver: TelemetryReceiver) async throws -> Measurement {
        try await waitUntilFlowing(child, probe: { try await fleet.probe(sequence: $0) }, arrived: { receiver.probes > 0 })

        // Warm-up, closed loop, not counted; with cycled topics once over all of them, so the measured messages
        // go to topics the subject has seen, the least recently seen first.
        let warmup = max(settings.warmup, scenario.topics ?? 0)
        receiver.begin(phase: 1, devices: settings.devices, expected: warmup)
        let qos = Int32(scenario.qos.rawValue)
        let warmupSent = try await fleet.send(phase: 1, qos: qos, count: warmup, rate: nil, window: settings.window,
                                              deadline: monotonicNanoseconds() + (scenario.topics == nil ? 10 : 180) * 1_000_000_000,
                                              receiver: receiver)
        await waitForDrain(receiver, sent: warmupSent, quietSeconds: 1)

        let count = scenario.rate.map { Int(Double($0) * settings.seconds) } ?? settings.unthrottledCount
        receiver.begin(phase: 2, devices: settings.devices, expected: count)
        let start = try CPUReading(subject: child, brokers: brokers)
        // At a fixed rate the count ends the window; the deadline only catches a sender that cannot keep up.
        let window = Int64(settings.seconds * (scenario.rate == nil ? 1 : 1.5) * 1e9)
        let sent = try await fleet.send(phase: 2, qos: qos, count: count, firstTopic: warmupSent, rate: scenario.rate,
                                        window: scenario.rate == nil ? settings.window : nil, deadline: start.time + window,
                                        receiver: receiver)
        await waitForDrain(receiver, sent: sent, quietSeconds: 2)
        let end = try CPUReading(subject: child, brokers: brokers)

        let stats = receiver.snapshot()
        let unique = stats.received - stats.duplicates
        var measurement = Measurement()
        measurement.sent = Double(sent)
        measurement.received = Double(unique)
        measurement.lost = Double(sent - unique)
        measurement.duplicates = Double(stats.duplicates)
        measurement.reordered = Double(stats.reordered)
        let elapsed = Double(max(stats.lastArrival, start.time + 1) - start.time) / 1e9
        measurement.seconds = elapsed
        measurement.throughput = Double(unique) / elapsed
        let sorted = stats.latencies.sorted()
        measurement.latencyP50Microseconds = percentileMicroseconds(sorted, 0.5)
        measurement.latencyP99Microseconds = percentileMicroseconds(sorted, 0.99)
        measurement.latencyMaxMicroseconds = percentileMicroseconds(sorted, 1)
        fill(&measurement, from: start, to: end, subject: child, count: unique)
        if stats.unparsable > 0 {
            say("   warning: \(stats.unparsable) messages at the receiver had no benchmark fields")
        }
        return measurement
    }

    /// Waits until everything sent arrived, or nothing new arrived for `quietSeconds` (lost messages).
    static func waitForDrain(_ receiver: TelemetryReceiver, sent: Int, quietSeconds: Double) async {
        var last = -1
        var lastChange = monotonicNanoseconds()
        while true {
            let received = receiver.uniqueReceived
            if received >= sent { return }
            let now = monotonicNanoseconds()
            if received != last {
                last = received
                lastChange = now
            } else if Double(now - lastChange) / 1e9 >= quietSeconds {
                return
            }
            try? await Task.sleep(for: .milliseconds(2))
        }
    }

    // MARK: - Downlink

    static func request(phase: String, index: Int, thing: String) throws -> [UInt8] {
        var headers = DittoHeaders()
        headers.correlationID = "\(phase)-\(index)"
        headers.contentType = "application/json"
        headers["response-required"] = "true"
        headers["timeout"] = "10s"
        return try Envelope.liveMessage(thingID: ThingID(thing), direction: .inbox, subject: "ping",
                                        payload: .json(.number(JSONNumber(index))), headers: headers).encoded()
    }

    static func measureDownlink(_ scenario: Scenario, _ subject: Subject, _ settings: Settings) async throws -> Measurement {
        try await withBrokers(1) { brokers, directory in
            let broker = brokers[0]
            let device = try await client(broker, "bench-device")
            // The MQTT 5 device: answers every request on its response topic with the same correlation data.
            let requests = device.messages
            let responder = Task {
                for await request in requests {
                    guard let responseTopic = request.properties.responseTopic else { continue }
                    _ = try? await device.publish(to: responseTopic, payload: Array(#""pong""#.utf8), qos: .atLeastOnce,
                                                  properties: PublishProperties(contentType: "application/json",
                                                                                correlationData: request.properties.correlationData))
                }
            }
            return try await finally {
                try await device.subscribe([Subscription(filter: "devices/+/inbox/#", qos: .atLeastOnce)])
                switch scenario.transport {
                case .mqtt:
                    let ditto = try await client(broker, "bench-ditto")
                    let tracker = RoundTripTracker(ditto.messages)
                    return try await finally {
                        let child = try startSubject(subject, kind: .downlink, devicePort: broker.port, dittoPort: broker.port,
                                                     qos: scenario.qos, directory: directory, settings: settings)
                        defer { child.stop() }
                        try await ditto.subscribe([Subscription(filter: "ditto/in/#", qos: .atLeastOnce)])
                        return try await downlink(scenario, settings, child: child, broker: broker, tracker: tracker) { thing, id, payload in
                            try await ditto.publish(to: "ditto/out/\(thing)", payload: payload, qos: .atLeastOnce,
                                                    properties: PublishProperties(contentType: "application/vnd.eclipse.ditto+json",
                                                                                  responseTopic: "ditto/in/\(thing)",
                                                                                  correlationData: Array(id.utf8)))
                        }
                    } then: {
                        await ditto.disconnect()
                    }
                case .websocket:
                    // Responses arrive as text frames on the sink's session thread.
                    let tracker = RoundTripTracker()
                    let sink = try DittoWebSocketSink { tracker.record(Array($0), correlationData: nil) }
                    return try await finally {
                        let child = try startSubject(subject, kind: .downlink, devicePort: broker.port, dittoPort: broker.port,
                                                     qos: scenario.qos, directory: directory, settings: settings, webSocket: sink)
                        defer { child.stop() }
                        // Before the bridge's session is up the probe goes nowhere, and the next one is sent.
                        return try await downlink(scenario, settings, child: child, broker: broker, tracker: tracker) { _, _, payload in
                            sink.send(payload)
                        }
                    } then: {
                        await sink.stop()
                    }
                }
            } then: {
                responder.cancel()
                await device.disconnect()
            }
        }
    }

    /// Sends Ditto's live messages (`send`: thing, correlation id, the envelope's bytes) and measures the round trips.
    static func downlink(_ scenario: Scenario, _ settings: Settings, child: ChildProcess, broker: TestBroker, tracker: RoundTripTracker,
                         send deliver: (String, String, [UInt8]) async throws -> Void) async throws -> Measurement {
        let things = (0..<settings.devices).map { "org.bench:" + String(format: "dev-%02d", $0) }
        func send(_ phase: String, _ index: Int) async throws {
            let thing = things[index % things.count]
            let payload = try request(phase: phase, index: index, thing: thing)
            if phase != "probe" { tracker.recordSend(index) }
            try await deliver(thing, "\(phase)-\(index)", payload)
        }
        try await waitUntilFlowing(child, probe: { try await send("probe", $0) }, arrived: { tracker.state.withLock { $0.probeAnswered } })

        tracker.begin(phase: "warmup")
        for index in 0..<(settings.quick ? 50 : 300) {
            try await send("warmup", index)
            _ = await tracker.waitForResponse(index, timeout: .seconds(10))
        }

        tracker.begin(phase: "measured")
        let start = try CPUReading(subject: child, brokers: [broker])
        let deadline = start.time + Int64(settings.seconds * 1e9)
        var sent = 0
        if let rate = scenario.rate {
            let count = Int(Double(rate) * settings.seconds)
            while sent < count {
                let due = start.time + Int64(sent) * 1_000_000_000 / Int64(rate)
                let now = monotonicNanoseconds()
                if due > now { try await Task.sleep(for: .nanoseconds(due - now)) }
                try await send("measured", sent)
                sent += 1
            }
            // Answers come, or the bridge's 408 after the rule's 5 s reply timeout.
            let waitUntil = monotonicNanoseconds() + 10_000_000_000
            while tracker.outstanding > 0, monotonicNanoseconds() < waitUntil { try await Task.sleep(for: .milliseconds(2)) }
        } else {
            while monotonicNanoseconds() < deadline {
                try await send("measured", sent)
                sent += 1
                guard await tracker.waitForResponse(sent - 1, timeout: .seconds(10)) else { break }
            }
        }
        let end = try CPUReading(subject: child, brokers: [broker])

        let state = tracker.state.withLock { $0 }
        var measurement = Measurement()
        measurement.sent = Double(sent)
        measurement.received = Double(state.completed)
        measurement.lost = Double(sent - state.completed)
        measurement.errorResponses = Double(state.errors)
        measurement.seconds = Double(end.time - start.time) / 1e9
        measurement.throughput = Double(state.completed) / measurement.seconds
        let sorted = state.latencies.sorted()
        measurement.latencyP50Microseconds = percentileMicroseconds(sorted, 0.5)
        measurement.latencyP99Microseconds = percentileMicroseconds(sorted, 0.99)
        measurement.latencyMaxMicroseconds = percentileMicroseconds(sorted, 1)
        fill(&measurement, from: start, to: end, subject: child, count: state.completed)
        return measurement
    }

    // MARK: - Output

    static func printTable(_ report: ScenarioReport, scenario: Scenario, runs: Int) {
        let subjects = Subject.allCases.filter { report.median[$0.rawValue] != nil }
        let bridge = report.median[Subject.bridge.rawValue]
        let references = Subject.references.filter { report.median[$0.rawValue] != nil && bridge != nil }
        let unit = scenario.kind == .uplink ? "msg" : "round trip"
        say(runs > 1 ? "   median of \(runs) runs:" : "   result:")
        func row(_ label: String, _ field: KeyPath<Measurement, Double>, _ render: (Double) -> String, ratio: Bool = false) {
            var line = "   " + label.padding(toLength: 24, withPad: " ", startingAt: 0)
            for subject in subjects { line += render(report.median[subject.rawValue]![keyPath: field]).leftPadded(16) }
            if ratio, let bridge {
                for reference in references {
                    let other = report.median[reference.rawValue]![keyPath: field]
                    line += (other > 0 ? String(format: "%.2f", bridge[keyPath: field] / other) + " x" : "-").leftPadded(22)
                }
            }
            say(line)
        }
        say("   " + "".padding(toLength: 24, withPad: " ", startingAt: 0) + subjects.map { $0.rawValue.leftPadded(16) }.joined()
            + references.map { "bridge/\($0.rawValue)".leftPadded(22) }.joined())
        row("\(unit)/s", \.throughput, whole, ratio: true)
        row("latency p50 µs", \.latencyP50Microseconds, whole)
        row("latency p99 µs", \.latencyP99Microseconds, whole, ratio: true)
        row("latency max µs", \.latencyMaxMicroseconds, whole)
        row("CPU µs/\(unit)", \.cpuMicrosecondsPerMessage, decimal, ratio: true)
        row("CPU % of a core", \.cpuPercent, whole)
        row("peak RSS MiB", \.peakRSSMiB, decimal)
        row("RssAnon MiB", \.rssAnonMiB, decimal)
        row("sent", \.sent, whole)
        row("lost", \.lost, whole)
        if scenario.kind == .uplink {
            row("duplicates", \.duplicates, whole)
            row("out of order", \.reordered, whole)
        } else {
            row("error responses", \.errorResponses, whole)
        }
        row("broker CPU µs/\(unit)", \.brokerCPUMicrosecondsPerMessage, decimal)
    }

    static func printSummary(_ reports: [ScenarioReport]) {
        guard !reports.isEmpty else { return }
        say("\n== summary (medians; ratio = bridge / relay, thr = bridge / relay-threaded)")
        say("scenario".padding(toLength: 21, withPad: " ", startingAt: 0) + "bridge/s".leftPadded(10) + "relay/s".leftPadded(10)
            + "thr/s".leftPadded(10) + "ratio".leftPadded(7) + "thr".leftPadded(6) + "bridge µs".leftPadded(11)
            + "relay µs".leftPadded(10) + "thr µs".leftPadded(8) + "ratio".leftPadded(7) + "thr".leftPadded(6)
            + "bridge p99".leftPadded(12) + "relay p99".leftPadded(11) + "thr p99".leftPadded(9) + "bridge anon".leftPadded(13))
        func ratio(_ value: Double?) -> String { value.map { String(format: "%.2f", $0) } ?? "-" }
        for report in reports {
            let bridge = report.median[Subject.bridge.rawValue]
            let relay = report.median[Subject.relay.rawValue]
            let threaded = report.median[Subject.relayThreaded.rawValue]
            var line = report.name.padding(toLength: 21, withPad: " ", startingAt: 0)
            for subject in [bridge, relay, threaded] { line += (subject.map { whole($0.throughput) } ?? "-").leftPadded(10) }
            line += ratio(report.throughputRatio).leftPadded(7) + ratio(report.throughputRatioThreaded).leftPadded(6)
            line += (bridge.map { decimal($0.cpuMicrosecondsPerMessage) } ?? "-").leftPadded(11)
            line += (relay.map { decimal($0.cpuMicrosecondsPerMessage) } ?? "-").leftPadded(10)
            line += (threaded.map { decimal($0.cpuMicrosecondsPerMessage) } ?? "-").leftPadded(8)
            line += ratio(report.cpuRatio).leftPadded(7) + ratio(report.cpuRatioThreaded).leftPadded(6)
            line += (bridge.map { whole($0.latencyP99Microseconds) } ?? "-").leftPadded(12)
            line += (relay.map { whole($0.latencyP99Microseconds) } ?? "-").leftPadded(11)
            line += (threaded.map { whole($0.latencyP99Microseconds) } ?? "-").leftPadded(9)
            line += (bridge.map { decimal($0.rssAnonMiB) + " MiB" } ?? "-").leftPadded(13)
            say(line)
        }
        say("(/s: messages or round trips per second; µs: subject CPU per message or round trip; p99 in µs; anon: RssAnon)")
    }

    static func printWebSocketComparisons(_ reports: [ScenarioReport]) {
        let pairs = reports.compactMap { report in report.comparison.map { (report.name, $0) } }
        guard !pairs.isEmpty else { return }
        say("\n== Ditto over WebSocket against Ditto over MQTT (the bridge, medians of the same run; ratio = CPU ws / mqtt)")
        say("scenario".padding(toLength: 21, withPad: " ", startingAt: 0) + "ws/s".leftPadded(9) + "mqtt/s".leftPadded(9)
            + "ws µs".leftPadded(8) + "mqtt µs".leftPadded(9) + "ratio".leftPadded(7) + "ws p50".leftPadded(8)
            + "mqtt p50".leftPadded(10) + "ws p99".leftPadded(8) + "mqtt p99".leftPadded(10) + "  goals")
        for (name, pair) in pairs {
            var line = name.padding(toLength: 21, withPad: " ", startingAt: 0)
            line += whole(pair.webSocket.throughput).leftPadded(9) + whole(pair.mqtt.throughput).leftPadded(9)
            line += decimal(pair.webSocket.cpuMicrosecondsPerMessage).leftPadded(8) + decimal(pair.mqtt.cpuMicrosecondsPerMessage).leftPadded(9)
            line += (pair.cpuRatio.map { String(format: "%.2f", $0) } ?? "-").leftPadded(7)
            line += whole(pair.webSocket.latencyP50Microseconds).leftPadded(8) + whole(pair.mqtt.latencyP50Microseconds).leftPadded(10)
            line += whole(pair.webSocket.latencyP99Microseconds).leftPadded(8) + whole(pair.mqtt.latencyP99Microseconds).leftPadded(10)
            line += "  " + pair.goals.map { "\($0.goal): \($0.met ? "met" : "MISSED")" }.joined(separator: "; ")
            say(line)
        }
        say("(/s: messages or round trips per second; µs: the bridge's CPU per message or round trip; p50/p99 in µs)")
        let missed = pairs.flatMap { name, pair in pair.goals.filter { !$0.met }.map { "\(name): \($0.goal)" } }
        say(missed.isEmpty ? "every goal met" : "goals missed: " + missed.joined(separator: ", "))
    }

    static func whole(_ value: Double) -> String {
        let rounded = Int(value.rounded())
        var digits = String(abs(rounded))
        var grouped = ""
        while digits.count > 3 {
            grouped = "," + digits.suffix(3) + grouped
            digits.removeLast(3)
        }
        return (rounded < 0 ? "-" : "") + digits + grouped
    }

    static func decimal(_ value: Double) -> String { String(format: value >= 100 ? "%.0f" : "%.1f", value) }

    /// The short commit, with `-dirty` when tracked files differ from it.
    static func commitDescription() -> String {
        guard let sha = commandOutput("/usr/bin/git", ["rev-parse", "--short", "HEAD"]) else { return "unknown" }
        let dirty = commandOutput("/usr/bin/git", ["status", "--porcelain", "--untracked-files=no"]).map { !$0.isEmpty } ?? false
        return sha + (dirty ? "-dirty" : "")
    }

    static func defaultOutputPath(commit: String) -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        formatter.timeZone = TimeZone(identifier: "UTC")
        return "bench-results/datapath-\(commit)-\(formatter.string(from: Date())).json"
    }

    static func hostDescription() -> [String: String] {
        var host = ["cpus": "\(ProcessInfo.processInfo.activeProcessorCount)"]
        host["kernel"] = commandOutput("/usr/bin/uname", ["-r"]) ?? "unknown"
        host["mosquitto"] = commandOutput("/usr/bin/dpkg-query", ["-W", "-f=${Version}", "mosquitto"]) ?? "unknown"
        host["loadavg"] = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        return host
    }
}

/// Prints at once (stdout to a file is block-buffered): progress of a run minutes long shows as it happens.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? " " + self : String(repeating: " ", count: width - count) + self
    }
}
