import Synchronization

/// Runs work in order per key and concurrently across keys.
///
/// Ditto's requests for one device must reach it in the order Ditto sent them (a modify after a modify),
/// but a device whose publish waits (its broker just dropped, back pressure) must not hold up the others.
final class SerialLanes: Sendable {
    private struct Lane {
        var id: UInt64
        var tail: Task<Void, Never>
    }

    private struct State {
        var lanes: [String: Lane] = [:]
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())

    /// Starts `work` after everything enqueued earlier under `key` has finished.
    func enqueue(_ key: String, _ work: @escaping @Sendable () async -> Void) {
        state.withLock { state in
            let previous = state.lanes[key]?.tail
            state.nextID += 1
            let id = state.nextID
            let task = Task {
                await previous?.value
                await work()
                self.finished(key, id: id)
            }
            state.lanes[key] = Lane(id: id, tail: task)
        }
    }

    /// Waits for everything enqueued so far.
    func drain() async {
        let tails = state.withLock { $0.lanes.values.map(\.tail) }
        for tail in tails { await tail.value }
    }

    var count: Int { state.withLock { $0.lanes.count } }

    private func finished(_ key: String, id: UInt64) {
        state.withLock { state in
            if state.lanes[key]?.id == id { state.lanes[key] = nil }
        }
    }
}
