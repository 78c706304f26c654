import BridgeOperations
import Foundation
import ServiceLifecycle
import Testing

/// Issue 22, item 9: the README promises `WATCHDOG=1` at half of `WatchdogSec`; pinging at the full interval
/// lets systemd kill a healthy bridge whenever one ping is a little late (scripts/mutants.sh M26).
struct WatchdogPeriodTests {
    @Test("with WatchdogSec=1s the pings come every half second: three periods take 1.5 s, not 3 s")
    func pingsAtHalfOfWatchdogSec() async throws {
        let socket = try NotifySocket()
        let notifier = SystemdNotifier(
            environment: ["NOTIFY_SOCKET": socket.name, "WATCHDOG_USEC": "1000000"], logger: .test)
        let watchdog = SystemdWatchdogService(notifier: notifier, logger: .test)
        let group = ServiceGroup(configuration: .init(services: [watchdog], gracefulShutdownSignals: [], logger: .test))
        let running = Task { try await group.run() }

        #expect(await socket.receive() == "WATCHDOG=1")
        let clock = ContinuousClock()
        let start = clock.now
        for _ in 0..<3 {
            #expect(await socket.receive(timeout: .seconds(5)) == "WATCHDOG=1")
        }
        let elapsed = clock.now - start
        #expect(elapsed < .milliseconds(2_200), "three watchdog periods took \(elapsed)")
        #expect(elapsed > .milliseconds(1_000), "three watchdog periods took \(elapsed)")

        await group.triggerGracefulShutdown()
        try await running.value
    }
}
