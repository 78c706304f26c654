import ArgumentParser
import BridgeConfig
import BridgeMapping
import BridgeRuntime
import DittoProtocol
import Foundation
import Logging
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
        subcommands: [Run.self, Check.self, Map.self, Brokers.self],
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

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Connect to both brokers and bridge until SIGINT or SIGTERM.")

    @OptionGroup var options: ConfigOption

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .info

    func run() async throws {
        let configuration = try options.load()
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "ditto-mqtt-bridge")
        for warning in configuration.warnings {
            logger.warning("\(warning.description)")
        }
        let bridge = try BridgeService(configuration: configuration, logger: logger)
        let path = options.config
        // SIGHUP re-reads the file: a valid one is applied, an invalid one is refused with `check`'s diagnostics.
        let reloads = Task {
            for await _ in await UnixSignalsSequence(trapping: .sighup) {
                logger.notice("SIGHUP: reloading the config", metadata: ["config": "\(path)"])
                do {
                    let new = try BridgeConfiguration.load(path: path)
                    for warning in new.warnings { logger.warning("\(warning.description)") }
                    await bridge.reload(new)
                } catch let error as ConfigErrors {
                    logger.error("config reload refused; the running config stays:\n\(error.description)")
                } catch {
                    logger.error("config reload refused; the running config stays: \(error)")
                }
            }
        }
        defer { reloads.cancel() }
        let group = ServiceGroup(
            configuration: .init(services: [bridge], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a config file and every template in it.",
        discussion: "Exit status 0 when the file is usable (warnings are printed), 1 with every error otherwise.")

    @OptionGroup var options: ConfigOption

    func run() throws {
        let configuration = try options.load()
        for warning in configuration.warnings {
            print(warning.description)
        }
        print("\(options.config): OK (\(configuration.uplink.count) uplink rules, \(configuration.downlink.count) downlink rules)")
    }
}

struct Brokers: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print `host port` of each distinct broker the config uses (for scripts).")

    @OptionGroup var options: ConfigOption

    func run() throws {
        let configuration = try options.load()
        var seen = Set<String>()
        for connection in [configuration.connections.device, configuration.connections.ditto] {
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
        var properties = MQTTProperties()
        properties.correlationData = correlationData.map { Array($0.utf8) }
        properties.contentType = contentType
        properties.responseTopic = responseTopic
        properties.messageExpiryInterval = messageExpiry
        for property in userProperties {
            guard let equals = property.firstIndex(of: "=") else {
                throw ValidationError("--user-property takes name=value, got '\(property)'")
            }
            properties.userProperties.append(
                MQTTUserProperty(name: String(property[..<equals]), value: String(property[property.index(after: equals)...])))
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
        let message = MQTTPublication(topic: topic, payload: bytes, qos: 1, properties: properties)
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
