import Foundation
import MosquittoTestSupport
import Testing

/// Issue 22, item 9: docs/OPERATIONS.md (`/ready`): after a reconnect without a session the side is ready again only when
/// the broker granted every restored SUBSCRIBE; a refused one keeps it not ready and is logged
/// (scripts/mutants.sh M02, M22).
@Suite("A refused restored subscription keeps /ready 503")
struct RestoredSubscriptionReadinessTests {
    #if arch(arm64)
    static let multiarch = "aarch64-linux-gnu"
    #else
    static let multiarch = "x86_64-linux-gnu"
    #endif

    @Test("the device broker comes back refusing the uplink filter (dynamic-security plugin): the bridge reconnects, /ready stays 503 naming the device side")
    func refusedRestoredSubscriptionKeepsNotReady() async throws {
        try await withWorld { world in
            #expect(try await world.get("/ready").status == 200)
            // The broker comes back without the bridge's session and with mosquitto's dynamic-security plugin
            // letting anonymous clients subscribe to the answer topics only: re-subscribing the uplink filter is
            // refused (SUBACK 0x87). (mosquitto's plain acl_file grants every SUBSCRIBE and filters delivery.)
            let directory = world.deviceBroker.directory
            let security = directory.appendingPathComponent("dynamic-security.json").path
            try #"""
                {"defaultACLAccess":{"publishClientSend":true,"publishClientReceive":true,"subscribe":false,"unsubscribe":true},
                 "clients":[],"groups":[{"groupname":"anonymous","roles":[{"rolename":"answers"}],"clients":[]}],
                 "anonymousGroup":"anonymous",
                 "roles":[{"rolename":"answers","acls":[{"acltype":"subscribePattern","topic":"devices/+/reply","priority":0,"allow":true}]}]}
                """#.write(toFile: security, atomically: true, encoding: .utf8)
            let conf = directory.appendingPathComponent("mosquitto.conf")
            let original = try String(contentsOf: conf, encoding: .utf8)
            let plugin = "/usr/lib/\(Self.multiarch)/mosquitto_dynamic_security.so"
            #expect(FileManager.default.fileExists(atPath: plugin), "mosquitto's dynamic-security plugin (Debian's mosquitto package)")
            try (original + "plugin \(plugin)\nplugin_opt_config_file \(security)\n").write(to: conf, atomically: true, encoding: .utf8)
            try await world.deviceBroker.restart()

            let refusalLogged = await eventually(timeout: .seconds(10), every: .milliseconds(100)) {
                world.bridge.logTail(lines: 200).contains("the broker refused a restored subscription")
            }
            #expect(refusalLogged, "the bridge did not log the refused subscription:\n\(world.bridge.logTail())")
            // Not ready now, and still not ready after a while (no later event may turn it 200).
            for _ in 0..<3 {
                try await Task.sleep(for: .seconds(1))
                let ready = try await world.get("/ready")
                #expect(ready.status == 503, "/ready answered \(ready.status) \(ready.body)")
                #expect(ready.body.contains("device broker"), "/ready's body: \(ready.body)")
                #expect(!ready.body.contains("ditto broker"), "/ready's body: \(ready.body)")
            }
        }
    }
}
