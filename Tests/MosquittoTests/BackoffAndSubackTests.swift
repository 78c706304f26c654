import Foundation
import MQTT
import Mosquitto
import MosquittoTestSupport
import Testing

/// A refused SUBSCRIBE is a failure in both protocol versions (scripts/mutants.sh M01, which survived its first run).
@Suite("Refused SUBACK codes on a real broker")
struct BackoffAndSubackTests {
    /// mosquitto's dynamic-security plugin refuses SUBSCRIBE by ACL (its plain acl_file grants every SUBSCRIBE).
    static func refusingBroker() async throws -> TestBroker {
        let broker = try await TestBroker.start()
        let security = broker.directory.appendingPathComponent("dynamic-security.json").path
        try #"""
            {"defaultACLAccess":{"publishClientSend":true,"publishClientReceive":true,"subscribe":false,"unsubscribe":true},
             "clients":[],"groups":[{"groupname":"anonymous","roles":[{"rolename":"open"}],"clients":[]}],
             "anonymousGroup":"anonymous",
             "roles":[{"rolename":"open","acls":[{"acltype":"subscribePattern","topic":"open/#","priority":0,"allow":true}]}]}
            """#.write(toFile: security, atomically: true, encoding: .utf8)
        #if arch(arm64)
        let plugin = "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so"
        #else
        let plugin = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
        #endif
        let conf = broker.directory.appendingPathComponent("mosquitto.conf")
        let original = try String(contentsOf: conf, encoding: .utf8)
        try (original + "plugin \(plugin)\nplugin_opt_config_file \(security)\n").write(to: conf, atomically: true, encoding: .utf8)
        try await broker.restart()
        return broker
    }

    @Test("a refused SUBSCRIBE is a failure in both versions: 0x80 (MQTT 3.1.1) and 0x87 (MQTT 5); a grant is not", arguments: [
        (MQTTVersion.v311, UInt8(0x80)), (MQTTVersion.v5, UInt8(0x87)),
    ])
    func refusedSubscriptionIsAFailure(_ version: MQTTVersion, _ refusal: UInt8) async throws {
        let broker = try await Self.refusingBroker()
        let client = try MosquittoClient(configuration: broker.clientConfiguration(version: version), logger: testLogger)
        try await client.connect()
        let codes = try await client.subscribe([Subscription(filter: "closed/x", qos: .atLeastOnce),
                                                Subscription(filter: "open/x", qos: .atLeastOnce)])
        #expect(codes.map(\.rawValue) == [refusal, 0x01])
        #expect(codes.map(\.isFailure) == [true, false])
        await client.disconnect()
    }
}

extension ResilienceTests {
    /// The backoff's `maximum` bounds the wait after the broker is back (scripts/mutants.sh M03, which survived its
    /// first run).
    @Test("after the broker was down a while, the client is back within about reconnect.maximum (500 ms) of its return")
    func reconnectWithinTheBackoffMaximum() async throws {
        let broker = try await TestBroker.start()
        let client = try MosquittoClient(configuration: broker.clientConfiguration(), logger: testLogger)
        try await client.connect()
        broker.kill9()
        // Several failed attempts: the delay has doubled up to its maximum (500 ms in clientConfiguration).
        try await Task.sleep(for: .seconds(2))
        #expect(!client.isConnected)
        try await broker.restart()
        let back = ContinuousClock.now
        let reconnected = await eventually(timeout: .seconds(8), every: .milliseconds(20)) { client.isConnected }
        let took = ContinuousClock.now - back
        #expect(reconnected, "not reconnected within 8 s of the broker's return")
        #expect(took < .seconds(3), "reconnected \(took) after the broker's return (backoff maximum 500 ms)")
        await client.disconnect()
    }
}
