import BridgeConfig
import BridgeMapping
import DittoProtocol
import Testing

/// A requester's `timeout` is capped at Ditto's maximum, 60 s, also for a rule that waits for no reply (`reply:
/// {mode: none}`: its route's timeout is the request's own, which sets the device message's expiry) (scripts/mutants.sh M17, which survived its first run).
struct TimeoutCapTests {
    static let yaml = """
        defaults: { namespace: org.example }
        downlink:
          - name: fire
            match: { messages: { subject: "*" } }
            thing-id: "{namespace}:{deviceId}"
            topic: "devices/{deviceId}/inbox/{subject}"
            reply: { mode: none }
        """

    @Test(arguments: [("\"2m\"", 60), ("\"10s\"", 10), (nil, 60)] as [(String?, Int)])
    func requestTimeoutIsCappedAt60Seconds(_ timeout: String?, _ seconds: Int) throws {
        let mapper = DownlinkMapper(configuration: try configuration(Self.yaml))
        let header = timeout.map { #","timeout":\#($0)"# } ?? ""
        let request = try envelope(#"{"topic":"org.example/dev-1/things/live/messages/go","headers":{"correlation-id":"c","response-required":false\#(header)},"path":"/inbox/messages/go"}"#)
        let route = try mapper.route(request)
        #expect(route.timeout == .seconds(seconds))
        #expect(DownlinkMapper.maximumTimeout == .seconds(60))
    }
}
