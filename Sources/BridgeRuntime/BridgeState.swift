import BridgeMapping
import DittoProtocol
import Synchronization

/// A Ditto request on its way to a device, waiting for the device's answer.
struct PendingDownlink: Sendable {
    var request: Envelope
    var route: DownlinkRoute
    /// Where the answer goes on the Ditto side.
    var replyAddress: String
    /// Whether Ditto waits for a response (`response-required`).
    var responseRequired: Bool
    /// Requested ack labels this bridge issues for this request.
    var answeredAck: String?
}

/// The bridge's shared mutable state: pending requests both ways, event revisions, device presence.
final class BridgeState: Sendable {
    struct State {
        var downlink: PendingTable<String, PendingDownlink>
        var uplink: PendingTable<String, DeviceRequest>
        var revisions: [ThingID: Int64] = [:]
        /// Devices (by ``BridgeService/presenceKey(_:_:)``) whose status topic last said offline.
        var offline: Set<String> = []
    }

    private let state: Mutex<State>

    init(capacity: Int) {
        state = Mutex(State(downlink: PendingTable(capacity: capacity), uplink: PendingTable(capacity: capacity)))
    }

    func nextRevision(for thingID: ThingID) -> Int64 {
        state.withLock { state in
            let next = (state.revisions[thingID] ?? 0) + 1
            state.revisions[thingID] = next
            return next
        }
    }

    func setOnline(_ online: Bool, _ device: String) {
        state.withLock { state in
            if online { state.offline.remove(device) } else { state.offline.insert(device) }
        }
    }

    func isOffline(_ device: String) -> Bool {
        state.withLock { $0.offline.contains(device) }
    }

    func insertDownlink(_ pending: PendingDownlink, key: String, deadline: ContinuousClock.Instant)
        -> PendingTable<String, PendingDownlink>.InsertOutcome
    {
        state.withLock { $0.downlink.insert(pending, for: key, deadline: deadline) }
    }

    @discardableResult
    func removeDownlink(_ key: String) -> PendingDownlink? {
        state.withLock { $0.downlink.remove(key) }
    }

    func insertUplink(_ request: DeviceRequest, deadline: ContinuousClock.Instant)
        -> PendingTable<String, DeviceRequest>.InsertOutcome
    {
        state.withLock { $0.uplink.insert(request, for: request.correlationID, deadline: deadline) }
    }

    @discardableResult
    func removeUplink(_ key: String) -> DeviceRequest? {
        state.withLock { $0.uplink.remove(key) }
    }

    func expire(now: ContinuousClock.Instant) -> (downlink: [PendingDownlink], uplink: [DeviceRequest]) {
        state.withLock { state in
            (state.downlink.expire(now: now).map(\.value), state.uplink.expire(now: now).map(\.value))
        }
    }

    var nextDeadline: ContinuousClock.Instant? {
        state.withLock { state in
            [state.downlink.nextDeadline, state.uplink.nextDeadline].compactMap { $0 }.min()
        }
    }

    /// Empties both tables (shutdown).
    func removeAll() -> (downlink: [PendingDownlink], uplink: [DeviceRequest]) {
        state.withLock { state in
            (state.downlink.removeAll().map(\.value), state.uplink.removeAll().map(\.value))
        }
    }

    var pendingCounts: (downlink: Int, uplink: Int) {
        state.withLock { ($0.downlink.count, $0.uplink.count) }
    }
}
