import Foundation
import Testing

/// Issue 22, item 9: documented limits that no test held, through the real binary's `map` (the same mapping
/// `run` uses). Each fails when its rule is loosened (scripts/mutants.sh M06, M07).
@Suite("Documented limits, through map")
struct PromiseTests {
    static let config = """
        connections:
          device: { host: 127.0.0.1, port: 1883 }
          ditto: { host: 127.0.0.1, port: 1884 }
        defaults: { namespace: org.example }
        uplink:
          - name: alarm
            topic: "devices/{deviceId}/alarm/{subject}"
            thing-id: "{namespace}:{deviceId}"
            message: { subject: "{subject}" }
          - name: native
            topic: "edge/things/{deviceId}"
            thing-id: "{namespace}:{deviceId}"
            passthrough: {}
        """

    static func withConfig(_ body: (String) async throws -> Void) async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("promise-\(UUID().uuidString.prefix(8)).yaml").path
        try config.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        try await body(path)
    }

    static func nativeMessage(subject: String) -> String {
        #"{"topic":"org.example/pump-1/things/live/messages/\#(subject)","headers":{"correlation-id":"c-1","content-type":"application/json"},"path":"/outbox/messages/\#(subject)","value":{"a":1}}"#
    }

    @Test("a live message subject of 256 UTF-16 units passes; 257 are refused, from a topic and in pass-through")
    func subjectOver256IsRefused() async throws {
        try await Self.withConfig { path in
            let fits = String(repeating: "s", count: 256)
            let long = String(repeating: "s", count: 257)
            let mapped = try await BridgeExecutable.run(["map", "--config", path, "--topic", "devices/d1/alarm/\(fits)",
                                                         "--payload", #"{"a":1}"#])
            #expect(mapped.status == 0)
            #expect(mapped.output.contains("things/live/messages/\(fits)\""))
            let refused = try await BridgeExecutable.run(["map", "--config", path, "--topic", "devices/d1/alarm/\(long)",
                                                          "--payload", #"{"a":1}"#])
            #expect(refused.status == 1, "\(refused.output)")
            #expect(!refused.output.contains("things/live/messages/"))

            let native = try await BridgeExecutable.run(["map", "--config", path, "--topic", "edge/things/pump-1",
                                                         "--payload", Self.nativeMessage(subject: fits)])
            #expect(native.status == 0)
            #expect(native.output.contains("things/live/messages/\(fits)\""))
            let nativeLong = try await BridgeExecutable.run(["map", "--config", path, "--topic", "edge/things/pump-1",
                                                             "--payload", Self.nativeMessage(subject: long)])
            #expect(nativeLong.status == 1, "\(nativeLong.output)")
            #expect(!nativeLong.output.contains("things/live/messages/"))
        }
    }

    /// Ditto counts header sizes in Java chars (UTF-16 units): 3,000 × `é` is 3,000 units (6,000 UTF-8 bytes),
    /// under the 5,120 limit; 5,200 × `é` is over it.
    @Test("header size is counted in UTF-16 units: 3,000 × é crosses, 5,200 × é is refused as too large")
    func headerSizeInUTF16Units() async throws {
        try await Self.withConfig { path in
            let fits = String(repeating: "é", count: 3_000)
            let mapped = try await BridgeExecutable.run(["map", "--config", path, "--topic", "devices/d1/alarm/x",
                                                         "--payload", #"{"a":1}"#, "--user-property", "x-note=\(fits)"])
            #expect(mapped.status == 0)
            #expect(mapped.output.contains(#""x-note":"\#(fits)""#))

            let tooLarge = String(repeating: "é", count: 5_200)
            let refused = try await BridgeExecutable.run(["map", "--config", path, "--topic", "devices/d1/alarm/x",
                                                          "--payload", #"{"a":1}"#, "--user-property", "x-note=\(tooLarge)"])
            #expect(refused.status == 1)
            #expect(!refused.output.contains("x-note"))

            // The same in a pass-through message's own headers.
            let native = #"{"topic":"org.example/pump-1/things/live/messages/m","headers":{"correlation-id":"c-1","x-note":"\#(fits)"},"path":"/outbox/messages/m","value":1}"#
            let passed = try await BridgeExecutable.run(["map", "--config", path, "--topic", "edge/things/pump-1",
                                                         "--payload", native])
            #expect(passed.status == 0)
            #expect(passed.output.contains(fits))
        }
    }
}
