import Foundation
import Logging
import Mosquitto
import UnixSignals

/// The zero-work relay the benchmark measures the bridge against: the same client, the same event loop and
/// the same back pressure as the bridge, but no mapping, no spool and no bookkeeping. Every message read from
/// the source is republished unchanged (bytes, QoS) to `<prefix>/<topic>` on the target, inside the read.
///
/// Usage: mqtt-relay --source-port P --target-port P [--filter F] [--prefix P] [--qos 0|1] [--host H]

/// SAFETY: `paused` is only touched on the relay loop's thread (the clients' handlers and the setup job).
final class Relay: @unchecked Sendable {
    let source: MosquittoClient
    let target: MosquittoClient
    let prefix: String
    let qos: QoS
    var paused = false

    init(source: MosquittoClient, target: MosquittoClient, prefix: String, qos: QoS) {
        self.source = source
        self.target = target
        self.prefix = prefix
        self.qos = qos
    }

    func install() {
        source.setHandlers(message: { [unowned self] message in relay(message) })
        target.setHandlers(message: nil, publishCompleted: { _, _ in }, capacityAvailable: { [unowned self] in
            if paused {
                paused = false
                source.resumeReading()
            }
        })
    }

    func relay(_ message: MQTTMessage) {
        _ = target.publishNow(to: prefix + "/" + message.topic, payload: message.payload, qos: qos, token: 1)
        if !target.canPublishNow, !paused {
            paused = true
            source.pauseReading()
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

let host = argument("--host", "127.0.0.1")
let sourcePort = Int(argument("--source-port", nil)) ?? 1883
let targetPort = Int(argument("--target-port", String(sourcePort))) ?? sourcePort
let filter = argument("--filter", "devices/#")
let prefix = argument("--prefix", "relay")
let qos = QoS(rawValue: UInt8(argument("--qos", "1")) ?? 1) ?? .atLeastOnce
var logger = Logger(label: "mqtt-relay")
logger.logLevel = .warning

let loop = MQTTEventLoop(name: "relay loop")
let source = try MosquittoClient(configuration: MQTTConfiguration(host: host, port: sourcePort, clientID: "mqtt-relay-source"),
                                 logger: logger, eventLoop: loop)
let target = try MosquittoClient(configuration: MQTTConfiguration(host: host, port: targetPort, clientID: "mqtt-relay-target"),
                                 logger: logger, eventLoop: loop)
let relay = Relay(source: source, target: target, prefix: prefix, qos: qos)
await loop.submit { relay.install() }
try await target.connect()
try await source.connect()
try await source.subscribe([Subscription(filter: filter, qos: qos, noLocal: true)])
FileHandle.standardError.write(Data("mqtt-relay: relaying \(filter) from :\(sourcePort) to \(prefix)/... on :\(targetPort)\n".utf8))

for await _ in await UnixSignalsSequence(trapping: .sigterm, .sigint) { break }
await source.disconnect()
await target.disconnect()
await loop.shutdown()
