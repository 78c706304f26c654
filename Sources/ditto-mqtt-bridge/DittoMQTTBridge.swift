public import ArgumentParser
import BridgeConfig
import BridgeMapping
import BridgeOperations
import BridgeRuntime
import DittoProtocol
import Foundation
public import Logging
import MQTT
import ServiceLifecycle
import UnixSignals

@main
struct DittoMQTTBridge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ditto-mqtt-bridge",
        abstract: "Bridges devices' own MQTT to Eclipse Ditto's live channel.",
        discussion: """
            Devices publish on their own topics; the bridge turns that into Ditto Protocol live events and \
            live messages, and turns Ditto's live messages and live commands into device topics and \
            payloads, routing the devices' answers back under the same correlation-id. See README.md and \
            docs/CONFIG.md.
            """,
        version: BridgeVersion.current,
        subcommands: [Run.self, Check.self, Map.self, Brokers.self, Probe.self],
        defaultSubcommand: Run.self)
}

struct ConfigOption: ParsableArguments {
    @Option(name: .shortAndLong, help: "The bridge's YAML config file.")
    var config: String = "Config/bridge.yaml"

    /// Loads the file or prints every diagnostic (file:line:column: key: message) and exits 1.
    func load() throws -> BridgeConfiguration {
        do {
            return try BridgeConfiguration.load(path: config)
        } catch {
            var standardError = StandardError()
            print(error.description, to: &standardError)
            throw ExitCode(1)
        }
    }
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        FileHandle.standardError.write(Data(string.utf8))
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// How `run` writes its log.
enum LogFormat: String, ExpressibleByArgument, CaseIterable {
    /// swift-log's standard text lines on standard error.
    case text
    /// One JSON object per line on standard error (``JSONLogHandler``).
    case json
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Connect to both brokers and bridge until SIGINT or SIGTERM.",
        discussion: """
            With operations.listen in the config, /metrics, /health and /ready are served there. Under a \
            systemd Type=notify unit ($NOTIFY_SOCKET set) the bridge reports READY=1, STATUS=, STOPPING=1 \
            and pings the watchdog at half of WatchdogSec.
            """)

    @OptionGroup var options: ConfigOption

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .info

    @Option(help: "text (default) or json: one JSON object per line with the metadata as fields.")
    var logFormat: LogFormat = .text

    func run() async throws {
        let level = logLevel
        switch logFormat {
        case .text:
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        case .json:
            LoggingSystem.bootstrap { label in
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
        }
        let logger = Logger(label: "ditto-mqtt-bridge")
        let configuration: BridgeConfiguration
        do {
            configuration = try BridgeConfiguration.load(path: options.config)
        } catch {
            // The same diagnostics `check` prints, one log event each, so a JSON log carries them too.
            for diagnostic in CheckReport.byPosition(errors: error.errors, warnings: error.warnings) {
                logger.log(level: diagnostic.severity == .error ? .error : .warning, "\(diagnostic.description)")
            }
            logger.critical("the config file has errors; not starting", metadata: ["file": "\(options.config)"])
            throw ExitCode(1)
        }
        for warning in configuration.warnings {
            logger.warning("\(warning.description)")
        }
        logger.info("starting", metadata: ["version": "\(BridgeVersion.current)", "file": "\(options.config)"])

        let registry = BridgeMetricsBackend.bootstrap()
        let bridge = try BridgeService(configuration: configuration, logger: logger)
        let notifier = SystemdNotifier(logger: logger)
        let path = options.config
        // SIGHUP re-reads the file: a valid one is applied, an invalid one is refused with `check`'s diagnostics.
        let reloads = Task {
            for await _ in await UnixSignalsSequence(trapping: .sighup) {
                logger.notice("SIGHUP: reloading the config", metadata: ["config": "\(path)"])
                do {
                    let new = try BridgeConfiguration.load(path: path)
                    for warning in new.warnings { logger.warning("\(warning.description)") }
                    notifier.notify(.reloading)
                    await bridge.reload(new)
                    notifier.notify(.ready)
                } catch let error as ConfigErrors {
                    bridge.metrics.reload(.rejected)
                    let lines = CheckReport.byPosition(errors: error.errors, warnings: error.warnings).map(\.description)
                    logger.error("config reload refused; the running config stays:\n\(lines.joined(separator: "\n"))")
                } catch {
                    bridge.metrics.reload(.rejected)
                    logger.error("config reload refused; the running config stays: \(error)")
                }
            }
        }
        defer { reloads.cancel() }
        // Ready while both sides are connected and subscribed; back to 503 as soon as one drops.
        let readiness: @Sendable () -> Readiness = { [bridge] in
            let sides = bridge.notReadySides
            return sides.isEmpty ? .ready : Readiness(notReadyBecause: sides.map { "\($0) broker: not connected and subscribed" })
        }
        // Alive while the event loop turns (it wakes at least once a second).
        let isAlive: @Sendable () -> Bool = { [bridge] in bridge.secondsSinceEventLoopTurn < 10 }
        var operations: OperationsServer?
        if let listen = configuration.operations.listen {
            do {
                let server = try OperationsServer(address: listen, registry: registry, histograms: .processWide,
                                                  logger: logger, readiness: readiness, isAlive: isAlive)
                // Bound here, before the services start: a port in use stops the bridge at once.
                try server.start()
                operations = server
            } catch {
                logger.critical("\(error)")
                throw ExitCode(1)
            }
        }
        // Services shut down in reverse order: systemd hears STOPPING=1 first, the bridge drains while the
        // watchdog still pings and /health still answers.
        var services: [any Service] = []
        if let operations { services.append(operations) }
        services.append(SystemdWatchdogService(notifier: notifier, logger: logger, isHealthy: isAlive))
        services.append(bridge)
        services.append(
            SystemdLifecycleService(
                notifier: notifier,
                started: { [operations] in
                    if let operations { _ = try await operations.waitUntilListening() }
                },
                readiness: readiness))
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch let error as OperationsServerError {
            logger.critical("\(error)")
            throw ExitCode(1)
        }
    }
}

/// How `check` prints its findings.
enum CheckFormat: String, ExpressibleByArgument, CaseIterable {
    /// `file:line:column: [warning: ]key: message` lines, then a summary.
    case text
    /// One JSON document: `{file, ok, errors: [...], warnings: [...]}`.
    case json
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a config file and every template in it.",
        discussion: """
            Errors and warnings go to standard output, sorted by position, then a summary line; with \
            --format json one JSON document {file, ok, errors: [{file, line, column, key, message, hint, \
            severity}], warnings: [...]}. Exit status 0 when the file is usable (warnings allowed), 1 otherwise.
            """)

    @OptionGroup var options: ConfigOption

    @Option(help: "text (default) or json.")
    var format: CheckFormat = .text

    func run() throws {
        let report = CheckReport(path: options.config)
        switch format {
        case .text: print(report.textLines.joined(separator: "\n"))
        case .json: print(report.json)
        }
        if !report.ok { throw ExitCode(1) }
    }
}

struct Probe: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "GET /health (or --path) from the running bridge's operations endpoint; exit 0 on 200.",
        discussion: """
            Reads operations.listen from the config (0.0.0.0 and :: become the loopback address). For a \
            container HEALTHCHECK in an image without curl.
            """)

    @OptionGroup var options: ConfigOption

    @Option(help: "/health, /ready or /metrics.")
    var path: String = "/health"

    func run() throws {
        let configuration = try options.load()
        var standardError = StandardError()
        guard let listen = configuration.operations.listen else {
            print("\(options.config): operations.listen is not set; the bridge serves no endpoint", to: &standardError)
            throw ExitCode(2)
        }
        do {
            let (status, body) = try OperationsProbe.get(path, at: OperationsProbe.target(for: listen))
            print("\(status) \(body.trimmingCharacters(in: .whitespacesAndNewlines))")
            if status != 200 { throw ExitCode(1) }
        } catch let failure as OperationsProbe.Failure {
            print("\(failure)", to: &standardError)
            throw ExitCode(1)
        }
    }
}

struct Brokers: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print `host port` of each distinct broker the config uses (for scripts).")

    @OptionGroup var options: ConfigOption

    func run() throws {
        let configuration = try options.load()
        var seen = Set<String>()
        for connection in [configuration.connections.device, configuration.connections.ditto.broker].compactMap(\.self) {
            let line = "\(connection.host) \(connection.port)"
            if seen.insert(line).inserted { print(line) }
        }
    }
}

struct Map: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the Ditto Protocol JSON the bridge would publish for one device message.",
        discussion: """
            No broker is needed. The output is exactly what `run` publishes (one JSON per line); \
            `--revision` and `--timestamp` make live events reproducible. The Ditto-side topic goes to \
            standard error. A message the bridge would drop prints the reason and exits 1.
            """)

    @OptionGroup var options: ConfigOption

    @Option(help: "The device topic.")
    var topic: String

    @Option(help: "The device payload as text.")
    var payload: String?

    @Option(help: "Read the device payload from this file (binary payloads).")
    var payloadFile: String?

    @Option(name: .customLong("user-property"), help: "An MQTT 5 user property, name=value (repeatable).")
    var userProperties: [String] = []

    @Option(help: "MQTT 5 correlation data (UTF-8).")
    var correlationData: String?

    @Option(help: "MQTT 5 content type.")
    var contentType: String?

    @Option(help: "MQTT 5 response topic (makes a live message a request).")
    var responseTopic: String?

    @Option(help: "MQTT 5 message expiry interval in seconds.")
    var messageExpiry: UInt32?

    @Option(help: "The revision a live event gets (default 1).")
    var revision: Int64 = 1

    @Option(help: "The timestamp a live event gets (default now).")
    var timestamp: String?

    func run() throws {
        let configuration = try options.load()
        var properties = PublishProperties()
        properties.correlationData = correlationData.map { Array($0.utf8) }
        properties.contentType = contentType
        properties.responseTopic = responseTopic
        properties.messageExpiryInterval = messageExpiry
        for property in userProperties {
            guard let equals = property.firstIndex(of: "=") else {
                throw ValidationError("--user-property takes name=value, got '\(property)'")
            }
            properties.userProperties.append(
                UserProperty(name: String(property[..<equals]), value: String(property[property.index(after: equals)...])))
        }
        let bytes: [UInt8]
        if let payloadFile {
            guard let data = FileManager.default.contents(atPath: payloadFile) else {
                throw ValidationError("cannot read --payload-file \(payloadFile)")
            }
            bytes = Array(data)
        } else {
            bytes = Array((payload ?? "").utf8)
        }
        let message = MQTTMessage(topic: topic, payload: bytes, qos: .atLeastOnce, properties: properties)
        let revision = self.revision
        let timestamp = self.timestamp ?? UplinkEnvironment.isoTimestamp(Date())
        let environment = UplinkEnvironment(
            nextRevision: { _ in revision }, timestamp: { timestamp }, newCorrelationID: { CorrelationID.generate() })
        var standardError = StandardError()
        do {
            let publication = try DittoPublication.uplink(message, configuration: configuration, environment: environment)
            print("# \(publication.rule): publish to \(publication.topic)", to: &standardError)
            print(String(decoding: publication.envelope.encoded(), as: UTF8.self))
        } catch {
            print("dropped (\(error.kind.rawValue)): \(error.reason)", to: &standardError)
            throw ExitCode(1)
        }
    }
}
