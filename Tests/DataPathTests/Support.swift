import Foundation
import Logging
import MQTT
import Mosquitto
import MosquittoTestSupport
import Synchronization
import Testing

/// Knobs of the delivery tests (issue 9). The defaults keep the whole target under three minutes.
enum DataPath {
    /// The config keys the data-path rewrite adds (`spool: {directory: ...}` and
    /// `connections.device.shared-subscription-group`). Today's loader rejects unknown keys, so they are
    /// written only when this is on. Flip it here once the loader knows them, or run with
    /// `DATAPATH_REWRITE_KEYS=1`.
    static let rewriteKeysByDefault = true
    static let rewriteKeys = rewriteKeysByDefault || environment("DATAPATH_REWRITE_KEYS") == "1"

    /// `DATAPATH_LONG=1`: the issue's 60 s Ditto-side outage instead of 15 s (about 132,000 messages).
    static let longRun = environment("DATAPATH_LONG") == "1"

    static let deviceCount = 20
    static let messagesPerDevice = 1_000
    /// All devices together, messages per second.
    static let rate = 2_000.0
    /// How long the Ditto side stays down in the outage test while devices keep publishing.
    static let outage: Duration = longRun ? .seconds(60) : .seconds(15)
    /// How much the bridge's resident memory may grow during that outage (generous: with back pressure it
    /// should stay flat; today it buffers every message).
    static let rssGrowthBound = 64 * 1024 * 1024
    /// After the devices finished and every fault healed: give up waiting once nothing arrived for this long...
    static let quietPeriod: Duration = .seconds(8)
    /// ... or at the latest after this long.
    static let drainDeadline: Duration = longRun ? .seconds(180) : .seconds(60)

    static func deviceIDs(_ count: Int = deviceCount) -> [String] {
        (0..<count).map { String(format: "dev-%02d", $0) }
    }

    static func thingID(_ device: String) -> String { "org.example:\(device)" }

    static func environment(_ name: String) -> String? { ProcessInfo.processInfo.environment[name] }

    static let logger: Logger = {
        var logger = Logger(label: "datapath-test")
        logger.logLevel = .error
        return logger
    }()
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

// MARK: - The bridge's config

/// The YAML a test's bridge instance runs with: persistent sessions on both sides (what the shipped config
/// does after the rewrite), a `telemetry` uplink rule that forwards the device's whole JSON (so the `seq`
/// reaches the collector) and an `inbox` downlink rule for live messages.
struct BridgeConfigFile {
    var instance: String
    var devicePort: Int
    var dittoPort: Int
    var spoolDirectory: String
    var sharedSubscriptionGroup: String?
    /// The device connection's `reconnect:` (the Ditto side always uses the default below).
    var deviceReconnect = "{ initial: 1s, maximum: 2s }"
    /// Without it the config has no `spool:` (messages on their way to Ditto wait in memory only).
    var spool = true

    var yaml: String {
        var lines = [
            "connections:",
            "  device:",
            "    host: 127.0.0.1",
            "    port: \(devicePort)",
            "    mqtt-version: 5",
            "    client-id: bridge-\(instance)-devices",
            "    keepalive: 10s",
            "    clean-start: false",
            "    session-expiry: 1h",
            "    reconnect: \(deviceReconnect)",
        ]
        if DataPath.rewriteKeys, let sharedSubscriptionGroup {
            lines.append("    shared-subscription-group: \(sharedSubscriptionGroup)")
        }
        lines += [
            "  ditto:",
            "    host: 127.0.0.1",
            "    port: \(dittoPort)",
            "    mqtt-version: 5",
            "    client-id: bridge-\(instance)-ditto",
            "    keepalive: 10s",
            "    clean-start: false",
            "    session-expiry: 1h",
            // As the shipped config starts (1s), capped low so a test does not wait out a long backoff.
            "    reconnect: { initial: 1s, maximum: 2s }",
            "ditto:",
            "  publish-topic: \"ditto/in/{thingId}\"",
            "  subscribe-filter: \"ditto/out/#\"",
            "  reply-topic: \"ditto/out/{thingId}/reply\"",
            "  qos: 1",
            "defaults:",
            "  namespace: org.example",
            "  qos: 1",
            "  request-timeout: 3s",
            "headers:",
            "  static:",
            // Tells the collector which instance handled a message (scale-out test).
            "    x-gateway: \(instance)",
        ]
        if DataPath.rewriteKeys, spool {
            lines += ["spool:", "  directory: \(spoolDirectory)"]
        }
        lines += [
            "uplink:",
            "  - name: telemetry",
            "    topic: \"devices/{deviceId}/telemetry/{sensor}\"",
            "    thing-id: \"{namespace}:{deviceId}\"",
            "    event: { action: modified, path: \"/features/{sensor}/properties/value\" }",
            "    payload: { format: json }",
            "downlink:",
            "  - name: inbox",
            "    match: { messages: { subject: \"*\" } }",
            "    thing-id: \"{namespace}:{deviceId}\"",
            "    topic: \"devices/{deviceId}/inbox/{subject}\"",
            "    payload: value",
            "    reply: { mode: mqtt5, topic: \"devices/{deviceId}/reply\", timeout: 3s }",
        ]
        return lines.joined(separator: "\n") + "\n"
    }
}

// MARK: - The bridge as a child process

/// The real `ditto-mqtt-bridge run` as a child process, its standard error appended to a log file that
/// survives restarts.
final class BridgeProcess: Sendable {
    enum Exit: Equatable, CustomStringConvertible {
        case status(Int32)
        case signal(Int32)

        var description: String {
            switch self {
            case .status(let code): "exit status \(code)"
            case .signal(let signal): "killed by signal \(signal)"
            }
        }
    }

    let name: String
    let configPath: String
    let logPath: String
    private let process = Mutex<ChildProcess?>(nil)

    /// `DATAPATH_BRIDGE=/path/to/ditto-mqtt-bridge` runs another build (for example a release build).
    static func executable() throws -> String {
        try BuiltExecutable.path("ditto-mqtt-bridge", overriddenBy: "DATAPATH_BRIDGE")
    }

    /// Writes `config` next to the log and starts the bridge.
    init(name: String, config: BridgeConfigFile, directory: URL) throws {
        self.name = name
        configPath = directory.appendingPathComponent("bridge-\(name).yaml").path
        logPath = directory.appendingPathComponent("bridge-\(name).log").path
        try config.yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        try start()
    }

    deinit { kill9() }

    /// Starts the bridge (again) with the same config.
    func start() throws {
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        log.write(Data("---- \(name) started at \(Date()) ----\n".utf8))
        try log.close()
        let child = try ChildProcess(try Self.executable(), ["run", "--config", configPath, "--log-level", "info"],
                                     standardOutput: .file(logPath), standardError: .standardOutput)
        process.withLock { $0 = child }
    }

    var processIdentifier: Int32? { process.withLock { $0?.isRunning == true ? $0?.processIdentifier : nil } }

    var isRunning: Bool { process.withLock { $0?.isRunning ?? false } }

    /// SIGKILL: no chance to flush, disconnect or save anything.
    func kill9() {
        process.withLock({ $0 })?.kill9()
    }

    /// SIGTERM, then waits up to `timeout` for the exit; nil when it did not exit in time (then it is killed).
    func terminate(timeout: Duration) async -> Exit? {
        guard let child = process.withLock({ $0 }), child.isRunning else { return nil }
        child.signal(SIGTERM)
        switch await child.waitForExit(timeout: timeout) {
        case nil:
            kill9()
            return nil
        case .exited(let status): return .status(status)
        case .signalled(let signal): return .signal(signal)
        }
    }

    /// Resident memory from /proc/PID/status (VmRSS), in bytes.
    var residentBytes: Int? {
        guard let pid = processIdentifier,
              let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return nil }
        let kilobytes = line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
        return kilobytes.map { $0 * 1024 }
    }

    /// The last lines the bridge logged, for failure diagnostics.
    func logTail(lines: Int = 40) -> String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    /// How often the log contains `text` (e.g. how many messages the bridge dropped, by reason).
    func logCount(of text: String) -> Int {
        let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return log.components(separatedBy: text).count - 1
    }
}

// MARK: - Devices

/// Devices that publish QoS 1 JSON `{"seq": n, "device": id}` on `devices/<id>/telemetry/temp`, paced to
/// `rate` messages per second in total, each device in order (one publish in flight per device: the next
/// starts after the broker's PUBACK). Each device has a persistent MQTT 5 session (fixed client id, clean
/// start off, session expiry), so the device broker keeps its state while the broker restarts.
final class DeviceFleet: Sendable {
    struct Counters {
        var acknowledged: [String: Int] = [:]
        var retries = 0
        var lastError: String?
    }

    let devices: [String]
    let messagesPerDevice: Int
    let rate: Double
    private let payload: @Sendable (String, Int) -> [UInt8]
    private let clients: [String: MosquittoClient]
    private let counters = Mutex(Counters())
    private let stopping = Atomic<Bool>(false)

    static func seqPayload(device: String, seq: Int) -> [UInt8] {
        Array(#"{"seq":\#(seq),"device":"\#(device)","sensor":"temp","value":21.5}"#.utf8)
    }

    init(broker: TestBroker, devices: [String], messagesPerDevice: Int = DataPath.messagesPerDevice,
         rate: Double = DataPath.rate,
         payload: @escaping @Sendable (String, Int) -> [UInt8] = DeviceFleet.seqPayload) async throws {
        self.devices = devices
        self.messagesPerDevice = messagesPerDevice
        self.rate = rate
        self.payload = payload
        var clients: [String: MosquittoClient] = [:]
        for device in devices {
            var configuration = broker.clientConfiguration(version: .v5, clientID: device)
            configuration.cleanStart = false
            configuration.sessionExpiry = .seconds(3600)
            let client = try MosquittoClient(configuration: configuration, logger: DataPath.logger)
            try await client.connect()
            clients[device] = client
        }
        self.clients = clients
    }

    var total: Int { devices.count * messagesPerDevice }

    /// Messages the device broker acknowledged so far.
    var acknowledged: Int { counters.withLock { $0.acknowledged.values.reduce(0, +) } }

    /// Publishes everything; returns when every message was acknowledged or ``stop()`` was called.
    func run() async {
        let start = ContinuousClock.now
        let perDevice = rate / Double(devices.count)
        await withTaskGroup(of: Void.self) { group in
            for (index, device) in devices.enumerated() {
                guard let client = clients[device] else { continue }
                group.addTask { [self] in
                    for seq in 0..<messagesPerDevice {
                        // Spread the devices evenly over each period instead of publishing in bursts.
                        let due = start + .seconds((Double(seq) + Double(index) / Double(devices.count)) / perDevice)
                        if due > .now { try? await Task.sleep(until: due, clock: .continuous) }
                        while !stopping.load(ordering: .relaxed) {
                            do {
                                try await client.publish(to: "devices/\(device)/telemetry/temp",
                                                         payload: payload(device, seq), qos: .atLeastOnce)
                                counters.withLock { $0.acknowledged[device, default: 0] += 1 }
                                break
                            } catch {
                                counters.withLock {
                                    $0.retries += 1
                                    $0.lastError = "\(device) seq \(seq): \(error)"
                                }
                                try? await Task.sleep(for: .milliseconds(100))
                            }
                        }
                        if stopping.load(ordering: .relaxed) { return }
                    }
                }
            }
        }
    }

    /// Waits until at least `count` messages were acknowledged.
    func waitForAcknowledged(_ count: Int, timeout: Duration) async throws {
        guard await eventually(timeout: timeout, { acknowledged >= count }) else {
            let last = counters.withLock { c in c.lastError.map { ", \(c.retries) failed publishes, last: \($0)" } ?? "" }
            throw TestFailure("devices got only \(acknowledged) of \(count) PUBACKs within \(timeout)\(last)")
        }
    }

    func stop() { stopping.store(true, ordering: .relaxed) }

    func disconnect() async {
        stop()
        for client in clients.values { await client.disconnect() }
    }
}

// MARK: - Ditto's side

/// What the Ditto-side subscriber received for the devices a test expected.
struct DeliveryReport: CustomStringConvertible {
    /// Messages the devices sent (and the device broker acknowledged) for the expected things.
    var expected = 0
    /// Live events for the expected things, duplicates included.
    var received = 0
    /// Different (thing, seq) pairs among them.
    var distinct = 0
    /// Expected (thing, seq) pairs that never arrived.
    var lost = 0
    /// Arrivals of a (thing, seq) that had already arrived (at-least-once redelivery).
    var duplicates = 0
    /// First arrivals of a seq lower than the highest seq already seen for that thing.
    var reordered = 0
    /// First arrivals whose `revision` is not above the previous first arrival's of the same thing.
    var revisionRegressions = 0
    /// Messages on `ditto/in/#` that were not live events of the expected things (responses, probes).
    var other = 0
    /// Events per `x-gateway` header (which bridge instance published them).
    var perGateway: [String: Int] = [:]
    /// Per thing: how many are missing and the first few missing seqs.
    var missing: [String: (count: Int, first: [Int])] = [:]
    /// Seconds from the first to the last arrival for the expected things.
    var span: Double = 0

    var description: String {
        var text = "expected \(expected), received \(received), distinct \(distinct), lost \(lost), "
            + "duplicates \(duplicates), reordered \(reordered), revision regressions \(revisionRegressions), "
            + "other \(other), span \(String(format: "%.1f", span)) s"
        if !perGateway.isEmpty {
            text += ", per gateway " + perGateway.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }
        for (thing, gap) in missing.sorted(by: { $0.key < $1.key }).prefix(5) {
            text += "\n  \(thing): \(gap.count) missing, first \(gap.first.map(String.init).joined(separator: ","))"
        }
        return text
    }
}

/// The Ditto-side subscriber: `mosquitto_sub` (MQTT 5, fixed client id, clean start off, session expiry 1 h,
/// QoS 1 on `ditto/in/#`), parsed line by line. It is a separate, known-good client on purpose: what it
/// counts must not depend on the MQTT client under test, and with a persistent session on a broker with
/// persistence it loses nothing the broker acknowledged, so every loss it reports is the bridge's.
final class DittoCollector: Sendable {
    private struct Thing {
        var seen = Set<Int>()
        var highest = -1
        var lastRevision: Int64?
        var received = 0
        var duplicates = 0
        var reordered = 0
        var revisionRegressions = 0
        var first: ContinuousClock.Instant?
        var last: ContinuousClock.Instant?
        var gateways: [String: Int] = [:]
    }

    private struct State {
        var things: [String: Thing] = [:]
        var other: [String: Int] = [:]
        var statuses: [Int: Int] = [:]
        var lines = 0
        var lastArrival = ContinuousClock.now
    }

    private let state = Shared(State())
    private let process: ChildProcess
    let logPath: String

    init(broker: TestBroker, clientID: String = "ditto-collector", directory: URL) throws {
        logPath = directory.appendingPathComponent("collector.log").path
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let output = Pipe()
        do {
            process = try ChildProcess(
                "/usr/bin/mosquitto_sub",
                ["-V", "mqttv5", "-h", broker.host, "-p", "\(broker.port)", "-i", clientID, "-c",
                 "-x", "3600", "-q", "1", "-t", "ditto/in/#", "-F", "%t %p"],
                standardOutput: .descriptor(output.fileHandleForWriting.fileDescriptor), standardError: .file(logPath))
        } catch {
            throw TestFailure("cannot start /usr/bin/mosquitto_sub (apt-get install mosquitto-clients): \(error)")
        }
        // The reader sees the end of the output only once the child's copy is the last one open.
        try output.fileHandleForWriting.close()
        let reader = output.fileHandleForReading
        let state = self.state
        let thread = Thread {
            var pending = Data()
            while true {
                let chunk = reader.availableData
                if chunk.isEmpty { break }
                pending.append(chunk)
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = pending[pending.startIndex..<newline]
                    pending.removeSubrange(pending.startIndex...newline)
                    Self.take(line: Data(line), into: state)
                }
            }
        }
        thread.name = "ditto-collector"
        thread.start()
    }

    deinit { stop() }

    func stop() {
        process.kill9()
    }

    private static func take(line: Data, into state: Shared<State>) {
        let now = ContinuousClock.now
        guard let space = line.firstIndex(of: UInt8(ascii: " ")) else { return }
        let topic = String(decoding: line[line.startIndex..<space], as: UTF8.self)
        let thingID = topic.hasPrefix("ditto/in/") ? String(topic.dropFirst("ditto/in/".count)) : topic
        let json = try? JSONSerialization.jsonObject(with: line[line.index(after: space)...]) as? [String: Any]
        let value = json?["value"] as? [String: Any]
        let seq = value?["seq"] as? Int
        let revision = (json?["revision"] as? NSNumber)?.int64Value
        let gateway = (json?["headers"] as? [String: Any])?["x-gateway"] as? String
        let status = json?["status"] as? Int
        state.update { state in
            state.lines += 1
            state.lastArrival = now
            guard let seq else {
                state.other[thingID, default: 0] += 1
                if let status { state.statuses[status, default: 0] += 1 }
                return
            }
            var thing = state.things[thingID] ?? Thing()
            thing.received += 1
            thing.first = thing.first ?? now
            thing.last = now
            if let gateway { thing.gateways[gateway, default: 0] += 1 }
            if thing.seen.contains(seq) {
                thing.duplicates += 1
            } else {
                if seq < thing.highest { thing.reordered += 1 }
                if let revision {
                    if let last = thing.lastRevision, revision <= last { thing.revisionRegressions += 1 }
                    thing.lastRevision = revision
                }
                thing.seen.insert(seq)
                thing.highest = max(thing.highest, seq)
            }
            state.things[thingID] = thing
        }
    }

    /// Everything received so far, against `expected` (thing ID -> seqs 0..<count).
    func report(expected: [String: Int]) -> DeliveryReport {
        state.update { state in
            var report = DeliveryReport()
            var first: ContinuousClock.Instant?
            var last: ContinuousClock.Instant?
            for (thingID, count) in expected {
                report.expected += count
                guard let thing = state.things[thingID] else {
                    report.lost += count
                    report.missing[thingID] = (count, Array(0..<min(count, 5)))
                    continue
                }
                let arrived = thing.seen.filter { (0..<count).contains($0) }.count
                report.received += thing.received
                report.distinct += arrived
                report.lost += count - arrived
                report.duplicates += thing.duplicates
                report.reordered += thing.reordered
                report.revisionRegressions += thing.revisionRegressions
                for (gateway, n) in thing.gateways { report.perGateway[gateway, default: 0] += n }
                if arrived < count {
                    let gaps = (0..<count).filter { !thing.seen.contains($0) }
                    report.missing[thingID] = (gaps.count, Array(gaps.prefix(5)))
                }
                if let f = thing.first { first = min(first ?? f, f) }
                if let l = thing.last { last = max(last ?? l, l) }
            }
            let others = state.things.filter { expected[$0.key] == nil }.values.map(\.received).reduce(0, +)
            report.other = state.other.values.reduce(0, +) + others
            if let first, let last { report.span = (last - first).seconds }
            return report
        }
    }

    /// Ditto error/success responses seen, by status.
    var statuses: [Int: Int] { state.value.statuses }

    /// Gateways seen on events of one thing.
    func gateways(of thingID: String) -> [String: Int] { state.update { $0.things[thingID]?.gateways ?? [:] } }

    func otherCount(of thingID: String) -> Int { state.update { $0.other[thingID] ?? 0 } }

    /// Waits until every expected message arrived, or nothing arrived for ``DataPath/quietPeriod``, or
    /// ``DataPath/drainDeadline`` passed. Once all arrived it waits `settle` longer, so late duplicates (and a
    /// slower second instance) are counted too.
    func waitForDelivery(expected: [String: Int], settle: Duration = .seconds(1)) async -> DeliveryReport {
        let deadline = ContinuousClock.now + DataPath.drainDeadline
        let quietFrom = ContinuousClock.now
        while ContinuousClock.now < deadline {
            if report(expected: expected).lost == 0 {
                try? await Task.sleep(for: settle)
                return report(expected: expected)
            }
            let last = state.update { $0.lastArrival }
            if ContinuousClock.now - max(last, quietFrom) > DataPath.quietPeriod { return report(expected: expected) }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return report(expected: expected)
    }

    /// Waits until the collector receives what it subscribed to: publishes probes on `ditto/in/collector-probe`
    /// until one arrives.
    func waitUntilSubscribed(broker: TestBroker) async throws {
        let probe = try MosquittoClient(configuration: broker.clientConfiguration(clientID: "collector-probe"),
                                        logger: DataPath.logger)
        try await probe.connect()
        let arrived = await eventually(timeout: .seconds(10), every: .milliseconds(200)) {
            _ = try? await probe.publish(to: "ditto/in/collector-probe", payload: Array("{}".utf8), qos: .atLeastOnce)
            return otherCount(of: "collector-probe") > 0
        }
        await probe.disconnect()
        guard arrived else {
            throw TestFailure("the Ditto-side subscriber (mosquitto_sub) received nothing within 10 s; see \(logPath)")
        }
    }
}

// MARK: - One test's world

/// Two private brokers (or one), a Ditto-side collector, and the bridge instances, all stopped by
/// ``shutdown(passed:)`` whatever happened.
final class DataPathScenario: Sendable {
    let directory: URL
    let deviceBroker: TestBroker
    let dittoBroker: TestBroker
    let collector: DittoCollector
    let bridges: [BridgeProcess]
    private let cleanups = Shared<[@Sendable () async -> Void]>([])

    init(deviceBroker deviceOptions: TestBroker.Options = .init(maxQueuedMessages: 1_000_000),
         dittoBroker dittoOptions: TestBroker.Options? = .init(persistence: true, maxQueuedMessages: 1_000_000),
         instances: [String] = ["A"], sharedSubscriptionGroup: String? = nil,
         deviceReconnect: String = "{ initial: 1s, maximum: 2s }", spool: Bool = true) async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("datapath-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        deviceBroker = try await TestBroker.start(deviceOptions)
        if let dittoOptions {
            dittoBroker = try await TestBroker.start(dittoOptions)
        } else {
            dittoBroker = deviceBroker
        }
        collector = try DittoCollector(broker: dittoBroker, directory: directory)
        try await collector.waitUntilSubscribed(broker: dittoBroker)
        var bridges: [BridgeProcess] = []
        for instance in instances {
            let spoolPath = directory.appendingPathComponent("spool-\(instance)")
            try FileManager.default.createDirectory(at: spoolPath, withIntermediateDirectories: true)
            var config = BridgeConfigFile(instance: instance, devicePort: deviceBroker.port, dittoPort: dittoBroker.port,
                                          spoolDirectory: spoolPath.path, sharedSubscriptionGroup: sharedSubscriptionGroup,
                                          deviceReconnect: deviceReconnect)
            config.spool = spool
            bridges.append(try BridgeProcess(name: instance, config: config, directory: directory))
        }
        self.bridges = bridges
    }

    var bridge: BridgeProcess { bridges[0] }

    /// A device fleet on the device broker, disconnected by ``shutdown(passed:)`` at the latest.
    func fleet(_ devices: [String], messagesPerDevice: Int = DataPath.messagesPerDevice, rate: Double = DataPath.rate,
               payload: @escaping @Sendable (String, Int) -> [UInt8] = DeviceFleet.seqPayload) async throws -> DeviceFleet {
        let fleet = try await DeviceFleet(broker: deviceBroker, devices: devices, messagesPerDevice: messagesPerDevice,
                                          rate: rate, payload: payload)
        cleanups.update { $0.append { await fleet.disconnect() } }
        return fleet
    }

    /// A connected MQTT 5 client, disconnected by ``shutdown(passed:)`` at the latest.
    func client(on broker: TestBroker, id: String) async throws -> MosquittoClient {
        let client = try MosquittoClient(configuration: broker.clientConfiguration(clientID: id), logger: DataPath.logger)
        cleanups.update { $0.append { await client.disconnect() } }
        try await client.connect()
        return client
    }

    /// Waits until each bridge instance carries device messages to Ditto: publishes probe events on
    /// `devices/probe/telemetry/temp` until every instance's `x-gateway` was seen on one.
    func waitUntilBridging() async throws {
        let probe = try MosquittoClient(configuration: deviceBroker.clientConfiguration(clientID: "bridge-probe"),
                                        logger: DataPath.logger)
        try await probe.connect()
        let names = Set(bridges.map(\.name))
        var seq = 0
        let ready = await eventually(timeout: .seconds(30), every: .milliseconds(200)) {
            seq += 1
            _ = try? await probe.publish(to: "devices/probe/telemetry/temp",
                                         payload: DeviceFleet.seqPayload(device: "probe", seq: seq), qos: .atLeastOnce)
            // A bridge that exited (a config it rejects) will not come: stop waiting.
            return names.isSubset(of: collector.gateways(of: DataPath.thingID("probe")).keys)
                || !bridges.allSatisfy(\.isRunning)
        }
        await probe.disconnect()
        if let exited = bridges.first(where: { !$0.isRunning }) {
            throw TestFailure("bridge \(exited.name) exited before it carried a message:\n\(exited.logTail())")
        }
        guard ready else {
            let logs = bridges.map { "\($0.name):\n\($0.logTail())" }.joined(separator: "\n")
            throw TestFailure("the bridge did not carry a probe message to Ditto within 30 s\n\(logs)")
        }
    }

    /// Stops every process. When the test failed (or `DATAPATH_KEEP=1`), keeps the directory (configs, bridge logs, broker data)
    /// and prints where it is with the end of each bridge log.
    func shutdown(passed: Bool) async {
        for cleanup in cleanups.update({ list in
            defer { list.removeAll() }
            return list
        }) {
            await cleanup()
        }
        for bridge in bridges { bridge.kill9() }
        collector.stop()
        deviceBroker.stop()
        dittoBroker.stop()
        if passed && DataPath.environment("DATAPATH_KEEP") != "1" {
            try? FileManager.default.removeItem(at: directory)
        } else {
            print("datapath: kept \(directory.path) (bridge logs, configs, collector log)")
            for bridge in bridges { print("---- end of bridge \(bridge.name)'s log ----\n\(bridge.logTail())") }
        }
    }
}

/// Runs `body` in a fresh scenario and shuts everything down afterwards, also when `body` throws.
/// `body` returns whether its checks passed (to keep the logs of a failed run).
func withScenario(_ scenario: @autoclosure () async throws -> DataPathScenario,
                  _ body: (DataPathScenario) async throws -> Bool) async throws {
    let world = try await scenario()
    do {
        let passed = try await body(world)
        await world.shutdown(passed: passed)
    } catch {
        await world.shutdown(passed: false)
        throw error
    }
}

/// Runs the fleet in the background; `fault` runs alongside once `trigger` messages were acknowledged.
/// Returns when the fleet finished (bounded) and the fault's work is done.
func runFleet(_ fleet: DeviceFleet, faultAfter trigger: Int, fault: () async throws -> Void) async throws {
    let publishing = Task { await fleet.run() }
    do {
        try await fleet.waitForAcknowledged(trigger, timeout: .seconds(60))
        try await fault()
        // Generous: at the planned rate the fleet needs total/rate seconds; a stalled broker makes it longer.
        try await fleet.waitForAcknowledged(fleet.total, timeout: .seconds(Double(fleet.total) / fleet.rate + 90))
    } catch {
        fleet.stop()
        await publishing.value
        throw error
    }
    await publishing.value
}

/// The expectations every fault test shares: nothing lost, order kept, revisions never backwards.
/// Duplicates are reported, not failed (at-least-once).
@discardableResult
func expectDelivered(_ report: DeliveryReport, _ scenario: String, sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
    print("datapath [\(scenario)]: \(report)")
    #expect(report.lost == 0, "\(scenario): \(report.lost) messages lost", sourceLocation: sourceLocation)
    #expect(report.reordered == 0, "\(scenario): \(report.reordered) messages out of order per device",
            sourceLocation: sourceLocation)
    #expect(report.revisionRegressions == 0, "\(scenario): revision went backwards \(report.revisionRegressions) times",
            sourceLocation: sourceLocation)
    return report.lost == 0 && report.reordered == 0 && report.revisionRegressions == 0
}
