import CMosquitto
import Foundation
import Glibc
import HeapModule
import Synchronization

/// One thread that drives any number of libmosquitto clients: `poll` on their sockets, `mosquitto_loop_read`,
/// `_write` and `_misc`, timers, and jobs handed in from other threads.
///
/// Why one thread of our own instead of `mosquitto_loop_start` per client: a message read by one client can be
/// mapped and written to another client's socket on the same thread, in the same call stack, with no thread
/// hop, no wake-up and no queue in between; and the loop decides whether to read a socket at all, which is how
/// back pressure reaches a broker (TCP flow control, then the broker's session queue).
///
/// Everything a client does with its libmosquitto handle happens on this thread. The handles are nevertheless
/// set to libmosquitto's "external threading" mode (see `ClientCore.init`): a publish queues its packet and the
/// loop writes it after the read or job that made it, so one read's publishes and PUBACKs leave in one write.
public final class MQTTEventLoop: Sendable {
    public typealias Job = @Sendable () -> Void

    private struct Shared {
        var jobs: [Job] = []
        var wakePending = false
        var stopRequested = false
        var exited = false
        /// After the thread ended: a caller of `execute` is running the jobs (see `drainAfterExit`).
        var draining = false
        var exitWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let shared = Mutex(Shared())
    /// A pipe whose read end the loop polls, so `execute` from another thread interrupts `poll`.
    private let wakeFD: Int32
    private let wakeWriteFD: Int32
    private let threadID = Atomic<UInt>(0)
    /// Monotonic nanoseconds of the loop's last turn, for liveness checks.
    private let heartbeat = Atomic<Int64>(0)
    let confined: Confined
    public let name: String

    /// Loop-thread state.
    ///
    /// SAFETY: only touched on the loop thread (the thread that runs `run()`, or after it ended the one thread
    /// that drains late jobs), checked by `assertInLoop`.
    final class Confined: @unchecked Sendable {
        /// In registration order; an array because every turn walks it (a dictionary's iteration costs more).
        var clients: [ClientCore] = []
        var timers = Heap<TimerEntry>()
        var timerWork: [UInt64: () -> Void] = [:]
        var nextTimerID: UInt64 = 0
        var pollFDs: [pollfd] = []
        var pollClients: [ClientCore] = []
        /// Sockets that are not MQTT clients' (the WebSocket client's), polled after the clients.
        var sockets: [any LoopSocket] = []
        var pollSockets: [any LoopSocket] = []
    }

    struct TimerEntry: Comparable {
        var deadline: ContinuousClock.Instant
        var id: UInt64
        static func < (lhs: TimerEntry, rhs: TimerEntry) -> Bool {
            lhs.deadline == rhs.deadline ? lhs.id < rhs.id : lhs.deadline < rhs.deadline
        }
    }

    /// A timer that can be cancelled.
    public struct TimerID: Sendable, Hashable {
        let raw: UInt64
    }

    /// Starts the loop's thread.
    public init(name: String = "mqtt loop") {
        self.name = name
        var fds: [Int32] = [-1, -1]
        let rc = pipe(&fds)
        precondition(rc == 0, "pipe failed: errno \(errno)")
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        wakeFD = fds[0]
        wakeWriteFD = fds[1]
        confined = Confined()
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.stackSize = 1 << 20
        thread.start()
    }

    deinit {
        close(wakeFD)
        close(wakeWriteFD)
    }

    /// Seconds since the loop last turned (it turns at least once a second while healthy).
    public var secondsSinceLastTurn: Double {
        let last = heartbeat.load(ordering: .relaxed)
        guard last > 0 else { return 0 }
        return Double(Self.monotonicNanoseconds() - last) / 1e9
    }

    /// The monotonic clock as plain nanoseconds: cheaper to read and subtract per message than `ContinuousClock`.
    @inline(__always)
    public static func monotonicNanoseconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Int64(spec.tv_sec) * 1_000_000_000 + Int64(spec.tv_nsec)
    }

    /// Whether the caller runs on the loop's thread.
    public var inEventLoop: Bool {
        pthread_equal(pthread_self(), pthread_t(threadID.load(ordering: .acquiring))) != 0
    }

    @inline(__always)
    func assertInLoop(_ function: StaticString = #function) {
        assert(inEventLoop, "\(function) must run on the event loop's thread")
    }

    /// Traps, in release builds too, unless the caller runs on the loop's thread (``LoopBound``, loop views).
    @inline(__always)
    public func preconditionInEventLoop(_ function: StaticString = #function) {
        precondition(inEventLoop, "\(function) must run on the event loop's thread")
    }

    /// Runs `job` on the loop's thread, after the jobs handed in before it. Jobs handed in after ``shutdown()``
    /// still run before the thread ends; jobs handed in after it ended run on the caller's thread, one caller
    /// at a time, so that a second `disconnect()` or a late publish gets its answer instead of waiting forever.
    public func execute(_ job: @escaping Job) {
        enum Next { case nothing, wake, drain }
        let next = shared.withLock { shared -> Next in
            shared.jobs.append(job)
            if shared.exited {
                guard !shared.draining else { return .nothing }
                shared.draining = true
                threadID.store(UInt(pthread_self()), ordering: .releasing)
                return .drain
            }
            defer { shared.wakePending = true }
            return shared.wakePending ? .nothing : .wake
        }
        switch next {
        case .nothing: break
        case .wake: signalWake()
        case .drain: drainAfterExit()
        }
    }

    /// Runs queued jobs until none is left, as the loop's thread would have. Only the thread that set
    /// `draining` calls this; jobs that hand in more jobs (from this or another thread) are run here too.
    private func drainAfterExit() {
        while true {
            let jobs = shared.withLock { shared -> [Job] in
                defer { shared.jobs.removeAll() }
                if shared.jobs.isEmpty {
                    shared.draining = false
                    threadID.store(0, ordering: .releasing)
                }
                return shared.jobs
            }
            if jobs.isEmpty { return }
            for job in jobs { job() }
        }
    }

    /// Runs `body` on the loop's thread and returns its result.
    public func submit<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        if inEventLoop { return body() }
        return await withCheckedContinuation { continuation in
            execute { continuation.resume(returning: body()) }
        }
    }

    /// Calls `work` on the loop's thread at `deadline` (loop thread only).
    @discardableResult
    public func schedule(at deadline: ContinuousClock.Instant, _ work: @escaping () -> Void) -> TimerID {
        assertInLoop()
        confined.nextTimerID += 1
        let id = confined.nextTimerID
        confined.timers.insert(TimerEntry(deadline: deadline, id: id))
        confined.timerWork[id] = work
        return TimerID(raw: id)
    }

    /// Loop thread only.
    public func cancel(_ timer: TimerID) {
        assertInLoop()
        confined.timerWork[timer.raw] = nil
    }

    /// Ends the thread once the jobs handed in so far have run; returns when it has ended. Clients still
    /// registered are closed first. Idempotent.
    public func shutdown() async {
        if inEventLoop {
            shared.withLock { $0.stopRequested = true }
            // The turn ends in `poll`; the wake pipe ends that at once.
            signalWake()
            return
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let exited = shared.withLock { shared -> Bool in
                shared.stopRequested = true
                if shared.exited { return true }
                shared.exitWaiters.append(continuation)
                return false
            }
            if exited { continuation.resume() } else { signalWake() }
        }
    }

    /// Asks the thread to end without waiting (used when the last owner goes away).
    func requestStop() {
        shared.withLock { $0.stopRequested = true }
        signalWake()
    }

    func register(_ client: ClientCore) {
        assertInLoop()
        if !confined.clients.contains(where: { $0 === client }) { confined.clients.append(client) }
    }

    func unregister(_ client: ClientCore) {
        assertInLoop()
        confined.clients.removeAll { $0 === client }
    }

    /// Polls `socket` from the next turn on, until ``unregister(_:)-(any LoopSocket)`` (loop thread only).
    public func register(_ socket: any LoopSocket) {
        preconditionInEventLoop()
        if !confined.sockets.contains(where: { $0 === socket }) { confined.sockets.append(socket) }
    }

    /// Loop thread only.
    public func unregister(_ socket: any LoopSocket) {
        preconditionInEventLoop()
        confined.sockets.removeAll { $0 === socket }
    }

    private func signalWake() {
        var one: UInt8 = 1
        _ = write(wakeWriteFD, &one, 1)
    }

    // MARK: the thread

    private func run() {
        threadID.store(UInt(pthread_self()), ordering: .releasing)
        // Visible in `top -H`, /proc and core dumps (Linux keeps 15 characters).
        let comm = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
        if comm >= 0 {
            let bytes = Array(name.utf8.prefix(15))
            _ = bytes.withUnsafeBytes { write(comm, $0.baseAddress, $0.count) }
            close(comm)
        }
        var stopping = false
        while true {
            let (jobs, stop) = shared.withLock { shared -> ([Job], Bool) in
                shared.wakePending = false
                // Most turns have no jobs: hand over nothing rather than a copy of the empty buffer.
                if shared.jobs.isEmpty { return ([], shared.stopRequested) }
                defer { shared.jobs = [] }
                return (shared.jobs, shared.stopRequested)
            }
            for job in jobs { job() }
            if stop && !stopping {
                stopping = true
                for client in confined.clients { client.closeNow() }
                for socket in confined.sockets { socket.closeNow() }
            }
            if stopping, jobs.isEmpty, shared.withLock({ $0.jobs.isEmpty }) { break }
            // One reading of the clock serves the turn's timers, keepalive checks and poll timeout: what the turn
            // takes makes the timeout that much longer, which the timeout's rounding up to a millisecond covers.
            let now = ContinuousClock.now
            heartbeat.store(Self.monotonicNanoseconds(), ordering: .relaxed)
            runTimers(now: now)
            for client in confined.clients { client.loopMisc(now: now) }
            pollOnce(timeout: pollTimeout(now: now))
        }
        for client in confined.clients { client.closeNow() }
        confined.clients.removeAll()
        for socket in confined.sockets { socket.closeNow() }
        confined.sockets.removeAll()
        // Jobs that came in since the last turn are drained here; later ones by their callers.
        let (waiters, drain) = shared.withLock { shared -> ([CheckedContinuation<Void, Never>], Bool) in
            shared.exited = true
            shared.draining = !shared.jobs.isEmpty
            // Under the lock: a caller that drains after this sets its own thread.
            if !shared.draining { threadID.store(0, ordering: .releasing) }
            defer { shared.exitWaiters.removeAll() }
            return (shared.exitWaiters, shared.draining)
        }
        if drain { drainAfterExit() }
        for waiter in waiters { waiter.resume() }
    }

    private func runTimers(now: ContinuousClock.Instant) {
        while let first = confined.timers.min, first.deadline <= now {
            confined.timers.removeMin()
            if let work = confined.timerWork.removeValue(forKey: first.id) { work() }
        }
    }

    /// Milliseconds until the next timer or keepalive check, at most one second. Jobs and stop requests handed in
    /// since the turn began need no check here: each wrote to the wake pipe (`wakePending` was cleared when the turn
    /// took its jobs), so `poll` returns at once.
    private func pollTimeout(now: ContinuousClock.Instant) -> Int32 {
        var next = now + .seconds(1)
        while let first = confined.timers.min, confined.timerWork[first.id] == nil {
            confined.timers.removeMin()
        }
        if let first = confined.timers.min { next = min(next, first.deadline) }
        for client in confined.clients { next = min(next, client.nextMiscDeadline) }
        let left = next - now
        if left <= .zero { return 0 }
        let milliseconds = left.components.seconds * 1_000 + left.components.attoseconds / 1_000_000_000_000_000
        return Int32(clamping: milliseconds + 1)
    }

    private func pollOnce(timeout: Int32) {
        confined.pollFDs.removeAll(keepingCapacity: true)
        confined.pollClients.removeAll(keepingCapacity: true)
        confined.pollFDs.append(pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0))
        // Packets queued by jobs, timers and other clients' callbacks (external threading mode) go out now, not
        // one poll round later, in the same pass that asks each client what to poll for. A write runs callbacks
        // that may queue packets on a client already asked; then every client is asked again.
        var wrote = false
        for client in confined.clients {
            guard let events = client.writeQueuedThenPollEvents(wrote: &wrote) else { continue }
            confined.pollFDs.append(pollfd(fd: events.fd, events: events.events, revents: 0))
            confined.pollClients.append(client)
        }
        if wrote {
            confined.pollFDs.removeSubrange(1...)
            confined.pollClients.removeAll(keepingCapacity: true)
            for client in confined.clients {
                guard let events = client.pollEvents() else { continue }
                confined.pollFDs.append(pollfd(fd: events.fd, events: events.events, revents: 0))
                confined.pollClients.append(client)
            }
        }
        // Other sockets come after the clients, whose writes may have queued frames on them.
        confined.pollSockets.removeAll(keepingCapacity: true)
        for socket in confined.sockets {
            guard let events = socket.writeQueuedThenPollEvents() else { continue }
            confined.pollFDs.append(pollfd(fd: events.fd, events: events.events, revents: 0))
            confined.pollSockets.append(socket)
        }
        let count = confined.pollFDs.withUnsafeMutableBufferPointer { fds in
            poll(fds.baseAddress, nfds_t(fds.count), timeout)
        }
        guard count > 0 else { return }
        if confined.pollFDs[0].revents != 0 {
            var buffer = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
            while withUnsafeMutableBytes(of: &buffer, { read(wakeFD, $0.baseAddress, $0.count) }) > 0 {}
        }
        for index in confined.pollClients.indices {
            let revents = confined.pollFDs[index + 1].revents
            if revents != 0 { confined.pollClients[index].handle(revents: revents) }
        }
        let socketsStart = 1 + confined.pollClients.count
        for index in confined.pollSockets.indices {
            let revents = confined.pollFDs[socketsStart + index].revents
            if revents != 0 { confined.pollSockets[index].handle(revents: revents) }
        }
        // What one client's read made another publish (a device message mapped for Ditto) leaves in this turn.
        for client in confined.pollClients { client.flushWrites() }
        for socket in confined.sockets { socket.flushWrites() }
    }
}

/// A socket the loop polls besides its MQTT clients' (the WebSocket client's), with the same turn as theirs: it
/// writes what is queued before the loop polls, reads when `poll` says so, and writes what a turn's reads queued on
/// it before the loop polls again. Every call comes on the loop's thread.
public protocol LoopSocket: AnyObject {
    /// Writes what is queued as far as the socket takes it, then says what to poll for; nil: nothing to poll now.
    func writeQueuedThenPollEvents() -> (fd: Int32, events: Int16)?
    /// `poll` reported `revents` for the socket.
    func handle(revents: Int16)
    /// After a turn's reads: what they queued on this socket leaves now.
    func flushWrites()
    /// The loop is ending: close at once.
    func closeNow()
}
