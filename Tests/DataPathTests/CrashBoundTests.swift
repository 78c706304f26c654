import Foundation
import Mosquitto
import MosquittoTestSupport
import Testing

extension DeliveryTests {
    /// Issue 22, item 7. Without a spool, what the bridge took from the device broker (acknowledged there) and
    /// Ditto's broker has not acknowledged lives only in the bridge's memory: the in-flight window and the memory
    /// queue. Everything else stays in the device broker's session and comes again after the crash. docs/DELIVERY.md: a crash
    /// loses at most `max-inflight` plus 1,000 messages. The Ditto side is down for 2.5 s at 2,000 msg/s before the
    /// kill, enough for the queue to fill to any bound above 1,000 (the old one was 4 x max-inflight).
    @Test("(h) No spool, Ditto side down, bridge killed with -9: at most max-inflight + 1,000 messages lost")
    func crashWithoutSpoolLosesAtMostTheBound() async throws {
        let maxInflight = 1_000
        try await withScenario(try await DataPathScenario(spool: false)) { world in
            try await world.waitUntilBridging()
            let fleet = try await world.fleet(DataPath.deviceIDs(10), messagesPerDevice: 800)
            try await runFleet(fleet, faultAfter: 1_000) {
                world.dittoBroker.stop(gracePeriod: .seconds(10))
                try await Task.sleep(for: .milliseconds(2_500))
                world.bridge.kill9()
                try await world.dittoBroker.restart()
                try world.bridge.start()
            }
            let report = await world.collector.waitForDelivery(expected: Self.expected(fleet))
            await fleet.disconnect()
            print("datapath [h: no spool, kill -9 during a Ditto-side outage]: \(report)")
            let bound = maxInflight + 1_000
            #expect(report.lost <= bound, "\(report.lost) messages lost; docs/DELIVERY.md's bound is \(bound)")
            #expect(report.reordered == 0)
            return report.lost <= bound && report.reordered == 0
        }
    }
}
