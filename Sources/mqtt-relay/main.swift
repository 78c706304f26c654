import Foundation
import Logging
import MQTT
import Mosquitto
import UnixSignals

/// The zero-work relay the benchmark measures the bridge against: the same client, the same event loop and
/// the same back pressure as the bridge, but no mapping, no spool and no bookkeeping. Every message read is
/// republished unchanged (bytes, QoS) by the other client, inside the read.
///
/// Two modes, the two directions the bridge works in:
/// - `uplink` (default): `--filter` on the source broker to `<prefix>/<topic>` on the target broker.
/// - `downlink`: the bridge's live-message round trip without the mapping. `ditto/out/{thing}` on the target
///   (Ditto-side) broker goes to `devices/{thing}/inbox/ping` on the source (device) broker with response topic
///   `devices/{thing}/reply`; what arrives there goes back to `ditto/in/{thing}`. Correlation data and content
///   type are carried over as the MQTT 5 properties they came in, so a requester matches its answers.
///
/// - `--threaded-loop` (uplink only): the same relay on libmosquitto's own threaded loop instead of this
///   project's event loop (see `ThreadedRelay`), the benchmark's second reference.
///
/// Usage: mqtt-relay --source-port P --target-port P [--mode uplink|downlink] [--filter F] [--prefix P]
///                   [--qos 0|1] [--host H] [--threaded-loop]

/// One direction: what `source` reads, `target` republishes; `source` stops reading while `target` cannot
/// take more (the bridge's back pressure, without its spool).
///
/// SAFETY: `paused` is only touched on the relay loop's thread (the clients' handlers and the setup job).
final class Direction: @unchecked Sendable {
    let source: MosquittoClient
    let target: MosquittoClient
    let qos: QoS
    /// The topic and properties a message is republished with; nil: not for this direction.
    let republish: (MQTTMessage) -> (topic: String, properties: PublishProperties)?
    var paused = false

    init(from source: MosquittoClient, to target: MosquittoClient, qos: QoS,
         republish: @escaping (MQTTMessage) -> (topic: String, properties: PublishProperties)?) {
        self.source = source
        self.target = target
        self.qos = qos
        self.republish = republish
    }

    func relay(_ message: MQTTMessage) {
        guard let (topic, properties) = republish(message) else { return }
        _ = target.onLoop.publishNow(to: topic, payload: message.payload, qos: qos, properties: properties, token: 1)
        if !target.onLoop.canPublishNow, !paused {
            paused = true
            source.onLoop.pauseReading()
        }
    }

    func capacityAvailable() {
        if paused {
            paused = false
            source.onLoop.resumeReading()
        }
    }
}

func argument(_ name: String, _ fallback: String?) -> String {
    let arguments = CommandLine.arguments
    if let index = arguments.firstIndex(of: name), index + 1 < arguments.count { return arguments[index + 1] }
    guard let fallback else {
        FileHandle.standardError.write(Data("mqtt-relay: missing \(name)\n".utf8))
        exit(2)
    }
    return fallback
}

/// Publish completions need a handler; the relay keeps no books.
func ignore(_ token: UInt64, _ result: Result<PublishAck, MQTTError>) {}

/// The `{thing}` of `<prefix>{thing}<suffix>`.
func segment(of topic: String, after prefix: String, before suffix: String = "") -> Substring? {
    guard topic.hasPrefix(prefix), topic.hasSuffix(suffix), topic.utf8.count > prefix.utf8.count + suffix.utf8.count else { return nil }
    return topic.dropFirst(prefix.count).dropLast(suffix.count)
}

let host = argument("--host", "127.0.0.1")
let sourcePort = Int(argument("--source-port", nil)) ?? 1883
let targetPort = Int(argument("--target-port", String(sourcePort))) ?? sourcePort
let mode = argument("--mode", "uplink")
let filter = argument("--filter", "devices/#")
let prefix = argument("--prefix", "relay")
let qos = QoS(rawValue: UInt8(argument("--qos", "1")) ?? 1) ?? .atLeastOnce
guard mode == "uplink" || mode == "downlink" else {
    FileHandle.standardError.write(Data("mqtt-relay: --mode must be uplink or downlink, not '\(mode)'\n".utf8))
    exit(2)
}
if CommandLine.arguments.contains("--threaded-loop") {
    guard mode == "uplink" else {
        FileHandle.standardError.write(Data("mqtt-relay: --threaded-loop relays uplink only\n".utf8))
        exit(2)
    }
    let (source, target) = try ThreadedRelay.run(host: host, sourcePort: sourcePort, targetPort: targetPort, filter: filter,
                                                 prefix: prefix, qos: Int32(qos.rawValue))
    FileHandle.standardError.write(Data("mqtt-relay: relaying \(filter) from :\(sourcePort) to \(prefix)/... on :\(targetPort) (threaded loop)\n".utf8))
    for await _ in await UnixSignalsSequence(trapping: .sigterm, .sigint) { break }
    source.stop()
    target.stop()
    exit(0)
}
var logger = Logger(label: "mqtt-relay")
logger.logLevel = .warning

let loop = MQTTEventLoop(name: "relay loop")
let source = try MosquittoClient(configuration: MQTTConfiguration(host: host, port: sourcePort, clientID: "mqtt-relay-source"),
                                 logger: logger, eventLoop: loop)
let target = try MosquittoClient(configuration: MQTTConfiguration(host: host, port: targetPort, clientID: "mqtt-relay-target"),
                                 logger: logger, eventLoop: loop)
if mode == "uplink" {
    let up = Direction(from: source, to: target, qos: qos) { message in (prefix + "/" + message.topic, PublishProperties()) }
    await loop.submit {
        source.onLoop.setHandlers(message: { up.relay($0) })
        target.onLoop.setHandlers(message: nil, publishCompleted: ignore, capacityAvailable: { up.capacityAvailable() })
    }
    try await target.connect()
    try await source.connect()
    try await source.subscribe([Subscription(filter: filter, qos: qos, noLocal: true)])
    FileHandle.standardError.write(Data("mqtt-relay: relaying \(filter) from :\(sourcePort) to \(prefix)/... on :\(targetPort)\n".utf8))
} else {
    let down = Direction(from: target, to: source, qos: qos) { message in
        guard let thing = segment(of: message.topic, after: "ditto/out/") else { return nil }
        return ("devices/\(thing)/inbox/ping",
                PublishProperties(contentType: message.properties.contentType, responseTopic: "devices/\(thing)/reply",
                                  correlationData: message.properties.correlationData))
    }
    let back = Direction(from: source, to: target, qos: qos) { message in
        guard let thing = segment(of: message.topic, after: "devices/", before: "/reply") else { return nil }
        return ("ditto/in/\(thing)",
                PublishProperties(contentType: message.properties.contentType, correlationData: message.properties.correlationData))
    }
    await loop.submit {
        target.onLoop.setHandlers(message: { down.relay($0) }, publishCompleted: ignore, capacityAvailable: { back.capacityAvailable() })
        source.onLoop.setHandlers(message: { back.relay($0) }, publishCompleted: ignore, capacityAvailable: { down.capacityAvailable() })
    }
    try await target.connect()
    try await source.connect()
    try await source.subscribe([Subscription(filter: "devices/+/reply", qos: qos, noLocal: true)])
    try await target.subscribe([Subscription(filter: "ditto/out/+", qos: qos, noLocal: true)])
    FileHandle.standardError.write(Data("mqtt-relay: round trips ditto/out/+ on :\(targetPort) <-> devices/+/inbox/ping on :\(sourcePort)\n".utf8))
}

for await _ in await UnixSignalsSequence(trapping: .sigterm, .sigint) { break }
await source.disconnect()
await target.disconnect()
await loop.shutdown()
