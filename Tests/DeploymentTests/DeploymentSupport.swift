import Foundation
import MosquittoTestSupport

/// The package root, found from this file's place in `Tests/DeploymentTests`.
enum Repository {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func file(_ relativePath: String) -> URL { root.appendingPathComponent(relativePath) }

    static func text(_ relativePath: String) throws -> String {
        try String(contentsOf: file(relativePath), encoding: .utf8)
    }
}

/// A command run to its end with its output (standard output and error together) kept for the failure message.
struct CommandResult: Sendable, CustomStringConvertible {
    let command: String
    let status: Int32
    let output: String

    var description: String { "`\(command)` exited \(status):\n\(output.suffix(4000))" }
}

enum Command {
    /// Runs `executable` with `arguments` on a thread of its own; `environment` nil inherits the test's.
    static func run(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil, directory: URL? = nil
    ) async throws -> CommandResult {
        try await onOwnThread { try runBlocking(executable, arguments, environment: environment, directory: directory) }
    }

    /// Like ``run(_:_:environment:directory:)``, and throws with the output when the status is not 0.
    @discardableResult
    static func check(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil, directory: URL? = nil
    ) async throws -> CommandResult {
        let result = try await run(executable, arguments, environment: environment, directory: directory)
        guard result.status == 0 else { throw TestFailure(result.description) }
        return result
    }

    static func runBlocking(
        _ executable: String, _ arguments: [String], environment: [String: String]?, directory: URL?
    ) throws -> CommandResult {
        let resolved = executable.hasPrefix("/") ? executable : try which(executable)
        let run = try ChildProcess.runBlocking(
            resolved, arguments, environment: environment, directory: directory?.path, mergingStandardError: true)
        return CommandResult(
            command: ([executable] + arguments).joined(separator: " "), status: run.status, output: run.standardOutput)
    }

    /// The program's path on `PATH` (plus the sbin directories root has), or a failure naming what to install.
    static func which(_ name: String) throws -> String {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw TestFailure("\(name) is not installed (scripts/setup.sh installs it)")
    }
}

/// A long-running child process (the bridge in the chroot), its output in a file.
final class ChrootProcess: Sendable {
    let logPath: String
    private let process: ChildProcess

    init(_ executable: String, _ arguments: [String], environment: [String: String], logPath: String) throws {
        self.logPath = logPath
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process = try ChildProcess(executable, arguments, environment: environment,
                                   standardOutput: .file(logPath), standardError: .standardOutput)
    }

    var isRunning: Bool { process.isRunning }
    var processIdentifier: Int32 { process.processIdentifier }

    func signal(_ signal: Int32) {
        process.signal(signal)
    }

    /// Waits up to `timeout` for the exit; nil if it is still running.
    func waitForExit(timeout: Duration) async -> Int32? {
        await process.waitForExit(timeout: timeout)?.status
    }

    /// SIGKILL if still running, and the wait.
    func kill9() {
        process.kill9()
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
}
