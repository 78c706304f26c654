import BridgeOperations
import Foundation
import Logging
import ServiceLifecycle
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A datagram socket in systemd's place: bound to a path in a temp dir or to an abstract name.
final class NotifySocket {
    let fd: Int32
    /// What goes into `$NOTIFY_SOCKET`.
    let name: String
    private let directory: URL?

    init(abstract: Bool = false) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HTTPProbeError.io("socket: \(errno)") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes: [UInt8]
        if abstract {
            name = "@ditto-bridge-test-\(UUID().uuidString)"
            directory = nil
            bytes = Array(name.utf8)
            bytes[0] = 0
        } else {
            // Short: sun_path holds 108 bytes and $TMPDIR may be long.
            let dir = URL(fileURLWithPath: "/tmp").appendingPathComponent("sdn-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            directory = dir
            name = dir.appendingPathComponent("notify").path
            bytes = Array(name.utf8) + [0]
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(2 + bytes.count)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else { throw HTTPProbeError.io("bind \(name): \(String(cString: strerror(errno)))") }
    }

    deinit {
        close(fd)
        if let directory { try? FileManager.default.removeItem(at: directory) }
    }

    /// The next datagram, or nil after `timeout` (blocking on its own thread, off the cooperative pool).
    /// Generous by default: at the start of a full run every suite starts brokers at once and the cooperative
    /// pool (two threads here) can be busy for seconds before a service gets to send.
    func receive(timeout: Duration = .seconds(30)) async -> String? {
        let fd = self.fd
        let (seconds, attoseconds) = timeout.components
        return await withCheckedContinuation { continuation in
            Thread {
                var tv = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                var buffer = [UInt8](repeating: 0, count: 4096)
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                continuation.resume(returning: n < 0 ? nil : String(decoding: buffer[0..<n], as: UTF8.self))
            }.start()
        }
    }
}

struct SystemdNotifierTests {
    @Test(arguments: [false, true])
    func notificationsReachThePathOrAbstractSocket(abstract: Bool) async throws {
        let socket = try NotifySocket(abstract: abstract)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.name], logger: .test)
        #expect(notifier.isEnabled)
        try notifier.send([.ready, .status("bridging\nfine")])
        #expect(await socket.receive() == "READY=1\nSTATUS=bridging fine")
        try notifier.send([.stopping])
        #expect(await socket.receive() == "STOPPING=1")
        try notifier.send([.watchdog])
        #expect(await socket.receive() == "WATCHDOG=1")
        try notifier.send([.reloading])
        let reloading = try #require(await socket.receive())
        #expect(reloading.hasPrefix("RELOADING=1\nMONOTONIC_USEC="))
        #expect(UInt64(reloading.dropFirst("RELOADING=1\nMONOTONIC_USEC=".count)) != nil, "\(reloading)")
    }

    @Test func withoutNotifySocketNothingHappens() throws {
        let notifier = SystemdNotifier(environment: ["WATCHDOG_USEC": "1000000"], logger: .test)
        #expect(!notifier.isEnabled)
        #expect(notifier.watchdogInterval == nil)
        try notifier.send([.ready])
        notifier.notify(.stopping)
    }

    @Test func malformedOrMissingSocketsAreErrors() throws {
        let relative = SystemdNotifier(environment: ["NOTIFY_SOCKET": "run/notify"], logger: .test)
        #expect(throws: SystemdNotifyError.self) { try relative.send([.ready]) }
        let missing = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/nonexistent/notify"], logger: .test)
        let error = #expect(throws: SystemdNotifyError.self) { try missing.send([.ready]) }
        #expect(error?.description.contains("/nonexistent/notify") == true)
        let long = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/" + String(repeating: "x", count: 200)], logger: .test)
        #expect(throws: SystemdNotifyError.self) { try long.send([.ready]) }
        // notify() never throws: a bridge does not stop because systemd's socket went away.
        missing.notify(.ready)
    }

    @Test func watchdogIntervalFromTheEnvironment() {
        let socket = ["NOTIFY_SOCKET": "/run/systemd/notify"]
        let on = SystemdNotifier(environment: socket.merging(["WATCHDOG_USEC": "30000000"]) { $1 }, logger: .test)
        #expect(on.watchdogInterval == .seconds(30))
        let ours = SystemdNotifier(
            environment: socket.merging(["WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "\(getpid())"]) { $1 }, logger: .test)
        #expect(ours.watchdogInterval == .seconds(2))
        let someoneElses = SystemdNotifier(
            environment: socket.merging(["WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"]) { $1 }, logger: .test)
        #expect(someoneElses.watchdogInterval == nil)
        for bad in ["0", "-5", "abc", ""] {
            #expect(SystemdNotifier(environment: socket.merging(["WATCHDOG_USEC": bad]) { $1 }, logger: .test).watchdogInterval == nil)
        }
    }

    @Test func watchdogServicePingsWhileHealthyAndStopsWhenStuck() async throws {
        let socket = try NotifySocket()
        let notifier = SystemdNotifier(
            environment: ["NOTIFY_SOCKET": socket.name, "WATCHDOG_USEC": "100000"], logger: .test)
        let healthy = Flag(true)
        let watchdog = SystemdWatchdogService(notifier: notifier, logger: .test, isHealthy: { healthy.value })
        let group = ServiceGroup(configuration: .init(services: [watchdog], gracefulShutdownSignals: [], logger: .test))
        let running = Task { try await group.run() }

        #expect(await socket.receive() == "WATCHDOG=1")
        #expect(await socket.receive() == "WATCHDOG=1")
        healthy.value = false
        // Drain a ping that may have been sent before the flip, then expect silence for several periods.
        _ = await socket.receive(timeout: .milliseconds(120))
        #expect(await socket.receive(timeout: .milliseconds(300)) == nil)
        healthy.value = true
        #expect(await socket.receive() == "WATCHDOG=1")

        await group.triggerGracefulShutdown()
        try await running.value
    }

    @Test func lifecycleSaysReadyStatusAndStopping() async throws {
        let socket = try NotifySocket()
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.name], logger: .test)
        let readiness = Flag(Readiness.notReady("device broker: not connected"))
        let lifecycle = SystemdLifecycleService(
            notifier: notifier, statusInterval: .milliseconds(20), started: {}, readiness: { readiness.value })
        let group = ServiceGroup(configuration: .init(services: [lifecycle], gracefulShutdownSignals: [], logger: .test))
        let running = Task { try await group.run() }

        #expect(await socket.receive() == "READY=1\nSTATUS=waiting: device broker: not connected")
        readiness.value = .ready
        #expect(await socket.receive() == "STATUS=bridging")
        await group.triggerGracefulShutdown()
        #expect(await socket.receive() == "STOPPING=1\nSTATUS=stopping")
        try await running.value
    }

    @Test func disabledServicesWaitForShutdown() async throws {
        let notifier = SystemdNotifier(environment: [:], logger: .test)
        let services: [any Service] = [
            SystemdWatchdogService(notifier: notifier, logger: .test),
            SystemdLifecycleService(notifier: notifier, started: {}, readiness: { .ready }),
        ]
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [], logger: .test))
        let running = Task { try await group.run() }
        // A service that returned at once would make run() throw serviceFinishedUnexpectedly.
        try await Task.sleep(for: .milliseconds(100))
        await group.triggerGracefulShutdown()
        try await running.value
    }
}
