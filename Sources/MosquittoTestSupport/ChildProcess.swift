import Foundation
import Synchronization

#if canImport(Glibc)
public import Glibc
#endif

/// A program the tests run (a broker, the bridge, a helper such as `openssl`), started with `posix_spawn` and
/// reaped with `waitpid` by exactly the code that waits for it.
///
/// Foundation's `Process` learns of an exit from a SIGCHLD monitor of its own, and `waitUntilExit()` spins the
/// calling thread's RunLoop in 50 ms slices until that monitor has run: on the cooperative pool (two threads
/// on a small machine) each wait holds a thread for the child's whole life, and a child that ignores the
/// SIGTERM holds it for good. Here a wait is a `waitid` on this one child: it never runs a RunLoop, blocks only
/// as long as the child takes to exit, and async callers wait on a thread of their own.
///
/// The child starts with an empty signal mask and default dispositions: the test runner's threads, and every
/// Foundation `Thread`, block SIGTERM, SIGINT and SIGHUP, and a child inherits the mask, so a broker would
/// ignore SIGTERM, never save its persistence file, and a program's graceful stop could not be tested. It
/// gets no descriptor but its standard three.
public final class ChildProcess: Sendable {
    /// How the child ended.
    public enum Termination: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signalled(Int32)

        /// The exit status, or the signal's number (what Foundation's `terminationStatus` says).
        public var status: Int32 {
            switch self {
            case .exited(let status), .signalled(let status): status
            }
        }

        public var description: String {
            switch self {
            case .exited(let status): "exited with status \(status)"
            case .signalled(let signal): "killed by signal \(signal)"
            }
        }
    }

    /// Where the child's standard input comes from.
    public enum Input: Sendable {
        case null
        case file(String)
    }

    /// Where the child's standard output or error goes.
    public enum Output: Sendable {
        case null
        /// Appended to the file, which is created when missing.
        case file(String)
        /// A descriptor of the caller's (a pipe's write end); the caller closes its own copy after the start.
        case descriptor(Int32)
        /// Standard error only: wherever standard output goes.
        case standardOutput
    }

    public let executable: String
    public let processIdentifier: pid_t
    /// nil until a wait reaped the child; signals are sent only while it is nil, so never to a reused pid.
    private let termination = Mutex<Termination?>(nil)

    /// Starts `executable` (a path) with `arguments`; `environment` nil inherits the test runner's.
    public init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                directory: String? = nil, standardInput: Input = .null, standardOutput: Output = .null,
                standardError: Output = .null) throws {
        self.executable = executable
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        switch standardInput {
        case .null: posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        case .file(let path): posix_spawn_file_actions_addopen(&actions, 0, path, O_RDONLY, 0)
        }
        for (descriptor, output) in [(Int32(1), standardOutput), (Int32(2), standardError)] {
            switch output {
            case .null: posix_spawn_file_actions_addopen(&actions, descriptor, "/dev/null", O_WRONLY, 0)
            case .file(let path):
                posix_spawn_file_actions_addopen(&actions, descriptor, path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            case .descriptor(let source): posix_spawn_file_actions_adddup2(&actions, source, descriptor)
            case .standardOutput: posix_spawn_file_actions_adddup2(&actions, 1, descriptor)
            }
        }
        // Not even a descriptor the runner forgot to mark close-on-exec: a broker holding a client's socket
        // would keep that connection open after the test closed it.
        guard let addCloseFrom = Self.addCloseFrom, let addChdir = Self.addChdir else {
            throw TestBroker.Failure(description: "glibc 2.34 or later is needed (posix_spawn_file_actions_addclosefrom_np)")
        }
        _ = addCloseFrom(&actions, 3)
        if let directory { _ = addChdir(&actions, directory) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envp = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { envp?.forEach { free($0) } }
        var pid: pid_t = 0
        let result = envp.map { posix_spawn(&pid, executable, &actions, &attributes, argv, $0) }
            ?? posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard result == 0 else {
            throw TestBroker.Failure(description: "cannot start \(executable): \(String(cString: strerror(result)))")
        }
        processIdentifier = pid
    }

    deinit {
        // Nothing the tests started outlives them, and no zombie either.
        if termination.withLock({ $0 }) == nil {
            _ = signal(SIGKILL)
            _ = waitForExit()
        }
    }

    /// How it ended; nil while it runs. Reaps it when it has exited.
    public var exit: Termination? { reap() }

    public var isRunning: Bool { exit == nil }

    /// Sends `signal` while the child is not reaped yet (a zombie keeps its pid); false once it is.
    @discardableResult
    public func signal(_ signal: Int32) -> Bool {
        termination.withLock { $0 == nil && kill(processIdentifier, signal) == 0 }
    }

    /// Blocks until the child exits, then reaps it.
    @discardableResult
    public func waitForExit() -> Termination {
        while true {
            if let ended = reap() { return ended }
            // WNOWAIT: the child stays a zombie, so its pid cannot be reused before `reap` takes the lock.
            var info = siginfo_t()
            let waited = waitid(P_PID, id_t(processIdentifier), &info, WEXITED | WNOWAIT)
            if waited != 0, errno != EINTR { return reap() ?? lost() }
        }
    }

    /// Like ``waitForExit()``, on a thread of its own.
    @discardableResult
    public func waitForExit() async -> Termination {
        await Self.nonThrowingOnOwnThread { [self] in waitForExit() }
    }

    /// Waits up to `timeout` for the exit; nil when it still runs then.
    public func waitForExit(timeout: Duration) -> Termination? {
        let deadline = ContinuousClock.now + timeout
        var pause = Duration.milliseconds(1)
        while true {
            if let ended = reap() { return ended }
            let now = ContinuousClock.now
            if now >= deadline { return nil }
            Self.sleep(min(pause, deadline - now))
            pause = min(pause * 2, .milliseconds(20))
        }
    }

    /// Like ``waitForExit(timeout:)``, on a thread of its own.
    public func waitForExit(timeout: Duration) async -> Termination? {
        await Self.nonThrowingOnOwnThread { [self] in waitForExit(timeout: timeout) }
    }

    /// SIGTERM, then SIGKILL when it has not exited within `gracePeriod`; waits for the exit either way.
    @discardableResult
    public func terminate(gracePeriod: Duration) -> Termination {
        signal(SIGTERM)
        if let ended = waitForExit(timeout: gracePeriod) { return ended }
        signal(SIGKILL)
        return waitForExit()
    }

    /// Like ``terminate(gracePeriod:)``, on a thread of its own.
    @discardableResult
    public func terminate(gracePeriod: Duration) async -> Termination {
        await Self.nonThrowingOnOwnThread { [self] in terminate(gracePeriod: gracePeriod) }
    }

    /// SIGKILL, and the wait.
    @discardableResult
    public func kill9() -> Termination {
        signal(SIGKILL)
        return waitForExit()
    }

    /// Reaps the child if it has exited (never blocks) and returns how it ended.
    private func reap() -> Termination? {
        termination.withLock { termination in
            if let termination { return termination }
            var status: Int32 = 0
            let reaped = waitpid(processIdentifier, &status, WNOHANG)
            if reaped == processIdentifier {
                // WIFEXITED/WEXITSTATUS/WTERMSIG are macros Swift does not import.
                let signal = status & 0x7f
                termination = signal == 0 ? .exited((status >> 8) & 0xff) : .signalled(signal)
            } else if reaped < 0, errno == ECHILD {
                termination = .exited(-1)
            }
            return termination
        }
    }

    /// Someone else reaped the child (nothing in the tests should): it is gone, how is unknown.
    private func lost() -> Termination {
        termination.withLock { termination in
            if termination == nil { termination = .exited(-1) }
            return termination!
        }
    }

    // glibc's GNU extensions (2.34, 2.29) that Swift's Glibc module does not import.
    private static let addCloseFrom = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np").map {
        unsafeBitCast($0, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }
    private static let addChdir = dlsym(nil, "posix_spawn_file_actions_addchdir_np").map {
        unsafeBitCast($0, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32).self)
    }

    /// The module's ``onOwnThread(_:)`` for a body that cannot throw.
    private static func nonThrowingOnOwnThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: body()) }.start()
        }
    }

    private static func sleep(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        var time = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&time, &remaining) != 0, errno == EINTR { time = remaining }
    }
}

extension ChildProcess {
    /// What a program that ran to its end left: how it ended and what it wrote.
    public struct Completed: Sendable {
        public var termination: Termination
        public var standardOutput: String
        /// Empty when standard error went with standard output.
        public var standardError: String

        public var status: Int32 { termination.status }
    }

    /// Runs a program to its end, its output in temporary files (no pipe to fill while the other is read).
    /// Blocking: async callers use ``run(_:_:environment:directory:standardInput:mergingStandardError:)``.
    public static func runBlocking(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                                   directory: String? = nil, standardInput: String? = nil,
                                   mergingStandardError: Bool = false) throws -> Completed {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("child-\(UUID().uuidString)").path
        let (inputPath, outputPath, errorPath) = (base + ".in", base + ".out", base + ".err")
        defer { for path in [inputPath, outputPath, errorPath] { unlink(path) } }
        if let standardInput { try standardInput.write(toFile: inputPath, atomically: false, encoding: .utf8) }
        let child = try ChildProcess(
            executable, arguments, environment: environment, directory: directory,
            standardInput: standardInput == nil ? .null : .file(inputPath), standardOutput: .file(outputPath),
            standardError: mergingStandardError ? .standardOutput : .file(errorPath))
        let termination = child.waitForExit()
        func text(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        return Completed(termination: termination, standardOutput: text(outputPath),
                         standardError: mergingStandardError ? "" : text(errorPath))
    }

    /// Like ``runBlocking(_:_:environment:directory:standardInput:mergingStandardError:)``, on a thread of its own.
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                           directory: String? = nil, standardInput: String? = nil,
                           mergingStandardError: Bool = false) async throws -> Completed {
        try await onOwnThread {
            try runBlocking(executable, arguments, environment: environment, directory: directory,
                            standardInput: standardInput, mergingStandardError: mergingStandardError)
        }
    }
}
