import BridgeConfig
import BridgeMapping
import CoreMetrics
import DittoProtocol
import Logging
import MQTT
import Mosquitto

/// Everything that happens per message, on one thread: the event loop that drives both sides.
///
/// The parts, each with the state it owns:
/// - ``UplinkPipeline``: device messages to Ditto (what each topic decides, mapping, device requests waiting
///   for Ditto, the books per message until Ditto's side has it);
/// - ``SpoolPump``: the spool or memory queue, the in-flight window towards Ditto, back pressure on devices;
/// - ``DownlinkPipeline``: Ditto's requests to devices and the devices' answers back (routing, pending
///   requests, rules a reload replaced, the backlog towards the device broker);
/// - ``Presence``: devices' status topics;
/// - ``PlaneContext``: what they share (configuration in force, both sides, log, metrics, answers).
///
/// The service reaches the data plane only through a ``LoopBound``, so all of it runs on the loop's thread: the
/// clients' handlers run there, and the service hands work in with `loop.execute`/`submit`. Back pressure is the
/// loop not reading a socket: the device side's while the spool or the in-flight window is full.
final class DataPlane {
    private let context: PlaneContext
    /// The Ditto side's transport (the one ``DittoSide/makeTransport()`` made).
    let dittoTransport: any DittoTransport
    private let presence: Presence
    private let pump: SpoolPump
    private let uplink: UplinkPipeline
    private let downlink: DownlinkPipeline

    init(configuration: BridgeConfiguration, loop: MQTTEventLoop, device: MosquittoClient, ditto: any DittoTransport,
         logger: Logger, metrics: BridgeMetrics, maximumPendingRequests: Int, keptTopicLimit: Int = BridgeService.defaultKeptTopicLimit) throws {
        // The spool creates the state directory the revision base is kept in.
        let spool = try configuration.spool.map { try Spool(settings: $0, logger: logger) }
        let revisionBase = RevisionBase.next(stateDirectory: configuration.spool?.directory, logger: logger)
        dittoTransport = ditto
        context = PlaneContext(configuration: configuration, loop: loop, device: device, ditto: ditto,
                               logger: logger, metrics: metrics, maximumPendingRequests: maximumPendingRequests,
                               keptTopicLimit: keptTopicLimit, revisionBase: revisionBase)
        presence = Presence(context: context)
        pump = SpoolPump(context: context, spool: spool)
        downlink = DownlinkPipeline(context: context, presence: presence)
        uplink = UplinkPipeline(context: context, pump: pump, downlink: downlink, presence: presence)
    }

    /// Loop thread: connects the sides' handlers to the parts.
    func install() {
        let uplink = self.uplink
        let pump = self.pump
        let completed: (UplinkToken, DittoSendOutcome) -> Void = { [unowned uplink, unowned pump] token, outcome in
            uplink.publishCompleted(token, outcome)
            pump.publishCompleted(token, outcome)
        }
        pump.completed = completed
        dittoTransport.setHandlers(
            message: { [unowned self] in handleDittoMessage($0) },
            publishCompleted: completed,
            capacityAvailable: { [unowned pump] in pump.send() })
        installDevice()
        pump.install()
        sampleGauges()
    }

    private func installDevice() {
        let uplink = self.uplink
        let downlink = self.downlink
        context.device.setHandlers(
            message: { [unowned uplink] in uplink.handleDeviceMessage($0) },
            publishCompleted: { [unowned downlink] in downlink.deviceSendCompleted($0, $1) },
            capacityAvailable: { [unowned downlink] in downlink.drainBacklog() },
            connection: { [unowned downlink] event in
                if case .connected = event { downlink.drainBacklog() }
            })
    }

    /// The gauges of `/metrics`, once a second.
    private func sampleGauges() {
        let gauges = context.gauges
        gauges.requestsPendingDownlink.record(downlink.pendingCount)
        gauges.requestsPendingUplink.record(uplink.pendingCount)
        gauges.inFlightDevice.record(context.device.inflightCount)
        gauges.inFlightDitto.record(context.ditto.publishesInFlight)
        gauges.upDevice.record(context.device.isConnected ? 1 : 0)
        gauges.upDitto.record(context.ditto.isConnected ? 1 : 0)
        gauges.spoolBytes.record(pump.spool?.totalBytes ?? 0)
        gauges.spoolMessages.record(pump.waitingInQueue)
        gauges.spoolOldestAge.record(pump.spool?.oldestAge ?? 0)
        context.loop.schedule(at: .now + .seconds(1)) { [weak self] in self?.sampleGauges() }
    }

    /// A Ditto Protocol message from Ditto: a response to a device's request, or a request for a device.
    private func handleDittoMessage(_ delivery: DittoDelivery) {
        let arrival = MQTTEventLoop.monotonicNanoseconds()
        let envelope: Envelope
        do {
            envelope = try Envelope.decode(delivery.payload)
        } catch {
            context.metrics.increment("ditto.invalid")
            context.logger.warning("invalid Ditto Protocol message", metadata: [
                "mqtt.topic": "\(delivery.source)", "reason": "\(error)",
            ])
            context.answerUndecodable(delivery, error: error)
            return
        }
        if envelope.isResponse {
            uplink.handleDittoResponse(envelope, source: delivery.source)
            return
        }
        let replyAddress = delivery.replyAddress ?? envelope.headers.replyTo
            ?? envelope.topic.thingID.flatMap { try? DittoPublication.render(context.configuration.ditto.publishTopic, for: $0) }
        switch envelope.topic.criterion {
        case .messages, .commands:
            downlink.handleDittoRequest(envelope, replyAddress: replyAddress, source: delivery.source, arrival: arrival)
        default:
            context.metrics.increment("ditto.ignored")
            context.logger.debug("Ditto signal ignored", metadata: [
                "mqtt.topic": "\(delivery.source)", "ditto.topic": "\(envelope.topic)",
            ])
        }
    }

    // MARK: for the service

    var pendingCounts: (downlink: Int, uplink: Int) { (downlink.pendingCount, uplink.pendingCount) }

    /// Graceful stop, step 1: take no more device messages.
    func stopTakingDeviceMessages() {
        pump.takeDeviceMessages(false)
    }

    func resumeTakingDeviceMessages() {
        pump.takeDeviceMessages(true)
    }

    /// A reloaded mapping (rules, header policy, devices, acks) takes effect for the next message; requests
    /// already pending keep the rules they were sent with.
    func apply(_ new: BridgeConfiguration) {
        context.configuration.uplink = new.uplink
        context.configuration.downlink = new.downlink
        context.configuration.headers = new.headers
        context.configuration.deviceStatus = new.deviceStatus
        context.configuration.acks = new.acks
        context.configuration.defaults = new.defaults
        context.configuration.ditto = new.ditto
        context.headerMapper = HeaderMapper(policy: new.headers)
        dittoTransport.apply(new)
        downlink.apply(context.configuration)
        uplink.apply(context.configuration)
    }

    /// Reply filters of replaced rules that requests still wait on: a reload keeps them subscribed.
    var retainedReplyFilters: Set<String> { downlink.retainedReplyFilters }

    /// Moves a side to a new client (new host, credentials or TLS); the old one is closed by the caller.
    func replace(device client: MosquittoClient, connection: BrokerConnection) {
        context.deviceClient = client
        context.configuration.connections.device = connection
        installDevice()
        pump.deviceReplaced()
    }

    /// The Ditto side moved to a new connection (`new`'s settings); the old one completed what it had in flight.
    func dittoConnectionReplaced(_ new: BridgeConfiguration) {
        context.configuration.connections.ditto = new.connections.ditto
        dittoTransport.connectionReplaced()
        pump.dittoReplaced()
    }

    /// Whether everything taken from devices reached Ditto's broker (or, with a spool, is safe on disk while
    /// the Ditto side is down).
    var uplinkDrained: Bool { pump.drained }

    /// Messages taken from devices and not yet acknowledged by Ditto's side.
    var uplinkWaiting: Int { pump.uplinkWaiting }

    /// Graceful stop, step 2: requesters still waiting get an answer now instead of a timeout later; the
    /// spool's cursor goes to disk.
    func answerPendingForShutdown() {
        downlink.answerPendingForShutdown()
        pump.persistForShutdown()
    }

    /// Graceful stop, last step (both sides closed): counts what was taken from devices and never acknowledged by
    /// Ditto's broker: with a spool it is sent at the next start, without one it is lost.
    func countUnsentAtStop() {
        let left = pump.unsentAtStop
        if left > 0 { context.metrics.increment("uplink.unsent-at-stop", by: left) }
    }

    var dittoIdle: Bool { context.ditto.publishesInFlight == 0 || !context.ditto.isConnected }
}
