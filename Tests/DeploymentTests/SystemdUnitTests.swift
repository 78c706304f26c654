import Foundation
import Logging
import MQTT
import Mosquitto
import MosquittoTestSupport
import Testing

/// Config/ditto-mqtt-bridge.service's command lines run under the seccomp filters its own lines describe
/// (SystemCallFilter=, SystemCallArchitectures=, MemoryDenyWriteExecute=, RestrictAddressFamilies=,
/// NoNewPrivileges=), with a private mosquitto and traffic through the bridge. systemd itself does not run
/// here (no PID 1): DynamicUser=, ProtectSystem= and the other namespace settings are not exercised.
@Suite(.serialized)
struct SystemdUnitTests {
    static let unitPath = "Config/ditto-mqtt-bridge.service"
    static let installedBinary = "/usr/local/bin/ditto-mqtt-bridge"
    static let installedConfig = "/etc/ditto-mqtt-bridge/bridge.yaml"

    static func unit() throws -> SystemdUnit { try SystemdUnit(text: SNRepository.text(unitPath)) }

    static func policy(_ unit: SystemdUnit) throws -> SeccompPolicy { try SeccompPolicy(unit: unit, sets: SyscallSets.load()) }

    static let logger: Logger = {
        var logger = Logger(label: "systemd-unit-test")
        logger.logLevel = .error
        return logger
    }()

    // MARK: - The filter read from the unit

    @Test("The unit's seccomp settings: an allow list from @system-service without @privileged; libdispatch's setpriority stays allowed")
    func theFilterFromTheUnitsLines() throws {
        let unit = try Self.unit()
        let policy = try Self.policy(unit)
        let filter = try #require(policy.syscallFilter, "the unit has SystemCallFilter= lines")
        #expect(filter.allowList)
        #expect(policy.noNewPrivileges)
        #expect(policy.nativeArchitectureOnly)
        #expect(policy.memoryDenyWriteExecute)
        #expect(policy.addressFamilies?.allowList == true)
        #expect(policy.addressFamilies?.families == ["AF_UNIX", "AF_INET", "AF_INET6"])
        // libdispatch calls setpriority when it starts a worker thread; @resources holds it.
        #expect(policy.allows("setpriority"))
        // systemd's @default, always in an allow list.
        for call in ["execve", "exit_group", "futex", "clock_gettime", "rt_sigreturn", "getrlimit"] {
            #expect(policy.allows(call), "\(call)")
        }
        // What the bridge uses: sockets, epoll, the spool's fsync, threads, signals.
        for call in ["socket", "connect", "sendto", "epoll_wait", "fdatasync", "clone3", "rt_sigaction", "kill"] {
            #expect(policy.allows(call), "\(call)")
        }
        // ~@privileged: no set*uid, mount, chroot, module loading, clock setting, reboot.
        for call in ["setuid", "setresuid", "mount", "chroot", "init_module", "settimeofday", "reboot", "ptrace"] {
            #expect(!policy.allows(call), "\(call)")
        }
    }

    @Test("The unit starts without credential files: no LoadCredential= in the default unit")
    func noMandatoryCredential() throws {
        let unit = try Self.unit()
        #expect(unit.values("LoadCredential").isEmpty,
                "LoadCredential= fails the unit on a host without the file; docs/OPERATIONS.md's drop-in adds it")
        // The installed default config takes no password.
        let config = try SNRepository.text("Config/bridge.yaml")
        #expect(!config.split(separator: "\n").contains { $0.trimmingCharacters(in: .whitespaces).hasPrefix("password") })
    }

    // MARK: - The sandbox is real

    @Test("Under the filter of the unit before this change (~@privileged @resources) the bridge dies with SIGSYS, status 159")
    func theOldFilterKillsTheBridge() async throws {
        let directory = try SNTempDirectory("unit-old")
        defer { directory.remove() }
        let binary = try BuiltExecutable.path("ditto-mqtt-bridge")
        var unit = try Self.unit()
        // The line as it was: SystemCallFilter=~@privileged @resources.
        unit = SystemdUnit(settings: unit.settings + [.init(section: "Service", key: "SystemCallFilter", value: "~@resources")])
        let policy = try Self.policy(unit)
        #expect(!policy.allows("setpriority"))
        for arguments in [["--version"], ["check", "--config", SNRepository.root.appendingPathComponent("Config/bridge.yaml").path]] {
            let command = try SeccompSandbox.command([binary] + arguments, policy: policy, in: directory)
            let result = try await SNProcess.run(command.executable, command.arguments, logPath: directory.file("old.log"))
            #expect(result.exit == SNExit(status: SIGSYS, signaled: true), "\(arguments): \(result.exit): \(result.output)")
            #expect(result.exit.shellStatus == 159)
        }
        // The same binary under the shipped unit's filter.
        let command = try SeccompSandbox.command([binary, "--version"], policy: try Self.policy(try Self.unit()), in: directory)
        let result = try await SNProcess.run(command.executable, command.arguments, logPath: directory.file("new.log"))
        #expect(result.exit == SNExit(status: 0, signaled: false), "\(result.exit): \(result.output)")
        #expect(!result.output.isEmpty)
    }

    @Test("Each seccomp setting is enforced on the exec'd process: W+X memory, other socket families, a @privileged call")
    func theSandboxEnforcesEachSetting() async throws {
        let directory = try SNTempDirectory("unit-probe")
        defer { directory.remove() }
        let probe = try directory.write(#"""
            import ctypes, json, mmap, os, socket, sys
            out = {}
            status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
            for key in ("NoNewPrivs", "Seccomp", "Seccomp_filters"):
                out[key] = status[key].strip()
            try:
                mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
                out["mmap_wx"] = 0
            except OSError as e:
                out["mmap_wx"] = e.errno
            libc = ctypes.CDLL(None, use_errno=True)
            libc.mmap.restype = ctypes.c_void_p
            libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
            libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            page = libc.mmap(None, 4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
            out["mprotect_x"] = 0 if libc.mprotect(page, 4096, mmap.PROT_READ | mmap.PROT_EXEC) == 0 else ctypes.get_errno()
            for name in ("AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK", "AF_PACKET"):
                try:
                    socket.socket(getattr(socket, name), socket.SOCK_DGRAM if name != "AF_PACKET" else socket.SOCK_RAW).close()
                    out[name] = 0
                except OSError as e:
                    out[name] = e.errno
            print(json.dumps(out), flush=True)
            os.chroot("/")  # in @privileged: the filter kills here
            print("chroot returned", flush=True)
            """#, to: "probe.py")
        let command = try SeccompSandbox.command([SeccompSandbox.python, probe], policy: try Self.policy(try Self.unit()),
                                                 in: directory)
        let result = try await SNProcess.run(command.executable, command.arguments, logPath: directory.file("probe.log"))
        #expect(result.exit == SNExit(status: SIGSYS, signaled: true), "\(result.exit): \(result.output)")
        #expect(!result.output.contains("chroot returned"))
        let line = try #require(result.output.split(separator: "\n").first { $0.hasPrefix("{") }, "\(result.output)")
        let out = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(out["NoNewPrivs"] as? String == "1")
        #expect(out["Seccomp"] as? String == "2", "filter mode")
        #expect(out["Seccomp_filters"] as? String == "4", "architectures, address families, W^X, system calls")
        #expect(out["mmap_wx"] as? Int == Int(EPERM))
        #expect(out["mprotect_x"] as? Int == Int(EPERM))
        #expect(out["AF_INET"] as? Int == 0)
        #expect(out["AF_INET6"] as? Int == 0)
        #expect(out["AF_UNIX"] as? Int == 0)
        #expect(out["AF_NETLINK"] as? Int == Int(EAFNOSUPPORT))
        #expect(out["AF_PACKET"] as? Int == Int(EAFNOSUPPORT))
    }

    // MARK: - The unit's command lines with traffic

    @Test("ExecStartPre= and ExecStart= under the filter: READY=1, a device's telemetry reaches Ditto, ExecReload= reloads, SIGTERM exits 0")
    func theUnitsCommandLinesRunUnderItsFilter() async throws {
        let broker = try await TestBroker.start()
        defer { broker.stop() }
        try await UnitService.withRunningUnit(on: broker) { service, fromBridge, device in
            // The filter is on the bridge itself (the sandbox exec'd it: same process id).
            let status = snProcStatus(service.bridge.pid)
            #expect(status["Seccomp"] == "2", "\(status)")
            #expect(status["Seccomp_filters"] == "4", "\(status)")
            #expect(status["NoNewPrivs"] == "1", "\(status)")

            try await device.publish(to: "devices/sensor-1/telemetry/temperature", payload: Array(#"{"value": 21.5}"#.utf8))
            let event = try await UnitService.event(on: fromBridge, path: "/features/temperature/properties/value")
            #expect(event["topic"] as? String == "org.example/sensor-1/things/live/events/modified")
            #expect(event["value"] as? Double == 21.5)

            // ExecReload= (/bin/kill -HUP $MAINPID), itself under the unit's filter as systemd runs it, after a
            // change of the telemetry rule's event path.
            try service.rewriteConfig {
                $0.replacingOccurrences(of: #"path: "/features/{sensor}/properties/value""#,
                                        with: #"path: "/features/{sensor}/properties/reading""#)
            }
            let reload = try await service.runUnderFilter(
                try service.unit.commandLine("ExecReload").map { $0 == "$MAINPID" ? String(service.bridge.pid) : $0 },
                log: "exec-reload.log")
            #expect(reload.exit == SNExit(status: 0, signaled: false), "ExecReload: \(reload.exit): \(reload.output)")
            #expect(await service.notify.waitFor("RELOADING=1"), "\(service.notify.received)")
            #expect(await eventually(timeout: .seconds(10)) { service.bridge.output.contains("config reloaded") },
                    "\(service.bridge.output.suffix(3000))")
            try await device.publish(to: "devices/sensor-1/telemetry/temperature", payload: Array(#"{"value": 22}"#.utf8))
            let after = try await UnitService.event(on: fromBridge, path: "/features/temperature/properties/reading")
            #expect(after["value"] as? Double == 22)
            #expect(service.bridge.isRunning)

            // KillSignal=SIGTERM: a clean stop, exit status 0 (Restart=on-failure does not restart it).
            #expect(service.unit.values("KillSignal") == ["SIGTERM"])
            service.bridge.signal(SIGTERM)
            let exit = await service.bridge.waitForExit(timeout: .seconds(20))
            #expect(exit == SNExit(status: 0, signaled: false), "\(exit)\n\(service.bridge.output.suffix(3000))")
            #expect(await service.notify.waitFor("STOPPING=1", timeout: .seconds(2)), "\(service.notify.received)")
        }
    }

    @Test("The documented credential drop-in: LoadCredential= + password-file: ${CREDENTIALS_DIRECTORY}/... against a broker with passwords")
    func credentialsDirectoryPasswordFile() async throws {
        let broker = try await TestBroker.start(.init(passwordFile: true))
        defer { broker.stop() }
        // What systemd does for LoadCredential=device-password:/etc/...: a copy in $CREDENTIALS_DIRECTORY.
        let credentials = try SNTempDirectory("unit-creds")
        defer { credentials.remove() }
        _ = try credentials.write(broker.password + "\n", to: "device-password")
        _ = try credentials.write(broker.password + "\n", to: "ditto-password")
        // The unit file's config lines for both connections (one broker here, so both need a password).
        let editConfig = { (config: String) -> String in
            var lines: [String] = []
            var side = ""
            for line in config.split(separator: "\n", omittingEmptySubsequences: false) {
                lines.append(String(line))
                if line == "  device:" { side = "device" }
                if line == "  ditto:" { side = "ditto" }
                if line.trimmingCharacters(in: .whitespaces).hasPrefix("port: ") {
                    lines.append("    username: \(broker.username)")
                    lines.append("    password-file: \"${CREDENTIALS_DIRECTORY}/\(side)-password\"")
                }
            }
            return lines.joined(separator: "\n")
        }
        try await UnitService.withRunningUnit(on: broker, credentialsDirectory: credentials.path, editConfig: editConfig) {
            service, fromBridge, device in
            #expect(try String(contentsOfFile: service.configPath, encoding: .utf8).contains("${CREDENTIALS_DIRECTORY}/ditto-password"))
            try await device.publish(to: "devices/sensor-1/telemetry/temperature", payload: Array(#"{"value": 7}"#.utf8))
            let event = try await UnitService.event(on: fromBridge, path: "/features/temperature/properties/value")
            #expect(event["value"] as? Double == 7)
            service.bridge.signal(SIGTERM)
            #expect(await service.bridge.waitForExit(timeout: .seconds(20)) == SNExit(status: 0, signaled: false))
        }
    }
}

/// The unit's ExecStartPre= and ExecStart= with the installed paths replaced: the built binary for
/// /usr/local/bin/ditto-mqtt-bridge, a copy of Config/bridge.yaml pointed at a test broker for
/// /etc/ditto-mqtt-bridge/bridge.yaml; the environment systemd gives the service (STATE_DIRECTORY=,
/// CONFIGURATION_DIRECTORY=, NOTIFY_SOCKET=, WATCHDOG_USEC=, CREDENTIALS_DIRECTORY= with LoadCredential=),
/// WorkingDirectory= the state directory; every command under the unit's seccomp policy.
final class UnitService: Sendable {
    let unit: SystemdUnit
    let policy: SeccompPolicy
    let directory: SNTempDirectory
    let configPath: String
    let environment: [String: String]
    let notify: SNNotifySocket
    let bridge: SNProcess
    let operationsPort: Int

    private init(unit: SystemdUnit, policy: SeccompPolicy, directory: SNTempDirectory, configPath: String,
                 environment: [String: String], notify: SNNotifySocket, bridge: SNProcess, operationsPort: Int) {
        self.unit = unit
        self.policy = policy
        self.directory = directory
        self.configPath = configPath
        self.environment = environment
        self.notify = notify
        self.bridge = bridge
        self.operationsPort = operationsPort
    }

    /// Runs ExecStartPre= to its end (it must succeed), starts ExecStart= and waits for READY=1 and /ready.
    static func start(broker: TestBroker, credentialsDirectory: String? = nil,
                      editConfig: (String) -> String = { $0 }) async throws -> UnitService {
        let unit = try SystemdUnitTests.unit()
        let policy = try SystemdUnitTests.policy(unit)
        let directory = try SNTempDirectory("unit-run")
        let binary = try BuiltExecutable.path("ditto-mqtt-bridge")

        // Config/bridge.yaml as installed, both connections on the test broker (the shipped file has them on
        // the same local mosquitto, port 1883).
        let shipped = try SNRepository.text("Config/bridge.yaml")
        let ports = shipped.components(separatedBy: "port: 1883").count - 1
        guard ports == 2 else { throw TestFailure("Config/bridge.yaml: expected 2 'port: 1883' lines, found \(ports)") }
        let config = editConfig(shipped.replacingOccurrences(of: "port: 1883", with: "port: \(broker.port)"))
        let configPath = try directory.write(config, to: "etc/ditto-mqtt-bridge/bridge.yaml")
        let stateDirectory = directory.file("var/lib/ditto-mqtt-bridge")
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        let notify = try SNNotifySocket(path: directory.file("notify"))
        let operationsPort = try TestBroker.freePort()

        func rewrite(_ words: [String]) throws -> [String] {
            guard words.filter({ $0 == SystemdUnitTests.installedBinary }).count == 1,
                  words.filter({ $0 == SystemdUnitTests.installedConfig }).count == 1
            else { throw TestFailure("\(words.joined(separator: " ")): not the installed binary with the installed config") }
            return words.map { $0 == SystemdUnitTests.installedBinary ? binary : $0 == SystemdUnitTests.installedConfig ? configPath : $0 }
        }

        var environment = [
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "STATE_DIRECTORY": stateDirectory,
            "CONFIGURATION_DIRECTORY": (configPath as NSString).deletingLastPathComponent,
            "NOTIFY_SOCKET": notify.path,
            "WATCHDOG_USEC": "30000000",
            // A drop-in's Environment= in the test's place: not the operator's 9464, a free port.
            "BRIDGE_OPERATIONS_LISTEN": "127.0.0.1:\(operationsPort)",
        ]
        if let credentialsDirectory { environment["CREDENTIALS_DIRECTORY"] = credentialsDirectory }

        let pre = try SeccompSandbox.command(try rewrite(try unit.commandLine("ExecStartPre")), policy: policy, in: directory)
        let check = try await SNProcess.run(pre.executable, pre.arguments, environment: environment, directory: stateDirectory,
                                            logPath: directory.file("exec-start-pre.log"))
        guard check.exit == SNExit(status: 0, signaled: false) else {
            notify.close()
            throw TestFailure("ExecStartPre= under the filter: \(check.exit)\n\(check.output)\n(kept \(directory.path))")
        }

        let start = try SeccompSandbox.command(try rewrite(try unit.commandLine("ExecStart")), policy: policy, in: directory)
        let bridge = try SNProcess(start.executable, start.arguments, environment: environment, directory: stateDirectory,
                                   logPath: directory.file("exec-start.log"))
        let service = UnitService(unit: unit, policy: policy, directory: directory, configPath: configPath,
                                  environment: environment, notify: notify, bridge: bridge, operationsPort: operationsPort)
        let ready = await notify.waitFor("READY=1")
        let serving = await eventually(timeout: .seconds(20), every: .milliseconds(100)) {
            guard bridge.isRunning else { return true }
            return (try? await SNHTTP.request("GET", "/ready", port: operationsPort))?.status == 200
        }
        guard ready, serving, bridge.isRunning else {
            let exit = bridge.isRunning ? "running" : "\(await bridge.waitForExit(timeout: .seconds(1)))"
            service.cleanUp(passed: false)
            throw TestFailure("ExecStart= under the filter did not get ready (READY=1: \(ready), /ready: \(serving), "
                + "\(exit)):\n\(bridge.output.suffix(3000))")
        }
        return service
    }

    func runUnderFilter(_ words: [String], log: String) async throws -> (exit: SNExit, output: String) {
        let command = try SeccompSandbox.command(words, policy: policy, in: directory)
        return try await SNProcess.run(command.executable, command.arguments, environment: environment,
                                       logPath: directory.file(log))
    }

    func rewriteConfig(_ edit: (String) -> String) throws {
        let text = try String(contentsOfFile: configPath, encoding: .utf8)
        let edited = edit(text)
        guard edited != text else { throw TestFailure("the config edit changed nothing") }
        try edited.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// Stops what is still running; keeps the directory (config, logs) and prints where when the test failed.
    func cleanUp(passed: Bool) {
        bridge.kill9()
        notify.close()
        if passed {
            directory.remove()
        } else {
            print("systemd unit test: kept \(directory.path)\n---- ExecStart's output ----\n\(bridge.output.suffix(3000))")
        }
    }

    /// Starts the unit's commands on `broker`, with a Ditto stand-in subscribed to `ditto/in/#` and a connected
    /// device client, runs `body`, then disconnects the clients and stops the bridge whatever happened (the
    /// directory with the config and logs is kept when `body` throws).
    static func withRunningUnit(
        on broker: TestBroker, credentialsDirectory: String? = nil, editConfig: (String) -> String = { $0 },
        _ body: (UnitService, _ fromBridge: MessageCollector, _ device: MosquittoClient) async throws -> Void
    ) async throws {
        let service = try await start(broker: broker, credentialsDirectory: credentialsDirectory, editConfig: editConfig)
        var clients: [MosquittoClient] = []
        do {
            let ditto = try await client(broker, id: "ditto-standin", subscribe: "ditto/in/#")
            clients.append(ditto.client)
            let device = try await client(broker, id: "device-sensor-1")
            clients.append(device.client)
            try await body(service, ditto.received, device.client)
            for client in clients { await client.disconnect() }
            service.cleanUp(passed: true)
        } catch {
            for client in clients { await client.disconnect() }
            service.cleanUp(passed: false)
            throw error
        }
    }

    static func client(_ broker: TestBroker, id: String, subscribe filter: String? = nil) async throws
        -> (client: MosquittoClient, received: MessageCollector)
    {
        let client = try MosquittoClient(configuration: broker.clientConfiguration(clientID: id),
                                         logger: SystemdUnitTests.logger)
        try await client.connect()
        let received = MessageCollector(client.messages)
        if let filter { _ = try await client.subscribe([Subscription(filter: filter, qos: .atLeastOnce)]) }
        return (client, received)
    }

    /// The first Ditto Protocol message on `ditto/in/org.example:sensor-1` with `path`, as JSON.
    static func event(on received: MessageCollector, path: String) async throws -> [String: Any] {
        func decode(_ message: MQTTMessage) -> [String: Any]? {
            try? JSONSerialization.jsonObject(with: Data(message.payload)) as? [String: Any]
        }
        let message = await received.first(timeout: .seconds(15)) {
            $0.topic == "ditto/in/org.example:sensor-1" && decode($0)?["path"] as? String == path
        }
        guard let message, let json = decode(message) else {
            throw TestFailure("no event with path \(path) reached Ditto's side; got \(received.messages.map(\.topic))")
        }
        return json
    }
}
