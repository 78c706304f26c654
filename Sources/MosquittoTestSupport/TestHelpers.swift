import Foundation
import Synchronization

/// Polls `condition` until it holds or `timeout` passed; returns whether it held.
public func eventually(timeout: Duration, every interval: Duration = .milliseconds(50),
                       _ condition: () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return await condition()
}

/// Runs blocking work (spawning a process and waiting for it, polling a port, sleeping) on a thread of its
/// own and awaits its result.
///
/// Swift's cooperative pool has one thread per core, two on a small gateway, and every test in the run
/// shares it with the servers under test. Blocking work on it starves them all: a parallel run once held
/// the pool for 11 s while brokers started, and an HTTP endpoint under test missed its 5 s answer.
public func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

/// A value shared with tasks and threads.
public final class Shared<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    public init(_ value: Value) { mutex = Mutex(value) }

    public var value: Value { mutex.withLock { $0 } }

    @discardableResult
    public func update<Result: Sendable>(_ body: (inout Value) -> Result) -> Result { mutex.withLock { body(&$0) } }
}

/// The project's own executables as `swift build --build-tests` left them (debug), for tests that run them
/// as child processes.
public enum BuiltExecutable {
    /// The package root, found from this file's place in `Sources/MosquittoTestSupport`.
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// `.build/debug/<name>` (or the triple-named debug directory); `environment` (e.g. `DATAPATH_BRIDGE`)
    /// names another build.
    public static func path(_ name: String, overriddenBy environment: String? = nil) throws -> String {
        if let environment, let path = ProcessInfo.processInfo.environment[environment] { return path }
        let candidates = [".build/debug", ".build/x86_64-unknown-linux-gnu/debug", ".build/aarch64-unknown-linux-gnu/debug"]
            .map { root.appendingPathComponent($0).appendingPathComponent(name).path }
        guard let path = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw TestBroker.Failure(description: "\(name) is not built under \(root.path)/.build (run swift build --build-tests)")
        }
        return path
    }
}
