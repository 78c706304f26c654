import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Every process the datapath benchmark started and has not stopped yet (subjects and brokers), so that an
/// error, SIGINT or SIGTERM ends them all instead of leaving brokers and bridges behind.
enum Children {
    static let pids = Mutex<Set<Int32>>([])

    static func register(_ pid: Int32) { _ = pids.withLock { $0.insert(pid) } }

    static func unregister(_ pid: Int32) { _ = pids.withLock { $0.remove(pid) } }

    /// SIGTERM to every registered process, SIGKILL to those still there 300 ms later.
    static func killAll() {
        let all = pids.withLock { $0 }
        for pid in all { kill(pid, SIGTERM) }
        usleep(300_000)
        for pid in all where kill(pid, 0) == 0 { kill(pid, SIGKILL) }
    }

    /// On SIGINT/SIGTERM: stop the children and exit 130. Keep the returned sources alive while running.
    static func installSignalHandlers() -> [any DispatchSourceSignal] {
        [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                say("\nbridge-bench: interrupted, stopping the brokers and subjects it started")
                killAll()
                exit(130)
            }
            source.resume()
            return source
        }
    }
}

/// A benchmark subject (the bridge or the relay) running as a real child process; its output goes to a file.
final class ChildProcess {
    let name: String
    let logFile: String
    private let process = Process()
    let pid: Int32

    init(name: String, executable: String, arguments: [String], logFile: String) throws {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw BenchFailure("\(executable) not found: build it first (`swift build -c release`, or run scripts/bench.sh)")
        }
        self.name = name
        self.logFile = logFile
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        _ = FileManager.default.createFile(atPath: logFile, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logFile))
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        pid = process.processIdentifier
        Children.register(pid)
    }

    deinit { stop() }

    var isRunning: Bool { process.isRunning }

    /// The last lines of the child's output, for error messages.
    func logTail(lines: Int = 15) -> String {
        let text = (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? ""
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    /// SIGTERM, then SIGKILL when it has not exited within 5 s. Idempotent.
    func stop() {
        defer { Children.unregister(pid) }
        guard process.isRunning else { return }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        if process.isRunning {
            say("bridge-bench: \(name) (pid \(pid)) ignored SIGTERM for 5 s; killing it")
            kill(pid, SIGKILL)
        }
        process.waitUntilExit()
    }
}

/// Readings from /proc for one process.
enum ProcFS {
    /// utime + stime of the whole process in microseconds, from its CPU-time clock (`clock_getcpuclockid`),
    /// which counts nanoseconds: at 1,000 messages per second a window holds a few dozen of `stat`'s clock
    /// ticks, too coarse to compare subjects. Nil when the process is gone.
    static func cpuMicroseconds(_ pid: Int32) -> Int64? {
        var clock = clockid_t()
        guard clock_getcpuclockid(pid, &clock) == 0 else { return nil }
        var spec = timespec()
        guard clock_gettime(clock, &spec) == 0 else { return nil }
        return Int64(spec.tv_sec) * 1_000_000 + Int64(spec.tv_nsec) / 1_000
    }

    /// A KiB line of /proc/PID/status: `VmHWM` (the peak resident set size), `RssAnon` (resident heap).
    static func statusKiB(_ field: String, _ pid: Int32) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            return Int(line.dropFirst(field.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
        }
        return nil
    }
}

struct BenchFailure: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) {
        self.description = description
    }
}

/// Monotonic nanoseconds, the clock the senders stamp into payloads and the receivers read.
@inline(__always)
func monotonicNanoseconds() -> Int64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Int64(spec.tv_sec) * 1_000_000_000 + Int64(spec.tv_nsec)
}

/// Runs a command and returns its trimmed output, or nil when it fails (git may be missing).
func commandOutput(_ executable: String, _ arguments: [String]) -> String? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    do { try process.run() } catch { return nil }
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { return nil }
    return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}
