import BridgeConfig
import BridgeMapping
import BridgeOperations
import DittoProtocol
import Foundation
import MQTT
import MosquittoTestSupport
import Testing
import Yams

/// No container engine runs where these tests run: docker-compose.yml, the Dockerfile, the Ditto connection and
/// the systemd unit are parsed with real parsers and checked against each other and the bridge's config.
struct DeploymentFilesTests {
    // MARK: - docker-compose.yml

    static func compose() throws -> [String: Any] {
        try #require(try Yams.load(yaml: Repository.text("docker-compose.yml")) as? [String: Any])
    }

    static func services() throws -> [String: [String: Any]] {
        try #require(try compose()["services"] as? [String: [String: Any]])
    }

    static let dittoServices = ["mongodb", "policies", "things", "things-search", "connectivity", "gateway", "nginx"]

    /// `KEY=value` list or mapping, as compose allows both.
    static func environment(_ service: [String: Any]) -> [String: String] {
        if let mapping = service["environment"] as? [String: Any] {
            return mapping.mapValues { "\($0)" }
        }
        var result: [String: String] = [:]
        for item in service["environment"] as? [String] ?? [] {
            guard let equals = item.firstIndex(of: "=") else { continue }
            result[String(item[..<equals])] = String(item[item.index(after: equals)...])
        }
        return result
    }

    @Test func servicesAndProfiles() throws {
        let services = try Self.services()
        for name in ["mosquitto", "bridge"] {
            let service = try #require(services[name], "service \(name)")
            #expect(service["profiles"] == nil, "\(name) runs without a profile")
        }
        for name in Self.dittoServices + ["ditto-init", "device-sim"] {
            let service = try #require(services[name], "service \(name) is missing")
            #expect(service["profiles"] as? [String] == ["ditto"], "\(name) belongs to the ditto profile")
        }
        #expect(Set(services.keys) == Set(["mosquitto", "bridge", "ditto-init", "device-sim"] + Self.dittoServices))
    }

    @Test func dittoImagesAndVersionsAsInDittosOwnComposeFile() throws {
        let services = try Self.services()
        for name in ["policies", "things", "things-search", "connectivity", "gateway"] {
            #expect(services[name]?["image"] as? String == "docker.io/eclipse/ditto-\(name):${DITTO_VERSION:-latest}")
            let environment = Self.environment(try #require(services[name]))
            #expect(environment["BIND_HOSTNAME"] == "0.0.0.0", "\(name)")
            #expect(environment["JAVA_TOOL_OPTIONS"]?.contains("-Dpekko.coordinated-shutdown.exit-jvm=on") == true, "\(name)")
            let networks = services[name]?["networks"] as? [String: [String: [String]]]
            #expect(networks?["default"]?["aliases"] == ["ditto-cluster"], "\(name) joins the Ditto cluster")
            let health = services[name]?["healthcheck"] as? [String: Any]
            #expect((health?["test"] as? String)?.contains(":7626/alive") == true, "\(name)")
        }
        for name in ["policies", "things", "things-search", "connectivity"] {
            #expect(Self.environment(try #require(services[name]))["MONGO_DB_HOSTNAME"] == "mongodb")
        }
        #expect(services["mongodb"]?["image"] as? String == "docker.io/mongo:7.0")
        #expect(services["nginx"]?["image"] as? String == "docker.io/nginx:1.27-alpine")
        #expect(Self.environment(try #require(services["gateway"]))["ENABLE_PRE_AUTHENTICATION"] == "true")
        #expect((services["nginx"]?["ports"] as? [String])?.contains("${DITTO_EXTERNAL_PORT:-8080}:80") == true)
    }

    /// Config/mosquitto.conf's settings (comments dropped) by listener port; the key 0 holds the global ones.
    static func mosquittoListeners() throws -> [Int: [String: String]] {
        var result: [Int: [String: String]] = [0: [:]]
        var current = 0
        for raw in try Repository.text("Config/mosquitto.conf").split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
            if parts[0] == "listener" {
                current = try #require(Int(parts[1].split(separator: " ")[0]), "\(line)")
                result[current] = ["listener": parts[1]]
            } else {
                result[current, default: [:]][parts[0]] = parts.count > 1 ? parts[1] : ""
            }
        }
        return result
    }

    static let devicePort = 1883
    static let dittoPort = 1884

    @Test func mosquittoPublishesOnlyTheDeviceListenerAndPersistsOnAVolume() async throws {
        let compose = try Self.compose()
        let mosquitto = try #require(try Self.services()["mosquitto"])
        // All interfaces: a "127.0.0.1:" prefix would hide the broker from devices. The Ditto side stays unpublished.
        #expect(mosquitto["ports"] as? [String] == ["\(Self.devicePort):\(Self.devicePort)"])
        let volumes = try #require(mosquitto["volumes"] as? [String])
        #expect(volumes.contains("./Config/mosquitto.conf:/mosquitto/config/mosquitto.conf:ro"))
        let data = try #require(volumes.first { $0.hasSuffix(":/mosquitto/data") })
        let volumeName = String(data.prefix { $0 != ":" })
        let declared = try #require(compose["volumes"] as? [String: Any?])
        #expect(declared.keys.contains(volumeName), "named volume \(volumeName) is declared")
        // Configuration and secrets read-only.
        for volume in volumes where volume.hasPrefix("./") { #expect(volume.hasSuffix(":ro"), "\(volume)") }

        let listeners = try Self.mosquittoListeners()
        let global = try #require(listeners[0])
        #expect(global["per_listener_settings"] == "true", "each listener its own users and ACL")
        #expect(global["persistence"] == "true")
        #expect(global["persistence_location"] == "/mosquitto/data/")
        #expect(global["set_tcp_nodelay"] == "true")
        #expect(global["max_queued_messages"] == "100000")
        #expect(Set(listeners.keys) == [0, Self.devicePort, Self.dittoPort])
        for port in [Self.devicePort, Self.dittoPort] {
            let listener = try #require(listeners[port])
            #expect(listener["listener"] == "\(port) 0.0.0.0")
            #expect(listener["allow_anonymous"] == "false", "\(port)")
            #expect(listener["password_file"] != nil && listener["acl_file"] != nil, "\(port)")
        }
        let devices = try #require(listeners[Self.devicePort])
        let ditto = try #require(listeners[Self.dittoPort])
        #expect(devices["use_username_as_clientid"] == "true")
        #expect(devices["password_file"] != ditto["password_file"] && devices["acl_file"] != ditto["acl_file"])
        #expect(devices["acl_file"]?.hasSuffix("/devices.acl") == true && ditto["acl_file"]?.hasSuffix("/ditto.acl") == true)

        // Every file the config names lies in a mount: the repository's (existing) or the secrets add-device.sh makes.
        let secrets = try await onOwnThread { try Self.quickStartSecrets() }
        defer { try? FileManager.default.removeItem(at: secrets) }
        let paths = listeners.values.flatMap { [$0["password_file"], $0["acl_file"]] }.compactMap { $0 }
        for path in paths {
            let mount = try #require(volumes.first { path.hasPrefix(String($0.split(separator: ":")[1]) + "/") }, "\(path) is mounted")
            let parts = mount.split(separator: ":").map(String.init)
            let inside = String(path.dropFirst(parts[1].count + 1))
            let source = try Self.hostPath(parts[0], secrets: secrets).appendingPathComponent(inside)
            #expect(FileManager.default.fileExists(atPath: source.path), "\(path) from \(source.path)")
        }
    }

    /// What the quick start (README, top of docker-compose.yml) runs: add-device.sh for the simulated device,
    /// in a temporary directory instead of secrets/. The caller removes it.
    static func quickStartSecrets() throws -> URL {
        let secrets = FileManager.default.temporaryDirectory.appendingPathComponent("quick-start-\(UUID().uuidString)")
        let run = try ProgramRun.runBlocking(
            "/bin/bash", [Repository.file("scripts/add-device.sh").path, "--secrets", secrets.path,
                          "--password-out", secrets.appendingPathComponent("sensor-1.password").path, "sensor-1"])
        try #require(run.status == 0, "add-device.sh: \(run.stderr)")
        return secrets
    }

    /// A compose source path (./...) on the host: under secrets/ it is what add-device.sh made in `secrets`.
    static func hostPath(_ source: String, secrets: URL) throws -> URL {
        try #require(source.hasPrefix("./"), "\(source)")
        let relative = String(source.dropFirst(2))
        if relative.hasPrefix("secrets/") { return secrets.appendingPathComponent(String(relative.dropFirst("secrets/".count))) }
        try #require(!relative.hasPrefix("secrets"), "\(source)")
        return Repository.file(relative)
    }

    /// Bind mounts and file secrets: in the repository, or (under secrets/) made by the quick start's add-device.sh.
    @Test func everyBindMountAndSecretSourceExists() async throws {
        let secrets = try await onOwnThread { try Self.quickStartSecrets() }
        defer { try? FileManager.default.removeItem(at: secrets) }
        var sources: [(String, String)] = []
        for (name, service) in try Self.services() {
            for volume in service["volumes"] as? [String] ?? [] where volume.hasPrefix("./") {
                sources.append((name, String(volume.prefix { $0 != ":" })))
            }
        }
        let declared = try #require(try Self.compose()["secrets"] as? [String: [String: String]])
        for (name, secret) in declared { sources.append(("secret \(name)", try #require(secret["file"], "\(name)"))) }
        #expect(sources.contains { $0.1.hasPrefix("./secrets/") })
        for (name, source) in sources {
            let path = try Self.hostPath(source, secrets: secrets).path
            #expect(FileManager.default.fileExists(atPath: path), "\(name): \(source)")
        }
        // Every secret a service names is declared.
        for (name, service) in try Self.services() {
            for secret in service["secrets"] as? [String] ?? [] {
                #expect(declared[secret] != nil, "\(name): secret \(secret)")
            }
        }
        let ignored = try Repository.text(".gitignore").split(separator: "\n")
        #expect(ignored.contains("/secrets/"), "generated secrets stay out of git")
    }

    /// The bridge's password file, for loading Config/bridge.docker.yaml outside the container; remove it with
    /// ``removeContainerEnvironment(_:)``.
    static func containerEnvironment() throws -> [String: String] {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("bridge-password-\(UUID().uuidString)")
        try "not-the-real-one\n".write(to: file, atomically: true, encoding: .utf8)
        return ["BRIDGE_PASSWORD_FILE": file.path]
    }

    static func removeContainerEnvironment(_ environment: [String: String]) {
        if let file = environment["BRIDGE_PASSWORD_FILE"] { try? FileManager.default.removeItem(atPath: file) }
    }

    /// The file the image's `run` reads: Dockerfile copies Config/ to /etc/ditto-mqtt-bridge/.
    static func configInImage(_ path: String) throws -> URL {
        let prefix = "/etc/ditto-mqtt-bridge/"
        #expect(path.hasPrefix(prefix), "\(path)")
        return Repository.file("Config/" + path.dropFirst(prefix.count))
    }

    @Test func theBridgeTalksToTheComposeBroker() throws {
        let services = try Self.services()
        let bridge = try #require(services["bridge"])
        #expect(bridge["build"] as? String == ".")
        let command = try #require(bridge["command"] as? [String])
        #expect(command.first == "run")
        let configIndex = try #require(command.firstIndex(of: "--config"))
        let config = try Self.configInImage(command[configIndex + 1])
        #expect(command.contains("--log-format"))
        let passwordFile = try Self.containerEnvironment()
        defer { Self.removeContainerEnvironment(passwordFile) }
        let configuration = try BridgeConfiguration.load(
            path: config.path, environment: Self.environment(bridge).merging(passwordFile) { $1 })
        let devices = configuration.connections.device
        let ditto = try #require(configuration.connections.ditto.broker)
        for connection in [devices, ditto] {
            #expect(services[connection.host] != nil, "\(connection.host) is a compose service")
            #expect(connection.host == "mosquitto")
            // The user of Config/mosquitto/*.acl; BrokerSecurityTests logs in with this config on the shipped broker.
            #expect(connection.username == "bridge")
            #expect(!connection.cleanStart && (connection.sessionExpiry ?? .zero) > .zero,
                    "the broker keeps the session (and queues messages) while the bridge restarts")
        }
        #expect(devices.port == Self.devicePort)
        #expect(ditto.port == Self.dittoPort)
        // Without the environment the container config still defaults to the compose broker (the password file
        // is then the compose secret, which does not exist here).
        let raw = try #require(try Yams.load(yaml: Repository.text("Config/bridge.docker.yaml")) as? [String: Any])
        let rawConnections = try #require(raw["connections"] as? [String: [String: Any]])
        let secrets = try #require(bridge["secrets"] as? [String])
        for side in ["device", "ditto"] {
            #expect(rawConnections[side]?["host"] as? String == "${BRIDGE_\(side.uppercased())_HOST:-mosquitto}")
            let file = try #require(rawConnections[side]?["password-file"] as? String)
            let fallback = try #require(file.wholeMatch(of: /\$\{BRIDGE_PASSWORD_FILE:-\/run\/secrets\/(.+)\}/), "\(file)").1
            #expect(secrets.contains(String(fallback)), "\(side): the compose secret \(fallback)")
        }
        // The spool on the named volume mounted at the image's state directory.
        let spool = try #require(configuration.spool)
        let stateMount = try #require((bridge["volumes"] as? [String])?.first { $0.hasSuffix(":/var/lib/ditto-mqtt-bridge") })
        let declared = try #require(try Self.compose()["volumes"] as? [String: Any?])
        #expect(declared.keys.contains(String(stateMount.prefix { $0 != ":" })))
        #expect(spool.directory.hasPrefix("/var/lib/ditto-mqtt-bridge/"), "\(spool.directory)")
        let runtime = try #require(try Self.dockerfileStages().last)
        #expect(runtime.instructions.contains { $0.keyword == "WORKDIR" && $0.arguments == "/var/lib/ditto-mqtt-bridge" })
        #expect(runtime.instructions.contains {
            $0.keyword == "RUN" && $0.arguments.contains("--uid 10001") && $0.arguments.contains("--home-dir /var/lib/ditto-mqtt-bridge")
        }, "the image's user owns the directory a new named volume copies")
        let listen = try #require(configuration.operations.listen)
        #expect(listen.description == "0.0.0.0:9464")
        #expect((bridge["ports"] as? [String]) == ["127.0.0.1:\(listen.port):\(listen.port)"])
        #expect((bridge["depends_on"] as? [String]) == ["mosquitto"])
    }

    @Test func theContainerConfigHasTheDefaultRules() throws {
        let local = try BridgeConfiguration.load(path: Repository.file("Config/bridge.yaml").path, environment: [:])
        let passwordFile = try Self.containerEnvironment()
        defer { Self.removeContainerEnvironment(passwordFile) }
        let container = try BridgeConfiguration.load(
            path: Repository.file("Config/bridge.docker.yaml").path, environment: passwordFile)
        // Equal but for where in the file each rule is.
        func unlocated(_ rules: [UplinkRule]) -> [UplinkRule] {
            rules.map { var rule = $0; rule.location = SourceLocation(line: 0, column: 0); return rule }
        }
        func unlocated(_ rules: [DownlinkRule]) -> [DownlinkRule] {
            rules.map { var rule = $0; rule.location = SourceLocation(line: 0, column: 0); return rule }
        }
        #expect(unlocated(container.uplink) == unlocated(local.uplink))
        #expect(unlocated(container.downlink) == unlocated(local.downlink))
        #expect(container.ditto == local.ditto)
        #expect(container.acks == local.acks)
        #expect(container.defaults == local.defaults)
        #expect(container.headers == local.headers)
        #expect(container.deviceStatus == local.deviceStatus)
        #expect(local.operations.listen?.isLoopback == true, "the host config keeps the endpoint on loopback")
    }

    @Test func dittoInitAndTheSimulatedDevice() throws {
        let services = try Self.services()
        let initService = try #require(services["ditto-init"])
        let mounts = try #require(initService["volumes"] as? [String])
        #expect(mounts.contains("./Config/ditto-connection.json:/ditto/connection.json:ro"))
        let dependsOn = try #require(initService["depends_on"] as? [String: [String: String]])
        #expect(dependsOn["gateway"]?["condition"] == "service_healthy")
        #expect(dependsOn["connectivity"]?["condition"] == "service_healthy")
        #expect(Self.environment(initService)["DITTO_GATEWAY"] == "http://gateway:8080")
        // The password of the Ditto-side user `ditto`, for the connection's uri.
        let initSecrets = try #require(initService["secrets"] as? [String])
        let passwordPath = try #require(Self.environment(initService)["DITTO_MQTT_PASSWORD_FILE"])
        #expect(initSecrets.map { "/run/secrets/\($0)" }.contains(passwordPath), "\(passwordPath)")
        let script = try Repository.text("Config/ditto/init.sh")
        let entrypoint = try #require(initService["entrypoint"] as? [String])
        #expect(entrypoint == ["/bin/sh", "/ditto/init.sh"])
        for path in mounts.map({ String($0.split(separator: ":")[1]) }) where path != "/ditto/init.sh" {
            #expect(script.contains(path), "init.sh uses \(path)")
        }
        #expect(script.contains("/api/2/connections/edge-bridge"))

        let device = try #require(services["device-sim"])
        let environment = Self.environment(device)
        let broker = try #require(environment["BROKER_HOST"])
        #expect(services[broker] != nil)
        let deviceID = try #require(environment["DEVICE_ID"])
        // It logs in as itself with the password the quick start's add-device.sh wrote (a compose secret).
        let devicePassword = try #require(environment["DEVICE_PASSWORD_FILE"])
        let deviceSecrets = try #require(device["secrets"] as? [String])
        #expect(deviceSecrets.map { "/run/secrets/\($0)" } == [devicePassword])
        let declaredSecrets = try #require(try Self.compose()["secrets"] as? [String: [String: String]])
        #expect(declaredSecrets[deviceSecrets[0]]?["file"] == "./secrets/\(deviceID).password")
        let configuration = try BridgeConfiguration.load(path: Repository.file("Config/bridge.yaml").path, environment: [:])
        let telemetry = "devices/\(deviceID)/telemetry/temperature"
        let rule = try #require(configuration.uplinkRule(forTopic: telemetry), "a rule maps \(telemetry)")
        let match = try #require(try rule.match(topic: telemetry))
        // The thing ditto-init creates.
        #expect(match.thingID.description == "org.example:\(deviceID)")
        #expect(script.contains("thing=\"\(match.thingID)\""))
        let deviceScript = try Repository.text("Config/ditto/simulated-device.sh")
        #expect(deviceScript.contains("devices/${device}/telemetry/temperature"))
        #expect(deviceScript.contains("devices/${device}/status"))
        #expect(configuration.deviceStatus?.topic.match("devices/\(deviceID)/status") != nil)
    }

    // MARK: - Config/ditto-connection.json

    static func connection() throws -> [String: Any] {
        let data = try Data(contentsOf: Repository.file("Config/ditto-connection.json"))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    /// What init.sh replaces in the connection's uri with the password of the user `ditto`.
    static let connectionPasswordPlaceholder = "DITTO_MQTT_PASSWORD"

    /// The connection's uri as init.sh sends it: its sed command, run here on the uri.
    static func renderConnectionURI(_ uri: String, password: String) throws -> String {
        let script = try Repository.text("Config/ditto/init.sh")
        let command = "sed \"s|:\(connectionPasswordPlaceholder)@|:${mqtt_password}@|\""
        try #require(script.contains(command), "init.sh substitutes the password with \(command)")
        let run = try ProgramRun.runBlocking(
            "/bin/sh", ["-c", "printf '%s' \"$1\" | " + command, "sh", uri], environment: ["mqtt_password": password])
        try #require(run.status == 0, "\(run.stderr)")
        return run.stdout
    }

    /// Ditto's `{{ thing:id }}` (any spacing) turned into a sample thing ID.
    static func renderDittoPlaceholders(_ text: String, thingID: String, connectionID: String) -> String {
        text.replacing(/\{\{\s*thing:id\s*\}\}/, with: thingID)
            .replacing(/\{\{\s*connection:id\s*\}\}/, with: connectionID)
    }

    @Test func theConnectionMatchesTheBridgeDefaults() throws {
        let connection = try Self.connection()
        let configuration = try BridgeConfiguration.load(path: Repository.file("Config/bridge.yaml").path, environment: [:])
        let services = try Self.services()
        let ditto = configuration.ditto

        #expect(connection["connectionType"] as? String == "mqtt-5")
        #expect(connection["id"] as? String == ditto.connectionID)
        // The URI points at the compose broker's service name and its Ditto-side listener, as the user `ditto`
        // whose password init.sh puts in.
        let uriText = try #require(connection["uri"] as? String)
        let uri = try #require(URLComponents(string: uriText))
        #expect(uri.scheme == "tcp")
        #expect(uri.host.map { services[$0] != nil } == true, "\(uri)")
        #expect(uri.host == "mosquitto")
        #expect(uri.port == Self.dittoPort)
        #expect(uri.user == "ditto")
        #expect(uri.password == Self.connectionPasswordPlaceholder)
        let rendered = try #require(URLComponents(string: Self.renderConnectionURI(uriText, password: "abc123XYZ")))
        #expect(rendered.password == "abc123XYZ" && rendered.user == "ditto" && rendered.port == Self.dittoPort)
        let acl = try Repository.text("Config/mosquitto/ditto.acl")
        #expect(acl.split(separator: "\n").contains("user ditto"))

        let sources = try #require(connection["sources"] as? [[String: Any]])
        let source = try #require(sources.first)
        #expect(sources.count == 1)
        let sample = "org.example:sensor-1"
        let published = try ditto.publishTopic.render(["thingId": sample, "namespace": "org.example", "thingName": "sensor-1"])
        let addresses = try #require(source["addresses"] as? [String])
        #expect(addresses.contains { (try? TopicTemplate($0))?.match(published) != nil }, "\(addresses) cover \(published)")
        let enforcement = try #require(source["enforcement"] as? [String: Any])
        let filters = try #require(enforcement["filters"] as? [String])
        #expect(
            filters.map { Self.renderDittoPlaceholders($0, thingID: sample, connectionID: ditto.connectionID) }
                .contains(published),
            "enforcement \(filters) accepts what the bridge publishes (\(published))")
        #expect(source["qos"] as? Int == Int(ditto.qos.rawValue))

        let declared = try #require(source["declaredAcks"] as? [String])
        #expect(
            declared.map { Self.renderDittoPlaceholders($0, thingID: sample, connectionID: ditto.connectionID) }.sorted()
                == configuration.acks.all.sorted())

        let targets = try #require(connection["targets"] as? [[String: Any]])
        #expect(targets.count == 1)
        let target = try #require(targets.first)
        let address = Self.renderDittoPlaceholders(
            try #require(target["address"] as? String), thingID: sample, connectionID: ditto.connectionID)
        #expect(ditto.subscribeFilter.match(address) != nil, "target \(address) is under \(ditto.subscribeFilter)")
        #expect(Set(target["topics"] as? [String] ?? []) == ["_/_/things/live/commands", "_/_/things/live/messages"])
        #expect(target["qos"] as? Int == Int(ditto.qos.rawValue))
        // Ditto answers device-initiated requests at the bridge's reply-to, which must come back to the bridge.
        let reply = try ditto.replyTopic.render(["thingId": sample, "namespace": "org.example", "thingName": "sensor-1"])
        #expect(ditto.subscribeFilter.match(reply) != nil)
        let replyTarget = try #require(source["replyTarget"] as? [String: Any])
        #expect(replyTarget["enabled"] as? Bool == true)
    }

    @Test func thePolicyGrantsTheConnectionSubjectReadAndWrite() throws {
        let connection = try Self.connection()
        let policyData = try Data(contentsOf: Repository.file("Config/ditto/policy.json"))
        let policy = try #require(try JSONSerialization.jsonObject(with: policyData) as? [String: Any])
        let entries = try #require(policy["entries"] as? [String: [String: Any]])
        var subjects = Set<String>()
        for key in ["sources", "targets"] {
            for item in connection[key] as? [[String: Any]] ?? [] {
                subjects.formUnion(item["authorizationContext"] as? [String] ?? [])
            }
        }
        #expect(!subjects.isEmpty)
        for subject in subjects {
            let entry = try #require(
                entries.values.first { ($0["subjects"] as? [String: Any])?[subject] != nil }, "no entry for \(subject)")
            let resources = try #require(entry["resources"] as? [String: [String: [String]]])
            for resource in ["thing:/", "message:/"] {
                #expect(Set(resources[resource]?["grant"] ?? []) == ["READ", "WRITE"], "\(subject) on \(resource)")
                #expect(resources[resource]?["revoke"] == [], "\(subject) on \(resource)")
            }
        }
        let thingData = try Data(contentsOf: Repository.file("Config/ditto/thing.json"))
        let thing = try #require(try JSONSerialization.jsonObject(with: thingData) as? [String: Any])
        let script = try Repository.text("Config/ditto/init.sh")
        let policyID = try #require(thing["policyId"] as? String)
        #expect(script.contains("policy=\"\(policyID)\""))
    }

    // MARK: - Dockerfile

    struct Stage {
        var base: String
        var name: String?
        var instructions: [(keyword: String, arguments: String)] = []
    }

    /// Splits the Dockerfile into stages of instructions (continuation lines joined, comments dropped).
    static func dockerfileStages() throws -> [Stage] {
        var logical: [String] = []
        var current = ""
        for raw in try Repository.text("Dockerfile").split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if current.isEmpty && (line.isEmpty || line.hasPrefix("#")) { continue }
            if line.hasSuffix("\\") {
                current += line.dropLast() + " "
            } else {
                logical.append(current + line)
                current = ""
            }
        }
        var stages: [Stage] = []
        for line in logical {
            let keyword = String(line.prefix { !$0.isWhitespace }).uppercased()
            let arguments = line.dropFirst(keyword.count).trimmingCharacters(in: .whitespaces)
            if keyword == "FROM" {
                let parts = arguments.split(separator: " ").map(String.init)
                let name = parts.count == 3 && parts[1].uppercased() == "AS" ? parts[2] : nil
                stages.append(Stage(base: parts[0], name: name))
            } else {
                try #require(!stages.isEmpty, "\(keyword) before FROM")
                stages[stages.count - 1].instructions.append((keyword, arguments))
            }
        }
        return stages
    }

    static func jsonArray(_ text: String) throws -> [String] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String], "exec form: \(text)")
    }

    @Test func dockerfileStagesUserAndPaths() throws {
        let stages = try Self.dockerfileStages()
        #expect(stages.count == 2)
        let build = try #require(stages.first)
        let runtime = try #require(stages.last)
        #expect(build.base.hasPrefix("swift:6.3"), "\(build.base)")
        #expect(build.name == "build")
        #expect(runtime.base == "debian:bookworm-slim")

        let buildRuns = build.instructions.filter { $0.keyword == "RUN" }.map(\.arguments).joined(separator: "\n")
        #expect(buildRuns.contains("libmosquitto-dev"))
        #expect(buildRuns.contains("swift build -c release --product ditto-mqtt-bridge"))
        let package = try Repository.text("Package.swift")
        #expect(package.contains(#".executable(name: "ditto-mqtt-bridge""#))
        let installLine = try #require(buildRuns.split(separator: "\n").first { $0.contains("install -D") })
        let installed = try #require(installLine.split(separator: " ").last)
        // What the build stage copies must be everything Package.swift needs.
        let buildCopies = build.instructions.filter { $0.keyword == "COPY" }.map(\.arguments)
        for path in ["Package.swift", "Sources", "Tests"] {
            #expect(buildCopies.contains { $0.hasPrefix(path + " ") }, "COPY \(path)")
            #expect(FileManager.default.fileExists(atPath: Repository.file(path).path))
        }

        let runtimeRuns = runtime.instructions.filter { $0.keyword == "RUN" }.map(\.arguments).joined(separator: "\n")
        #expect(runtimeRuns.contains("libmosquitto1"))
        #expect(!runtimeRuns.contains("libmosquitto-dev"))
        let copyBinary = try #require(runtime.instructions.first { $0.keyword == "COPY" && $0.arguments.hasPrefix("--from=build") })
        let copyParts = copyBinary.arguments.split(separator: " ").map(String.init)
        #expect(copyParts[1] == String(installed), "the runtime copies what the build stage installed")
        let binary = copyParts[2]
        #expect(runtime.instructions.contains { $0.keyword == "COPY" && $0.arguments == "Config/ /etc/ditto-mqtt-bridge/" })

        // A non-root user, declared before the entry point runs.
        let users = runtime.instructions.filter { $0.keyword == "USER" }.map(\.arguments)
        let user = try #require(users.last)
        #expect(user != "root" && user != "0" && !user.hasPrefix("0:"))
        #expect(runtimeRuns.contains("useradd") && runtimeRuns.contains(user), "user \(user) is created")

        let entrypoint = try Self.jsonArray(try #require(runtime.instructions.last { $0.keyword == "ENTRYPOINT" }?.arguments))
        #expect(entrypoint == [binary])
        let command = try Self.jsonArray(try #require(runtime.instructions.last { $0.keyword == "CMD" }?.arguments))
        #expect(command.first == "run")
        let config = try Self.configInImage(command[try #require(command.firstIndex(of: "--config")) + 1])
        #expect(FileManager.default.fileExists(atPath: config.path))

        let healthcheck = try #require(runtime.instructions.first { $0.keyword == "HEALTHCHECK" }?.arguments)
        let cmd = try #require(healthcheck.range(of: "CMD "), "HEALTHCHECK ... CMD [...]")
        let probe = try Self.jsonArray(String(healthcheck[cmd.upperBound...]))
        #expect(probe.prefix(2) == [binary, "probe"])
        #expect(probe.contains("/health"))
        let probeConfig = try Self.configInImage(probe[try #require(probe.firstIndex(of: "--config")) + 1])
        let passwordFile = try Self.containerEnvironment()
        defer { Self.removeContainerEnvironment(passwordFile) }
        let listen = try BridgeConfiguration.load(path: probeConfig.path, environment: passwordFile).operations.listen
        #expect(listen != nil, "the HEALTHCHECK's config serves /health")
        let exposed = runtime.instructions.filter { $0.keyword == "EXPOSE" }.map(\.arguments)
        #expect(exposed == [String(listen?.port ?? 0)])
    }

    // MARK: - systemd unit

    static let systemdAnalyze = "/usr/bin/systemd-analyze"

    static func unitSettings() throws -> [(section: String, key: String, value: String)] {
        var section = ""
        var result: [(String, String, String)] = []
        for raw in try Repository.text("Config/ditto-mqtt-bridge.service").split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") {
                section = String(line.dropFirst().dropLast())
                continue
            }
            let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            result.append((section, String(parts[0]), parts.count > 1 ? String(parts[1]) : ""))
        }
        return result
    }

    @Test func theUnitIsANotifyServiceWithHardening() throws {
        let settings = try Self.unitSettings()
        func values(_ key: String) -> [String] { settings.filter { $0.section == "Service" && $0.key == key }.map(\.value) }
        #expect(values("Type") == ["notify"])
        #expect(values("NotifyAccess") == ["main"])
        #expect(values("WatchdogSec").count == 1)
        #expect(values("Restart") == ["on-failure"])
        #expect(values("DynamicUser") == ["yes"] || !values("User").isEmpty)
        #expect(values("StateDirectory") == ["ditto-mqtt-bridge"])
        #expect(values("NoNewPrivileges") == ["yes"])
        #expect(values("ProtectSystem") == ["strict"])
        #expect(values("ProtectHome") == ["yes"])
        #expect(values("PrivateTmp") == ["yes"])
        #expect(values("RestrictAddressFamilies") == ["AF_UNIX AF_INET AF_INET6"])
        #expect(values("ExecReload") == ["/bin/kill -HUP $MAINPID"])
        // A missing LoadCredential= file fails the unit: the credential is a documented drop-in, not in the unit.
        #expect(values("LoadCredential").isEmpty)

        // ExecStart runs the bridge with a config the repository ships (installed as /etc/ditto-mqtt-bridge/...).
        let start = try #require(values("ExecStart").first).split(separator: " ").map(String.init)
        #expect(start.prefix(2) == ["/usr/local/bin/ditto-mqtt-bridge", "run"])
        let config = try Self.configInImage(start[try #require(start.firstIndex(of: "--config")) + 1])
        #expect(FileManager.default.fileExists(atPath: config.path))
        #expect(values("ExecStartPre").first?.contains("check --config") == true)
    }

    @Test(
        .enabled(
            if: FileManager.default.isExecutableFile(atPath: systemdAnalyze),
            "systemd-analyze is not installed on this machine: the unit was not verified by systemd"))
    func systemdAnalyzeVerifyAcceptsTheUnit() async throws {
        // systemd-analyze checks that ExecStart's binary exists; point it at an executable in a temp dir.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("unit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let binary = directory.appendingPathComponent("ditto-mqtt-bridge")
        try "#!/bin/sh\nexit 0\n".write(to: binary, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: binary.path)
        let unit = try Repository.text("Config/ditto-mqtt-bridge.service")
            .replacingOccurrences(of: "/usr/local/bin/ditto-mqtt-bridge", with: binary.path)
        let unitFile = directory.appendingPathComponent("ditto-mqtt-bridge.service")
        try unit.write(to: unitFile, atomically: true, encoding: .utf8)

        let run = try await ChildProcess.run(Self.systemdAnalyze, ["verify", "--man=no", unitFile.path],
                                             mergingStandardError: true)
        let (status, text) = (run.status, run.standardOutput)
        #expect(status == 0, "systemd-analyze verify: \(text)")
        // Warnings about this unit fail too (lines about other units on the machine do not concern it).
        let about = text.split(separator: "\n").filter { $0.contains("ditto-mqtt-bridge") }
        #expect(about.isEmpty, "systemd-analyze verify: \(about.joined(separator: "\n"))")
    }
}
