import DittoProtocol

/// The Ditto errors the bridge itself answers with, when a device cannot answer.
public enum BridgeErrors {
    public static func deviceOffline(_ thingID: ThingID) -> DittoError {
        DittoError(status: 503, error: "bridge:device.offline",
                   message: "The device of thing '\(thingID)' is offline.",
                   description: "The device reported itself offline (status topic or last will). Try again when it is back.")
    }

    public static func deviceBrokerUnavailable() -> DittoError {
        DittoError(status: 503, error: "bridge:devicebroker.unavailable",
                   message: "The bridge has no connection to the device broker.",
                   description: "The bridge reconnects by itself; try again shortly.")
    }

    public static func deliveryFailed(_ reason: String) -> DittoError {
        DittoError(status: 503, error: "bridge:delivery.failed",
                   message: "The device broker did not accept the request: \(reason)",
                   description: "Try again shortly.")
    }

    public static func tooManyPendingRequests(_ capacity: Int) -> DittoError {
        DittoError(status: 503, error: "bridge:requests.toomany",
                   message: "The bridge already waits for \(capacity) device answers.",
                   description: "Try again when fewer requests are pending.")
    }

    public static func shuttingDown() -> DittoError {
        DittoError(status: 503, error: "bridge:shutting.down",
                   message: "The bridge is shutting down and cannot wait for the device's answer.",
                   description: "Try again when the bridge is back.")
    }

    public static func deviceTimeout(_ timeout: Duration) -> DittoError {
        var error = DittoError.timeout(milliseconds: Int64(timeout / .milliseconds(1)))
        error.description = "The device did not answer in time."
        return error
    }
}
