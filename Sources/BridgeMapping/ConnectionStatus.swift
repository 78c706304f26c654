import BridgeConfig
public import DittoProtocol

/// The `ConnectionStatus` feature Ditto's own connection-status mapping keeps on a thing: `readySince` when the
/// device came online, `readyUntil` far in the future while it is online and the moment it went offline after.
/// The bridge sends it as twin `modify` commands through the Ditto connection (the connection's subject needs
/// WRITE on `thing:/features/<feature>` in the thing's policy).
public enum ConnectionStatus {
    /// Ditto's definition of the feature.
    public static let definition = "org.eclipse.ditto:ConnectionStatus:1.0.0"
    /// What `readyUntil` says while a device is online (as in Ditto's ConnectionStatus mapper).
    public static let distantFuture = "9999-12-31T23:59:59Z"

    /// Online: the whole feature, `readySince` now and `readyUntil` open. Offline: only `readyUntil`, so that
    /// `readySince` keeps when the device came.
    public static func update(thingID: ThingID, featureID: String, online: Bool, now: String,
                              correlationID: String) -> Envelope {
        var headers = DittoHeaders()
        headers.correlationID = correlationID
        headers[ReservedHeaders.responseRequired] = "false"
        let path: String
        let value: JSONValue
        if online {
            path = "/features/\(featureID)"
            value = .object(JSONObject([
                ("definition", .array([.string(definition)])),
                ("properties", .object(JSONObject([
                    ("status", .object(JSONObject([("readySince", .string(now)), ("readyUntil", .string(distantFuture))]))),
                ]))),
            ]))
        } else {
            path = "/features/\(featureID)/properties/status/readyUntil"
            value = .string(now)
        }
        return Envelope(topic: .twinCommand(thingID: thingID, action: .modify), headers: headers, path: path, value: value)
    }
}
