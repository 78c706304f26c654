import BridgeConfig
import DequeModule
import Logging
import MQTT
import Mosquitto

/// What devices sent, between being taken and Ditto's side having it: the spool (or, without one, a bounded queue
/// in memory), the in-flight window towards Ditto, and the back pressure that stops reading devices while either
/// is full. Loop thread only.
///
/// A message counts as taken once ``take(topic:payload:properties:)`` returns; ``send()`` moves what waits to
/// Ditto's side, in order, while the transport takes more; a completion with ``DittoSendOutcome/taken`` moves the
/// spool's cursor (persisted in batches).
final class SpoolPump {
    private let context: PlaneContext
    let spool: Spool?
    /// Called for a publish that ended before it went out, as the transport's completion would have been.
    var completed: (UplinkToken, DittoSendOutcome) -> Void = { _, _ in }

    /// Without a spool: mapped messages waiting for room in the Ditto-side window.
    private var memoryQueue = Deque<OutboundRecord>()
    private var memorySequence: UInt64 = 0
    /// Without a spool, what is in flight is kept until acknowledged, so that a replaced Ditto-side client
    /// can send it again; in the order sent, which is the order completions come in (a queue, not a table: nothing
    /// is hashed).
    private var memoryInFlightRecords = Deque<OutboundRecord>()
    private var returnedRecords: [OutboundRecord] = []
    /// Something came back unconfirmed (a closed session or client): it goes first once nothing is in flight.
    private var returnPending = false
    private var cursorTimerArmed = false
    private var takingDeviceMessages = true
    private var deviceReadingPaused = false

    static let memoryQueueLimit = 1_000

    init(context: PlaneContext, spool: Spool?) {
        self.context = context
        self.spool = spool
        (queueLimit, trackLimit) = Self.limits(context.configuration.connections.ditto, spool: spool)
    }

    /// Worked out when the Ditto-side connection is set, not per message: reading it from the configuration copies
    /// it.
    private static func limits(_ ditto: DittoConnection, spool: Spool?) -> (queue: Int, track: Int) {
        let queue = spool == nil ? memoryQueueLimit : max(memoryQueueLimit, 4 * ditto.maxInflight)
        return (queue, 2 * queue + ditto.maxInflight)
    }

    /// Without a spool, the memory queue's bound: what it holds was acknowledged to the device broker and dies with
    /// the process, so a crash loses at most this plus the `max-inflight` window (docs/DELIVERY.md);
    /// the surplus stays in the device broker's session. With a spool, the backlog the spool may hold while Ditto is
    /// connected (beyond it the device broker holds the surplus, so latency stays bounded under overload).
    private var queueLimit: Int

    /// How many uplink messages the uplink keeps rule and arrival for.
    private(set) var trackLimit: Int

    /// Records through this sequence number are acknowledged or dropped.
    var ackedThrough: UInt64 { spool?.ackedThrough ?? 0 }

    /// Loop thread, once: the spool's periodic sync.
    func install() {
        if let spool, case .interval(let interval) = spool.settings.fsync { scheduleSync(every: interval) }
        updateDeviceReading()
    }

    /// Takes a mapped message: in the spool, or (without one, or when the disk fails) in the bounded queue. The
    /// caller records what it keeps per token, then calls ``send()``.
    func take(topic: String, payload: [UInt8], properties: PublishProperties) -> UplinkToken {
        guard let spool else { return appendToMemory(topic: topic, payload: payload, properties: properties) }
        do {
            let record = try spool.append(topic: topic, payload: payload, properties: properties)
            if spool.isFull, spool.settings.whenFull == .dropOldest {
                let dropped = try spool.dropOldestUntilRoom()
                if dropped > 0 {
                    context.metrics.increment("uplink.dropped.spool-full", by: dropped)
                    context.logger.warning("spool full: oldest messages dropped", metadata: ["dropped": "\(dropped)"])
                }
            }
            armCursorTimer()
            return .spooled(record.sequence)
        } catch {
            // The disk failed us: keep the message in memory rather than lose it.
            context.metrics.increment("spool.write-failed")
            context.logger.error("spool append failed; the message waits in memory", metadata: [
                "mqtt.topic": "\(topic)", "error": "\(error)",
            ])
            return appendToMemory(topic: topic, payload: payload, properties: properties)
        }
    }

    private func appendToMemory(topic: String, payload: [UInt8], properties: PublishProperties) -> UplinkToken {
        memorySequence += 1
        // `created` is for the spool's `max-age`; the memory queue has none, so no clock is read for it.
        memoryQueue.append(OutboundRecord(sequence: memorySequence, created: 0, topic: topic,
                                          payload: payload, properties: properties))
        return .memory(memorySequence)
    }

    /// Sends what waits, in order, while the Ditto side takes more.
    func send() {
        let ditto = context.ditto
        if returnPending, ditto.publishesInFlight == 0 { sendReturnedFirst() }
        // Without a spool, an empty queue ends the loop before the transport is asked (once per message).
        while spool != nil || !memoryQueue.isEmpty, ditto.canPublishNow {
            if let next = memoryQueue.popFirst() {
                let token = UplinkToken.memory(next.sequence)
                // In flight before it is published: whatever reports its outcome, and when, finds it.
                memoryInFlightRecords.append(next)
                if let outcome = ditto.publish(next.payload, to: next.topic, properties: next.properties,
                                               token: token) {
                    completed(token, outcome)
                }
            } else if let spool {
                let record: OutboundRecord
                do {
                    guard let next = try spool.nextToSend() else { break }
                    record = next
                } catch {
                    context.metrics.increment("spool.read-failed")
                    context.logger.error("spool record unreadable; skipped", metadata: ["error": "\(error)"])
                    spool.skipUnreadable()
                    continue
                }
                let token = UplinkToken.spooled(record.sequence)
                if let outcome = ditto.publish(record.payload, to: record.topic, properties: record.properties,
                                               token: token) {
                    completed(token, outcome)
                }
            } else {
                break
            }
        }
        if let spool, spool.expired > 0 {
            context.metrics.increment("uplink.dropped.expired", by: spool.takeExpired())
        }
        updateDeviceReading()
    }

    /// The pump's share of a completion: the record leaves the spool or the queue, or (unconfirmed, without a
    /// spool) goes back to be sent again by a replaced client.
    func publishCompleted(_ token: UplinkToken, _ outcome: DittoSendOutcome) {
        switch token {
        case .answer:
            return
        case .memory(let sequence):
            let record = takeInFlightRecord(sequence)
            if case .unconfirmed = outcome, let record {
                returnedRecords.append(record)
                returnPending = true
            }
        case .spooled(let sequence):
            // Unconfirmed: the spool keeps it, sent again once nothing else is in flight (a new session or client).
            if case .unconfirmed = outcome {
                returnPending = true
                return
            }
            spool?.acknowledge(sequence)
            armCursorTimer()
        }
    }

    /// The in-flight record `sequence`: the oldest one as a rule (completions come in the order sent), the newest one
    /// when a publish fails at once.
    private func takeInFlightRecord(_ sequence: UInt64) -> OutboundRecord? {
        if memoryInFlightRecords.first?.sequence == sequence { return memoryInFlightRecords.popFirst() }
        if memoryInFlightRecords.last?.sequence == sequence { return memoryInFlightRecords.popLast() }
        guard let index = memoryInFlightRecords.firstIndex(where: { $0.sequence == sequence }) else { return nil }
        return memoryInFlightRecords.remove(at: index)
    }

    /// Reads the device side only while the uplink can take more (hysteresis: resumes at half).
    func updateDeviceReading() {
        let limit = deviceReadingPaused ? queueLimit / 2 : queueLimit
        let pause: Bool
        if !takingDeviceMessages {
            pause = true
        } else if let spool {
            let full = deviceReadingPaused ? !spool.hasRoom : spool.isFull
            pause = (full && spool.settings.whenFull == .backPressure) || (context.ditto.isConnected && spool.backlog >= limit)
                || memoryQueue.count >= limit
        } else {
            pause = memoryQueue.count >= limit
        }
        guard pause != deviceReadingPaused else { return }
        deviceReadingPaused = pause
        if pause {
            context.device.pauseReading()
            context.metrics.increment("uplink.back-pressure")
            context.logger.debug("device side paused: the uplink is full", metadata: ["uplink.waiting": "\(uplinkWaiting)"])
        } else {
            context.device.resumeReading()
            context.logger.debug("device side resumed")
        }
    }

    /// Messages taken from devices and not yet acknowledged by Ditto's broker.
    var uplinkWaiting: Int {
        memoryQueue.count + memoryInFlightRecords.count + (spool?.unacknowledged ?? 0)
    }

    /// What the spool gauge shows: the spool's unacknowledged messages, or the memory queue's.
    var waitingInQueue: Int { spool?.unacknowledged ?? memoryQueue.count + memoryInFlightRecords.count }

    private func armCursorTimer() {
        guard !cursorTimerArmed, let spool, spool.cursorDirty else { return }
        cursorTimerArmed = true
        // Acknowledgements persisted in batches: after a kill -9 at most this much is sent twice.
        context.loop.schedule(at: .now + .milliseconds(20)) { [unowned self] in
            cursorTimerArmed = false
            spool.persistCursor()
        }
    }

    private func scheduleSync(every interval: Duration) {
        context.loop.schedule(at: .now + interval) { [weak self] in
            guard let self, let spool = self.spool else { return }
            spool.sync()
            scheduleSync(every: interval)
        }
    }

    // MARK: for the service

    /// Graceful stop, step 1: take no more device messages (and, to resume, take them again).
    func takeDeviceMessages(_ taking: Bool) {
        takingDeviceMessages = taking
        updateDeviceReading()
        if taking { send() }
    }

    /// A replaced Ditto-side connection: its `max-inflight` sets the bounds, and what the old one returned
    /// unconfirmed goes first.
    func dittoReplaced() {
        (queueLimit, trackLimit) = Self.limits(context.configuration.connections.ditto, spool: spool)
        sendReturnedFirst()
    }

    /// What came back unconfirmed goes first, in its order: memory records back to the queue's front, the spool
    /// back to its cursor. Only once nothing is in flight, so that a record still on its way is not sent twice.
    private func sendReturnedFirst() {
        returnPending = false
        for record in returnedRecords.sorted(by: { $0.sequence > $1.sequence }) { memoryQueue.prepend(record) }
        returnedRecords.removeAll()
        do {
            try spool?.rewindToCursor()
        } catch {
            context.metrics.increment("spool.read-failed")
            context.logger.error("spool cannot rewind to its cursor", metadata: ["error": "\(error)"])
        }
    }

    /// A device side replaced while paused stays paused.
    func deviceReplaced() {
        if deviceReadingPaused { context.device.pauseReading() }
    }

    /// Whether everything taken from devices reached Ditto's side (or, with a spool, is safe on disk while the
    /// Ditto side is down).
    var drained: Bool {
        if spool != nil, !context.ditto.isConnected { return memoryQueue.isEmpty && memoryInFlightRecords.isEmpty }
        return uplinkWaiting == 0 && context.ditto.publishesInFlight == 0
    }

    /// Graceful stop: the spool's cursor goes to disk.
    func persistForShutdown() {
        if case .never = spool?.settings.fsync {
            spool?.persistCursor()
        } else {
            spool?.sync(wait: true)
        }
    }

    /// Graceful stop, last step: what was taken from devices and never acknowledged by Ditto's side.
    var unsentAtStop: Int {
        spool?.unacknowledged ?? memoryQueue.count + memoryInFlightRecords.count + returnedRecords.count
    }
}
