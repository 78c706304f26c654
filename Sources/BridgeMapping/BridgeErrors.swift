public import DittoProtocol

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

    /// A device answer the bridge cannot turn into the response the request asks for (no value for a retrieve,
    /// a value that is not the resource, another thing's): Ditto would refuse the response or route it elsewhere,
    /// so the requester gets this instead of its timeout. `dittoError`: why Ditto would refuse it.
    public static func deviceReplyInvalid(_ message: String, dittoError: DittoError? = nil) -> DittoError {
        var description = "Devices answer with the resource the command's path names: an object for a thing, its "
            + "attributes, features or a feature, a non-empty array of definitions for a feature definition, any JSON "
            + "for an attribute or property; a thing with its own thingId."
        if let dittoError { description = "Ditto would refuse it: [\(dittoError.error)] \(dittoError.message). " + description }
        return DittoError(status: 502, error: "bridge:device.reply.invalid", message: message, description: description)
    }
}
