import CMosquitto
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The second reference (`--threaded-loop`): the uplink relay on libmosquitto's own threaded loop
/// (`mosquitto_loop_start`, one network thread per client) instead of the project's event loop. What a client
/// of libmosquitto pays at least, with the library's own wake-ups, locks and socketpair, so the benchmark can
/// tell what the project's loop costs from what libmosquitto costs.
///
/// Zero work, like the other mode: `on_message` of the source client publishes the same bytes with the same QoS
/// to `<prefix>/<topic>` on the target client (`mosquitto_publish_v5` is thread-safe in threaded mode); acks
/// are libmosquitto's. No back pressure: libmosquitto queues what the target cannot take yet.
enum ThreadedRelay {
    /// One libmosquitto client on its own network thread.
    ///
    /// SAFETY: the handle is used by its network thread and through libmosquitto's thread-safe calls
    /// (`publish`, `subscribe`, `disconnect`, `loop_stop`); the callbacks read only immutable fields and atomics.
    final class Client: @unchecked Sendable {
        let name: String
        let handle: OpaquePointer
        /// The other client, which republishes what this one reads; nil for the target.
        let forwardTo: Client?
        let prefix: String
        let qos: Int32
        private let connected = Mutex(false)
        private let subscribed = Mutex(false)

        init(name: String, host: String, port: Int, prefix: String, qos: Int32, forwardTo: Client? = nil) throws {
            self.name = name
            self.forwardTo = forwardTo
            self.prefix = prefix
            self.qos = qos
            guard let handle = mosquitto_new(name, true, nil) else { throw RelayFailure("\(name): mosquitto_new failed") }
            self.handle = handle
            // SAFETY: `self` outlives the handle: the relay runs until the process exits, and `stop()` destroys it.
            mosquitto_user_data_set(handle, Unmanaged.passUnretained(self).toOpaque())
            mosquitto_int_option(handle, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5)
            mosquitto_int_option(handle, MOSQ_OPT_TCP_NODELAY, 1)
            mosquitto_connect_v5_callback_set(handle) { _, object, code, _, _ in
                guard let object, code == 0 else { return }
                Unmanaged<Client>.fromOpaque(object).takeUnretainedValue().connected.withLock { $0 = true }
            }
            mosquitto_subscribe_v5_callback_set(handle) { _, object, _, _, _, _ in
                guard let object else { return }
                Unmanaged<Client>.fromOpaque(object).takeUnretainedValue().subscribed.withLock { $0 = true }
            }
            mosquitto_message_v5_callback_set(handle) { _, object, message, _ in
                guard let object, let message else { return }
                Unmanaged<Client>.fromOpaque(object).takeUnretainedValue().relay(message)
            }
            let rc = mosquitto_connect_bind_v5(handle, host, Int32(port), 60, nil, nil)
            guard rc == MOSQ_ERR_SUCCESS.rawValue else {
                throw RelayFailure("\(name): cannot connect to \(host):\(port): \(String(cString: mosquitto_strerror(rc)))")
            }
            let started = mosquitto_loop_start(handle)
            guard started == MOSQ_ERR_SUCCESS.rawValue else {
                throw RelayFailure("\(name): mosquitto_loop_start: \(String(cString: mosquitto_strerror(started)))")
            }
            try wait("CONNACK") { connected.withLock { $0 } }
        }

        private func relay(_ message: UnsafePointer<mosquitto_message>) {
            guard let target = forwardTo, let topic = message.pointee.topic else { return }
            let republished = prefix + "/" + String(cString: topic)
            _ = mosquitto_publish_v5(target.handle, nil, republished, message.pointee.payloadlen, message.pointee.payload, qos,
                                     false, nil)
        }

        func subscribe(_ filter: String) throws {
            let rc = mosquitto_subscribe_v5(handle, nil, filter, qos, Int32(MQTT_SUB_OPT_NO_LOCAL.rawValue), nil)
            guard rc == MOSQ_ERR_SUCCESS.rawValue else {
                throw RelayFailure("\(name): subscribe \(filter): \(String(cString: mosquitto_strerror(rc)))")
            }
            try wait("SUBACK") { subscribed.withLock { $0 } }
        }

        func stop() {
            mosquitto_disconnect(handle)
            mosquitto_loop_stop(handle, false)
            mosquitto_destroy(handle)
        }

        private func wait(_ what: String, until condition: () -> Bool) throws {
            for _ in 0..<10_000 {
                if condition() { return }
                usleep(1_000)
            }
            throw RelayFailure("\(name): no \(what) within 10 s")
        }
    }

    struct RelayFailure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// Relays `filter` from the source broker to `<prefix>/...` on the target broker until SIGTERM or SIGINT.
    static func run(host: String, sourcePort: Int, targetPort: Int, filter: String, prefix: String, qos: Int32) throws -> (Client, Client) {
        mosquitto_lib_init()
        let target = try Client(name: "mqtt-relay-threaded-target", host: host, port: targetPort, prefix: prefix, qos: qos)
        let source = try Client(name: "mqtt-relay-threaded-source", host: host, port: sourcePort, prefix: prefix, qos: qos,
                                forwardTo: target)
        try source.subscribe(filter)
        return (source, target)
    }
}
