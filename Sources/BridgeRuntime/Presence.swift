import BridgeConfig
import BridgeMapping
import DittoProtocol
import Foundation
import Logging

/// Devices' status topics: which devices said they are offline (the downlink answers their requests at once),
/// and the `ConnectionStatus` feature updates for Ditto. Loop thread only.
final class Presence {
    private let context: PlaneContext
    /// Devices (by ``presenceKey(_:_:)``) whose status topic last said offline.
    private var offline: Set<String> = []

    init(context: PlaneContext) {
        self.context = context
    }

    /// Devices are keyed by the values the status topic captures (e.g. `deviceId`), which downlink routes
    /// capture from the thing ID under the same names.
    static func presenceKey(_ placeholders: [String], _ variables: [String: String]) -> String? {
        var parts: [String] = []
        for name in placeholders {
            guard let value = variables[name] else { return nil }
            parts.append(name + "=" + value)
        }
        return parts.joined(separator: "\u{0}")
    }

    /// A device's topic values for the log, `name=value` sorted by name (`deviceId=lamp`), not Swift's
    /// dictionary syntax.
    static func describe(_ variables: [String: String]) -> String {
        variables.filter { $0.key != "topic" }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }

    /// Whether the device a route's values name last said it is offline.
    func isOffline(_ variables: [String: String]) -> Bool {
        guard !offline.isEmpty, let status = context.configuration.deviceStatus,
              let key = Self.presenceKey(status.topic.placeholders, variables)
        else { return false }
        return offline.contains(key)
    }

    /// A message on a status topic.
    func update(_ status: DeviceStatusSettings, variables: [String: String], payload: [UInt8]) {
        guard let key = Self.presenceKey(status.topic.placeholders, variables) else { return }
        let value = String(decoding: payload, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let online = !payload.isEmpty && !status.offlinePayloads.contains(value)
        if online { offline.remove(key) } else { offline.insert(key) }
        context.logger.info("device presence", metadata: ["device": "\(Self.describe(variables))", "online": "\(online)"])
        if let connectionStatus = status.connectionStatus { sendConnectionStatus(connectionStatus, variables, online: online) }
    }

    private func sendConnectionStatus(_ settings: ConnectionStatusSettings, _ variables: [String: String], online: Bool) {
        var values = variables
        let configuration = context.configuration
        if values["namespace"] == nil, let namespace = configuration.defaults.namespace { values["namespace"] = namespace }
        do {
            let thingID = try ThingID(try settings.thingID.render(values))
            let update = ConnectionStatus.update(thingID: thingID, featureID: settings.featureID, online: online,
                                                 now: context.timestamp(), correlationID: CorrelationID.generate())
            context.publishToDitto(update, topic: try DittoPublication.render(configuration.ditto.publishTopic, for: thingID))
            context.metrics.increment("presence.published")
        } catch {
            context.metrics.increment("presence.dropped")
            context.logger.warning("ConnectionStatus not sent", metadata: [
                "device": "\(Self.describe(variables))", "reason": "\(error)",
            ])
        }
    }
}
