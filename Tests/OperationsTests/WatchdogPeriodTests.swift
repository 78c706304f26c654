import BridgeOperations
import Foundation
import ServiceLifecycle
import Testing

/// Issue 22, item 9: docs/OPERATIONS.md (systemd) promises `WATCHDOG=1` at half of `WatchdogSec`; pinging at the full interval
/// lets systemd kill a healthy bridge whenever one ping is a little late (scripts/mutants.sh M26).
struct WatchdogPeriodTests {
    @Test("with WatchdogSec=1s the pings come every half second (the shortest of six gaps is under 0.85 s, not 1 s)")
    func pingsAtHalfOfWatchdogSec() async throws {
        let socket = try NotifySocket()
        let notifier = SystemdNotifier(
            environment: ["NOTIFY_SOCKET": socket.name, "WATCHDOG_USEC": "1000000"], logger: .test)
        let watchdog = SystemdWatchdogService(notifier: notifier, logger: .test)
        let group = ServiceGroup(configuration: .init(services: [watchdog], gracefulShutdownSignals: [], logger: .test))
        let running = Task { try await group.run() }

        // A busy test process wakes the sleeping service late, which only lengthens a gap: the shortest gap is
        // the period.
        #expect(await socket.receive() == "WATCHDOG=1")
        let clock = ContinuousClock()
        var last = clock.now
        var gaps: [Duration] = []
        for _ in 0..<6 {
            #expect(await socket.receive(timeout: .seconds(5)) == "WATCHDOG=1")
            let now = clock.now
            gaps.append(now - last)
            last = now
        }
        let shortest = try #require(gaps.min())
        #expect(shortest < .milliseconds(850), "gaps between pings: \(gaps)")

        await group.triggerGracefulShutdown()
        try await running.value
    }
}
