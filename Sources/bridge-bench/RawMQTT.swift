import CMosquitto
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

private let libraryInitialized: Bool = {
    mosquitto_lib_init()
    return true
}()

/// A bare libmosquitto connection for the datapath benchmark's load: the devices' publishes and the
/// Ditto-side receiver. Not the project's client on purpose: the load must cost this process as little CPU
/// as possible (it shares the machine with the subject), and the senders need many QoS 1 publishes in flight
/// in exactly the order they were made, which a synchronous `mosquitto_publish` on one thread gives.
///
/// Two modes: `startNetworkThread()` (libmosquitto's own thread; callbacks run there) for the receiver, or
/// `service()` called by the one thread that owns the connection (publishes then go straight to the socket,
/// without waking a network thread) for the senders.
///
/// SAFETY: the handle is used either only by its network thread plus libmosquitto's thread-safe calls
/// (threaded mode), or by one thread at a time (the sender thread of one phase, then the next); the callbacks
/// touch only atomics and the `onMessage` closure, which is Sendable. `self` outlives the handle: `close()`
/// destroys it, and deinit calls `close()`.
final class RawConnection: @unchecked Sendable {
    let name: String
    private let handle: OpaquePointer
    private let onMessage: (@Sendable (UnsafePointer<mosquitto_message>) -> Void)?
    private let threaded = Atomic<Bool>(false)
    private let closed = Atomic<Bool>(false)
    let connected = Atomic<Bool>(false)
    let subscribed = Atomic<Int>(0)
    /// Publishes the broker acknowledged (QoS 1), or written (QoS 0).
    let acknowledged = Atomic<Int>(0)

    init(port: Int, clientID: String, onMessage: (@Sendable (UnsafePointer<mosquitto_message>) -> Void)? = nil) throws {
        _ = libraryInitialized
        name = clientID
        self.onMessage = onMessage
        guard let handle = mosquitto_new(clientID, true, nil) else { throw BenchFailure("mosquitto_new failed for \(clientID)") }
        self.handle = handle
        mosquitto_user_data_set(handle, Unmanaged.passUnretained(self).toOpaque())
        mosquitto_int_option(handle, MOSQ_OPT_TCP_NODELAY, 1)
        // No client-side limit: the benchmark's window bounds what is outstanding.
        mosquitto_max_inflight_messages_set(handle, 0)
        mosquitto_connect_callback_set(handle) { _, object, code in
            guard let object, code == 0 else { return }
            Unmanaged<RawConnection>.fromOpaque(object).takeUnretainedValue().connected.store(true, ordering: .releasing)
        }
        mosquitto_disconnect_callback_set(handle) { _, object, _ in
            guard let object else { return }
            Unmanaged<RawConnection>.fromOpaque(object).takeUnretainedValue().connected.store(false, ordering: .releasing)
        }
        mosquitto_publish_callback_set(handle) { _, object, _ in
            guard let object else { return }
            Unmanaged<RawConnection>.fromOpaque(object).takeUnretainedValue().acknowledged.add(1, ordering: .relaxed)
        }
        mosquitto_subscribe_callback_set(handle) { _, object, _, _, _ in
            guard let object else { return }
            Unmanaged<RawConnection>.fromOpaque(object).takeUnretainedValue().subscribed.add(1, ordering: .releasing)
        }
        mosquitto_message_callback_set(handle) { _, object, message in
            guard let object, let message else { return }
            Unmanaged<RawConnection>.fromOpaque(object).takeUnretainedValue().onMessage?(message)
        }
        let rc = mosquitto_connect(handle, "127.0.0.1", Int32(port), 60)
        guard rc == MOSQ_ERR_SUCCESS.rawValue else {
            mosquitto_destroy(handle)
            throw BenchFailure("\(clientID): cannot connect to 127.0.0.1:\(port): \(String(cString: mosquitto_strerror(rc)))")
        }
    }

    deinit { close() }

    /// Threaded mode: starts libmosquitto's network thread and waits for CONNACK.
    func startNetworkThread() throws {
        threaded.store(true, ordering: .relaxed)
        let rc = mosquitto_loop_start(handle)
        guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw BenchFailure("\(name): mosquitto_loop_start: \(String(cString: mosquitto_strerror(rc)))") }
        try wait("CONNACK") { connected.load(ordering: .acquiring) }
    }

    /// Owner-thread mode: runs the network loop until CONNACK.
    func serviceUntilConnected() throws {
        try wait("CONNACK") {
            try service(timeoutMilliseconds: 5)
            return connected.load(ordering: .acquiring)
        }
    }

    /// Owner-thread mode: reads what arrived (acknowledgements), writes what is pending, sends keepalives.
    func service(timeoutMilliseconds: Int32 = 0) throws {
        let rc = mosquitto_loop(handle, timeoutMilliseconds, 1)
        guard rc == MOSQ_ERR_SUCCESS.rawValue else {
            throw BenchFailure("\(name): connection lost: \(String(cString: mosquitto_strerror(rc)))")
        }
    }

    /// Threaded mode: subscribes and waits for SUBACK.
    func subscribe(_ filter: String, qos: Int32) throws {
        let before = subscribed.load(ordering: .acquiring)
        let rc = mosquitto_subscribe(handle, nil, filter, qos)
        guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw BenchFailure("\(name): subscribe: \(String(cString: mosquitto_strerror(rc)))") }
        try wait("SUBACK") { subscribed.load(ordering: .acquiring) > before }
    }

    /// Queues the publish (owner-thread mode: writes it to the socket). Returns false when libmosquitto refused.
    func publish(topic: String, payload: [UInt8], qos: Int32) throws {
        let rc = payload.withUnsafeBytes { bytes in
            mosquitto_publish(handle, nil, topic, Int32(bytes.count), bytes.baseAddress, qos, false)
        }
        guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw BenchFailure("\(name): publish: \(String(cString: mosquitto_strerror(rc)))") }
    }

    func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        mosquitto_disconnect(handle)
        if threaded.load(ordering: .relaxed) {
            mosquitto_loop_stop(handle, false)
        } else {
            _ = mosquitto_loop(handle, 0, 1)
        }
        mosquitto_destroy(handle)
    }

    private func wait(_ what: String, until condition: () throws -> Bool) throws {
        let deadline = monotonicNanoseconds() + 10_000_000_000
        while try !condition() {
            guard monotonicNanoseconds() < deadline else { throw BenchFailure("\(name): no \(what) within 10 s") }
            usleep(1_000)
        }
    }
}

/// Sleeps the calling thread (the sender's own thread, never a Swift concurrency thread).
func sleepNanoseconds(_ nanoseconds: Int64) {
    guard nanoseconds > 0 else { return }
    var request = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
    nanosleep(&request, nil)
}

/// Runs `body` on a thread of its own and returns its result: the senders pace and spin there without
/// blocking the Swift concurrency pool.
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            continuation.resume(with: Result { try body() })
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
}
