import Synchronization

/// Which sides are connected and subscribed; who waits for both.
final class Readiness: Sendable {
    private struct State {
        var subscribed: Set<String> = []
        var connected: Set<String> = []
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())
    static let deviceSide = "device"
    static let dittoSide = "ditto"
    static let sides = [deviceSide, dittoSide]

    var isReady: Bool { state.withLock { Self.ready($0) } }

    var notReady: [String] {
        state.withLock { state in Self.sides.filter { !state.subscribed.contains($0) || !state.connected.contains($0) } }
    }

    private static func ready(_ state: State) -> Bool {
        sides.allSatisfy { state.subscribed.contains($0) && state.connected.contains($0) }
    }

    func setConnected(_ side: String, _ connected: Bool) {
        update { if connected { $0.connected.insert(side) } else { $0.connected.remove(side) } }
    }

    func setSubscribed(_ side: String) {
        update {
            $0.subscribed.insert(side)
            $0.connected.insert(side)
        }
    }

    private func update(_ change: (inout State) -> Void) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            change(&state)
            guard Self.ready(state) else { return [] }
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func waitUntilReady() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { state in
                if Self.ready(state) { return true }
                state.waiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }
}
