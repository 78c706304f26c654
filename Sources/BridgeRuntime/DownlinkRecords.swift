import BridgeMapping
import DittoProtocol
import Mosquitto
import MQTT

/// A request waiting for an answer, keyed by who it belongs to: a correlation id is only unique per thing.
struct PendingKey: Hashable, Sendable {
    var thing: String
    var correlationID: String
}

/// A Ditto request on its way to a device, waiting for the device's answer.
///
/// A class: the pending table hands it out for every answer that might be its device's, and a struct of an
/// envelope, a route and the rules was copied whole each time (a retain and a release per string and array).
final class PendingDownlink: Sendable {
    let request: Envelope
    let route: DownlinkRoute
    /// Where the answer goes on the Ditto side.
    let replyAddress: String
    /// Whether Ditto waits for a response (`response-required`).
    let responseRequired: Bool
    /// The requested ack label this bridge issues when the device answers.
    let answeredAck: String?
    /// The rules the request was sent with: its answer is read with them even after a reload.
    let mapper: DownlinkMapper
    /// When the request reached the bridge (round-trip histogram).
    let arrival = ContinuousClock.now

    init(request: Envelope, route: DownlinkRoute, replyAddress: String, responseRequired: Bool, answeredAck: String?,
         mapper: DownlinkMapper) {
        self.request = request
        self.route = route
        self.replyAddress = replyAddress
        self.responseRequired = responseRequired
        self.answeredAck = answeredAck
        self.mapper = mapper
    }
}

/// Downlink rules a reload replaced, kept while requests sent with them wait.
struct RetiredDownlink {
    let mapper: DownlinkMapper
    /// The requests sent with these rules that still wait.
    var waiting: Set<PendingKey>
}

/// A Ditto request mapped for a device, on its way to the device broker (a class for the same reason as
/// ``PendingDownlink``: it is kept until the device broker acknowledges it, and a copy of a struct retained each part).
final class DownlinkSend {
    let envelope: Envelope
    let route: DownlinkRoute
    let replyAddress: String?
    let deliveredAck: String?
    let pendingKey: PendingKey?
    let publication: MQTTMessage
    /// ``MQTTEventLoop/monotonicNanoseconds()`` when the request was read (bridge-latency histogram).
    let arrival: Int64

    init(envelope: Envelope, route: DownlinkRoute, replyAddress: String?, deliveredAck: String?, pendingKey: PendingKey?,
         publication: MQTTMessage, arrival: Int64) {
        self.envelope = envelope
        self.route = route
        self.replyAddress = replyAddress
        self.deliveredAck = deliveredAck
        self.pendingKey = pendingKey
        self.publication = publication
        self.arrival = arrival
    }
}

/// The things with a pending downlink request per correlation id. Almost always one: that case is kept without a
/// set of its own (no allocation per request).
struct ThingsByCorrelation {
    private enum Things {
        case one(String)
        case many(Set<String>)
    }

    private var table: [String: Things] = [:]

    /// The first thing waiting under `correlationID` that `matches`.
    func first(for correlationID: String, where matches: (String) -> Bool) -> String? {
        switch table[correlationID] {
        case .one(let thing)?: matches(thing) ? thing : nil
        case .many(let things)?: things.first(where: matches)
        case nil: nil
        }
    }

    mutating func insert(_ thing: String, for correlationID: String) {
        switch table[correlationID] {
        case nil: table[correlationID] = .one(thing)
        case .one(let other)?: table[correlationID] = other == thing ? .one(thing) : .many([other, thing])
        case .many(var things)?:
            things.insert(thing)
            table[correlationID] = .many(things)
        }
    }

    mutating func remove(_ thing: String, for correlationID: String) {
        switch table[correlationID] {
        case .one(let other)? where other == thing: table[correlationID] = nil
        case .many(var things)?:
            things.remove(thing)
            if things.count == 1, let only = things.first {
                table[correlationID] = .one(only)
            } else {
                table[correlationID] = .many(things)
            }
        default: break
        }
    }

    mutating func removeAll() { table.removeAll() }

    /// Every (thing, correlation id) pair in the table.
    var keys: Set<PendingKey> {
        var keys = Set<PendingKey>()
        for (correlationID, things) in table {
            switch things {
            case .one(let thing): keys.insert(PendingKey(thing: thing, correlationID: correlationID))
            case .many(let set): for thing in set { keys.insert(PendingKey(thing: thing, correlationID: correlationID)) }
            }
        }
        return keys
    }
}
