#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif
public import Logging
public import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why a notification did not reach systemd.
public struct SystemdNotifyError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, with the socket path.
    public var message: String
    public var description: String { message }
}

/// `sd_notify(3)` without libsystemd: datagrams to the `AF_UNIX` socket named by `$NOTIFY_SOCKET`.
///
/// A no-op when `$NOTIFY_SOCKET` is unset (started by hand, in a container, under a `Type=simple` unit).
/// Paths starting with `@` are Linux abstract-namespace sockets, as systemd writes them.
public struct SystemdNotifier: Sendable {
    /// One `KEY=value` line of a notification.
    public enum State: Sendable, Hashable {
        /// `READY=1`: start-up finished (a `Type=notify` unit becomes active).
        case ready
        /// `RELOADING=1` with `MONOTONIC_USEC`: re-reading the config; send ``ready`` when done.
        case reloading
        /// `STOPPING=1`: shutting down.
        case stopping
        /// `WATCHDOG=1`: still alive (needed within `WatchdogSec`).
        case watchdog
        /// `WATCHDOG=trigger`: ask systemd to treat the service as hung (and restart it).
        case watchdogTrigger
        /// `STATUS=...`: one line shown by `systemctl status`.
        case status(String)

        var line: String {
            switch self {
            case .ready: return "READY=1"
            case .reloading: return "RELOADING=1\nMONOTONIC_USEC=\(SystemdNotifier.monotonicMicroseconds())"
            case .stopping: return "STOPPING=1"
            case .watchdog: return "WATCHDOG=1"
            case .watchdogTrigger: return "WATCHDOG=trigger"
            case .status(let text):
                // One notification is newline-separated assignments; a newline would start a bogus one.
                return "STATUS=" + String(String.UnicodeScalarView(text.unicodeScalars.map { $0 == "\n" ? " " : $0 }))
            }
        }
    }

    /// `$NOTIFY_SOCKET` as given; nil when unset or empty.
    public let socketPath: String?
    /// From `$WATCHDOG_USEC` when the watchdog is on for this process (`$WATCHDOG_PID` unset or ours).
    public let watchdogInterval: Duration?
    private let logger: Logger

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from `environment`.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment, logger: Logger) {
        self.logger = logger
        let path = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        socketPath = path
        var interval: Duration?
        if path != nil, let text = environment["WATCHDOG_USEC"], let usec = UInt64(text), usec > 0,
            usec <= UInt64(Int64.max)
        {
            let forUs = environment["WATCHDOG_PID"].map { Int32($0) == getpid() } ?? true
            if forUs { interval = .microseconds(Int64(usec)) }
        }
        watchdogInterval = interval
    }

    /// Whether notifications go anywhere.
    public var isEnabled: Bool { socketPath != nil }

    /// Sends the states in one datagram; failures are logged (once per call) and otherwise ignored, since a
    /// bridge must not stop because systemd's socket went away.
    public func notify(_ states: State...) {
        notify(states)
    }

    /// Sends the states in one datagram; failures are logged and otherwise ignored.
    public func notify(_ states: [State]) {
        do {
            try send(states)
        } catch {
            logger.warning("sd_notify failed", metadata: ["error": "\(error)"])
        }
    }

    /// Sends the states in one datagram.
    /// - throws: ``SystemdNotifyError`` when `$NOTIFY_SOCKET` is malformed or the datagram is refused.
    public func send(_ states: [State]) throws(SystemdNotifyError) {
        guard let socketPath, !states.isEmpty else { return }
        let message = states.map(\.line).joined(separator: "\n")
        #if os(Linux)
        try Self.sendDatagram(Array(message.utf8), to: socketPath)
        #else
        _ = message
        throw SystemdNotifyError(message: "NOTIFY_SOCKET=\(socketPath): sd_notify is only supported on Linux")
        #endif
    }

    static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
    }

    #if os(Linux)
    static func sendDatagram(_ payload: [UInt8], to path: String) throws(SystemdNotifyError) {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var pathBytes = Array(path.utf8)
        let abstract = pathBytes.first == UInt8(ascii: "@")
        guard abstract || pathBytes.first == UInt8(ascii: "/") else {
            throw SystemdNotifyError(
                message: "NOTIFY_SOCKET=\(path): not an absolute path or '@' abstract socket name")
        }
        if abstract { pathBytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        // A path socket needs room for its terminating NUL; an abstract name is counted exactly.
        guard pathBytes.count + (abstract ? 0 : 1) <= capacity else {
            throw SystemdNotifyError(message: "NOTIFY_SOCKET=\(path): longer than \(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
        }
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path) ?? 2
        let length = socklen_t(pathOffset + pathBytes.count + (abstract ? 0 : 1))

        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            throw SystemdNotifyError(message: "NOTIFY_SOCKET=\(path): socket(): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        let sent = payload.withUnsafeBytes { bytes in
            withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                    sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), socketAddress, length)
                }
            }
        }
        guard sent == payload.count else {
            let reason = sent < 0 ? String(cString: strerror(errno)) : "short write (\(sent) of \(payload.count) bytes)"
            throw SystemdNotifyError(message: "NOTIFY_SOCKET=\(path): sendto(): \(reason)")
        }
    }
    #endif
}

/// Sends `WATCHDOG=1` at half of `WatchdogSec` while ``isHealthy`` says so; when the runtime reports itself
/// stuck the pings stop and systemd restarts the service. Does nothing (but wait for shutdown) when the
/// watchdog is off.
///
/// Put it early in the `ServiceGroup` (services shut down in reverse order), so it keeps pinging while the
/// bridge drains.
public struct SystemdWatchdogService: Service {
    let notifier: SystemdNotifier
    let isHealthy: @Sendable () -> Bool
    let logger: Logger

    /// - parameter isHealthy: called before every ping; return false when the event loop is stuck.
    public init(notifier: SystemdNotifier, logger: Logger, isHealthy: @escaping @Sendable () -> Bool = { true }) {
        self.notifier = notifier
        self.logger = logger
        self.isHealthy = isHealthy
    }

    public func run() async throws {
        guard notifier.isEnabled, let interval = notifier.watchdogInterval else {
            try? await gracefulShutdown()
            return
        }
        logger.debug("systemd watchdog on", metadata: ["interval": "\(interval)"])
        let period = interval / 2
        let notifier = self.notifier
        let isHealthy = self.isHealthy
        let logger = self.logger
        try? await cancelWhenGracefulShutdown {
            var healthy = true
            while !Task.isCancelled {
                if isHealthy() {
                    notifier.notify(.watchdog)
                    if !healthy { logger.notice("healthy again; systemd watchdog pings resumed") }
                    healthy = true
                } else if healthy {
                    logger.error("the bridge reports itself stuck; systemd watchdog pings stopped")
                    healthy = false
                }
                try await Task.sleep(for: period)
            }
        }
    }
}

/// Tells systemd the service is up (`READY=1`) once ``started`` returns, keeps `STATUS=` equal to the
/// readiness, and says `STOPPING=1` when graceful shutdown begins.
///
/// Put it **last** in the `ServiceGroup`: services shut down in reverse order, so it announces the stop
/// before the bridge begins to drain.
public struct SystemdLifecycleService: Service {
    let notifier: SystemdNotifier
    let started: @Sendable () async throws -> Void
    let readiness: @Sendable () -> Readiness
    let statusInterval: Duration

    /// - parameter started: returns once start-up is done (config loaded, endpoint listening). Brokers need not
    ///   be connected: the bridge is working while it retries, and `/ready` and `STATUS=` say what is missing.
    /// - parameter readiness: polled every `statusInterval`; a change updates `STATUS=`.
    public init(
        notifier: SystemdNotifier, statusInterval: Duration = .seconds(1),
        started: @escaping @Sendable () async throws -> Void, readiness: @escaping @Sendable () -> Readiness
    ) {
        self.notifier = notifier
        self.started = started
        self.readiness = readiness
        self.statusInterval = statusInterval
    }

    /// The `STATUS=` text for a readiness.
    public static func status(_ readiness: Readiness) -> String {
        readiness.isReady ? "bridging" : "waiting: " + readiness.reasons.joined(separator: "; ")
    }

    public func run() async throws {
        guard notifier.isEnabled else {
            try? await gracefulShutdown()
            return
        }
        let notifier = self.notifier
        let readiness = self.readiness
        let interval = statusInterval
        let started = self.started
        try? await cancelWhenGracefulShutdown {
            try await started()
            var last = Self.status(readiness())
            notifier.notify(.ready, .status(last))
            while !Task.isCancelled {
                try await Task.sleep(for: interval)
                let now = Self.status(readiness())
                if now != last {
                    notifier.notify(.status(now))
                    last = now
                }
            }
        }
        notifier.notify(.stopping, .status("stopping"))
    }
}
