import Foundation
import MosquittoTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The tests' child processes: started with a clean signal mask, reaped by whoever waits, never holding the
/// cooperative pool while they run.
@Suite("Child processes of the tests")
struct ChildProcessTests {
    /// Started where TestBroker starts brokers (a `Thread`, whose mask blocks SIGTERM), stopped from 20 tasks
    /// at once. With Foundation's `Process` each child kept that mask and ignored SIGTERM, and each
    /// `waitUntilExit()` held one of the pool's threads for as long as its child lived.
    @Test("20 children started on threads of their own all end at SIGTERM, stopped from 20 tasks at once")
    func twentyChildrenStopConcurrently() async throws {
        let children = try await onOwnThread {
            try (0..<20).map { _ in try ChildProcess("/bin/sleep", ["30"]) }
        }
        // Were a wait to block a pool thread, everything below would stall; this thread then ends it.
        Thread {
            Thread.sleep(forTimeInterval: 10)
            for child in children { child.signal(SIGKILL) }
        }.start()
        let began = ContinuousClock.now
        let waiting = Task {
            await withTaskGroup(of: ChildProcess.Termination.self) { group in
                for child in children { group.addTask { await child.waitForExit() } }
                return await group.reduce(into: []) { $0.append($1) }
            }
        }
        // 20 waits pending, and the pool still runs this.
        try await Task.sleep(for: .milliseconds(200))
        #expect(ContinuousClock.now - began < .seconds(5), "the waits held the cooperative pool")
        let stops = await withTaskGroup(of: ChildProcess.Termination.self) { group in
            for child in children { group.addTask { await child.terminate(gracePeriod: .seconds(20)) } }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let waited = await waiting.value
        #expect(stops.count == 20 && waited.count == 20)
        #expect((stops + waited).allSatisfy { $0 == .signalled(SIGTERM) }, "\(stops) \(waited)")
        #expect(children.allSatisfy { !$0.isRunning && $0.signal(SIGKILL) == false })
    }

    @Test("a child that ignores SIGTERM is killed after the grace period")
    func terminateEscalatesToSIGKILL() async throws {
        let ready = FileManager.default.temporaryDirectory.appendingPathComponent("trap-\(UUID().uuidString)").path
        defer { unlink(ready) }
        let stubborn = try ChildProcess("/bin/sh", ["-c", "trap '' TERM; touch \(ready); sleep 30"])
        #expect(await eventually(timeout: .seconds(10)) { FileManager.default.fileExists(atPath: ready) })
        let began = ContinuousClock.now
        let ending = await stubborn.terminate(gracePeriod: .milliseconds(300))
        #expect(ending == .signalled(SIGKILL))
        #expect(ContinuousClock.now - began >= .milliseconds(300))
    }

    @Test("a run gives back the exit status, standard output and error apart, and reads its standard input")
    func runCapturesOutput() async throws {
        let run = try await ChildProcess.run(
            "/bin/sh", ["-c", "read line; echo \"out: $line\"; echo err >&2; exit 3"], standardInput: "hello\n")
        #expect(run.termination == .exited(3))
        #expect(run.standardOutput == "out: hello\n")
        #expect(run.standardError == "err\n")
        let merged = try await ChildProcess.run("/bin/sh", ["-c", "echo a; echo b >&2"], mergingStandardError: true)
        #expect(merged.standardOutput == "a\nb\n" && merged.standardError == "")
    }

    @Test("a child gets only its standard descriptors, in the directory and environment it was given")
    func descriptorsDirectoryEnvironment() async throws {
        // An open descriptor without close-on-exec, as a client's socket might be.
        let open = Glibc.open("/dev/null", O_RDONLY)
        defer { close(open) }
        let run = try await ChildProcess.run(
            "/bin/sh", ["-c", "ls /proc/$$/fd; pwd; echo $CHILD_TEST"], environment: ["CHILD_TEST": "given"],
            directory: "/tmp")
        let lines = run.standardOutput.split(separator: "\n")
        #expect(Array(lines.dropLast(2)) == ["0", "1", "2"], "\(run.standardOutput)")
        #expect(lines.suffix(2) == ["/tmp", "given"], "\(run.standardOutput)")
    }
}
