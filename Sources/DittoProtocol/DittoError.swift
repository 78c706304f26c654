/// An error in Ditto's own terms: HTTP status, error code (`things:id.invalid`), message, description.
///
/// Every rejection in this module is one of these, so it can be sent back as a Ditto error response
/// (`Envelope.errorResponse`) without translation.
///
/// `description` is Ditto's optional field, so the printable form is `debugDescription`
/// (`String(describing:)` and interpolation use it).
public struct DittoError: Error, Sendable, Hashable, CustomDebugStringConvertible {
    /// HTTP status, e.g. 400.
    public var status: Int
    /// Ditto's error code, e.g. `protocoladapter:unknown.topicpath`.
    public var error: String
    /// Human-readable message.
    public var message: String
    /// Optional longer explanation / hint.
    public var description: String?
    /// Optional link to documentation.
    public var href: String?

    /// An error from its fields.
    public init(status: Int, error: String, message: String, description: String? = nil, href: String? = nil) {
        self.status = status
        self.error = error
        self.message = message
        self.description = description
        self.href = href
    }

    /// The error object Ditto puts into an error response's `value`: `{status, error, message, description, href}`.
    public var errorValue: JSONValue {
        var object = JSONObject()
        object["status"] = .number(JSONNumber(status))
        object["error"] = .string(error)
        object["message"] = .string(message)
        if let description { object["description"] = .string(description) }
        if let href { object["href"] = .string(href) }
        return .object(object)
    }

    /// Reads an error object (`value` of an error response). Ditto requires `error`; a missing `status`
    /// falls back to 500 and a missing `message` to "An unknown error occurred", as Ditto does.
    public init(errorValue: JSONValue) throws(DittoError) {
        guard let object = errorValue.objectValue else {
            throw DittoError.jsonInvalid("The error response value is not a JSON object.")
        }
        guard let code = object["error"]?.stringValue else {
            throw DittoError.jsonFieldMissing("error", in: "error response value")
        }
        self.init(
            status: object["status"]?.intValue ?? 500,
            error: code,
            message: object["message"]?.stringValue ?? "An unknown error occurred",
            description: object["description"]?.stringValue,
            href: object["href"]?.stringValue)
    }
}

extension DittoError {
    /// `[status code] message (description)`.
    public var debugDescription: String {
        var s = "[\(status) \(error)] \(message)"
        if let description { s += " (\(description))" }
        return s
    }
}

// MARK: - Factories (codes and texts as Ditto's exceptions produce them)

extension DittoError {
    /// 400 `protocoladapter:unknown.topicpath`, Ditto's `UnknownTopicPathException`:
    /// "The topic path '<topic>' is not supported." with a parser description such as
    /// "Channel name <x> is unknown." (default "Check if the topic path is correct.").
    public static func unknownTopicPath(_ description: String? = nil, topic: String? = nil) -> DittoError {
        let message = topic.map { "The topic path '\($0)' is not supported." } ?? "The topic path is not supported."
        return DittoError(
            status: 400, error: "protocoladapter:unknown.topicpath", message: message,
            description: description ?? "Check if the topic path is correct.")
    }

    /// 400 `protocoladapter:unknown.topicpath` for a topic that parses but fits no adapter together with
    /// the path: "The topic '<topic>' is not supported in combination with the path '<path>'".
    public static func unknownTopicPath(topic: String, path: String) -> DittoError {
        DittoError(
            status: 400, error: "protocoladapter:unknown.topicpath",
            message: "The topic '\(topic)' is not supported in combination with the path '\(path)'",
            description: "Check if the topic path is correct.")
    }

    /// 400 `protocoladapter:unknown.path`: "The path '<p>' does not correspond to any known command,
    /// response or event."
    public static func unknownPath(_ path: String) -> DittoError {
        DittoError(
            status: 400, error: "protocoladapter:unknown.path",
            message: "The path '\(path)' does not correspond to any known command, response or event.",
            description: "Check if the path is correct.")
    }

    /// 400 `protocoladapter:invalid.path`: "The path '<p>' is not valid.", e.g. a message path that does
    /// not repeat the topic's subject.
    public static func invalidPath(_ path: String, description: String? = nil) -> DittoError {
        DittoError(
            status: 400, error: "protocoladapter:invalid.path", message: "The path '\(path)' is not valid.",
            description: description ?? "Check if the path is correct.")
    }

    /// 400 `protocoladapter:unknown.command`: topic and path name no known command.
    public static func unknownCommand(_ type: String) -> DittoError {
        DittoError(
            status: 400, error: "protocoladapter:unknown.command",
            message: "The command '\(type)' is not supported by the adapter.")
    }

    /// 400 `json.invalid`.
    public static func jsonInvalid(_ message: String, description: String? = nil) -> DittoError {
        DittoError(
            status: 400, error: "json.invalid", message: message,
            description: description ?? "Check if the JSON was valid (e.g. on https://jsonlint.com) and if it was in required format.")
    }

    /// 400 `json.field.missing`.
    public static func jsonFieldMissing(_ field: String, in context: String? = nil) -> DittoError {
        let message: String
        if let context {
            message = "JSON did not include required <\(field)> field in \(context)!"
        } else {
            message = "JSON did not include required </\(field)> field!"
        }
        return DittoError(
            status: 400, error: "json.field.missing", message: message,
            description: "Check if all required JSON fields were set.")
    }

    /// 400 `json.pointer.invalid`.
    public static func jsonPointerInvalid(_ pointer: String, description: String? = nil) -> DittoError {
        DittoError(
            status: 400, error: "json.pointer.invalid", message: "JSON pointer <\(pointer)> is invalid!",
            description: description ?? "Check, for example, if the JSON pointer is not empty.")
    }

    /// 400 `header.invalid`: "The value '<v>' of the header '<k>' is not a valid <type>."
    public static func headerInvalid(name: String, value: String, type: String, description: String? = nil)
        -> DittoError
    {
        DittoError(
            status: 400, error: "header.invalid",
            message: "The value '\(value)' of the header '\(name)' is not a valid \(type).",
            description: description ?? "Verify that the value of the header '\(name)' is valid and try again.")
    }

    /// 431 `headers.too.large`.
    public static func headersTooLarge(limit: Int) -> DittoError {
        DittoError(
            status: 431, error: "headers.too.large",
            message: "The headers are too large.",
            description: "The number of bytes exceeded the maximum allowed value <\(limit)>!")
    }

    /// 413 `messages:payload.toolarge`.
    public static func payloadTooLarge(size: Int, limit: Int) -> DittoError {
        DittoError(
            status: 413, error: "messages:payload.toolarge",
            message: "The size of '\(size)' bytes exceeds the maximal allowed Message size of '\(limit)' bytes.",
            description: "Reduce the size of the Message payload and try again.")
    }

    /// 400 `things:id.invalid`: "Thing ID '<x>' is not valid!"
    public static func thingIDInvalid(_ id: String, description: String? = nil) -> DittoError {
        DittoError(
            status: 400, error: "things:id.invalid", message: "Thing ID '\(id)' is not valid!",
            description: description
                ?? "It must conform to the namespaced entity ID notation (see Ditto documentation)")
    }

    /// Same as `thingIDInvalid`.
    public static func idInvalid(_ id: String, description: String? = nil) -> DittoError {
        thingIDInvalid(id, description: description)
    }

    /// 400 `things:id.notsettable`: the payload's `thingId` differs from the topic's thing.
    public static func thingIDNotSettable() -> DittoError {
        DittoError(
            status: 400, error: "things:id.notsettable",
            message: "The Thing ID in the request body is not equal to the Thing ID in the request URL.",
            description: "Either delete the Thing ID from the request body or use the same Thing ID as in the request URL.")
    }

    /// 400 `acknowledgement:label.invalid`.
    public static func ackLabelInvalid(_ label: String) -> DittoError {
        DittoError(
            status: 400, error: "acknowledgement:label.invalid",
            message: "Acknowledgement label <\(label)> is invalid!",
            description: "An acknowledgement label must conform to the regular expression of Ditto documentation.")
    }

    /// 400 `acknowledgement:label.not.declared`: a connection may only issue the labels its source declares
    /// (`AcknowledgementLabelNotDeclaredException`).
    public static func ackLabelNotDeclared(_ label: String) -> DittoError {
        DittoError(
            status: 400, error: "acknowledgement:label.not.declared",
            message: "Cannot send acknowledgement with label <\(label)>, which is not declared.",
            description: "Each connection may only send acknowledgements whose label matches one declared in its source's 'declaredAcks'.")
    }

    /// 400 `acknowledgement:ditto.acklabel.forbidden`: reserved labels may only be issued by Ditto.
    public static func ackLabelForbidden(_ label: String) -> DittoError {
        DittoError(
            status: 400, error: "acknowledgement:ditto.acklabel.forbidden",
            message: "The Acknowledgement label <\(label)> is reserved for Ditto and must not be issued.",
            description: "Use a label that is not one of twin-persisted, live-response, search-persisted.")
    }

    /// 408 `command.timeout`: "The Command reached the specified timeout of <n>ms."
    public static func timeout(milliseconds: Int64) -> DittoError {
        DittoError(
            status: 408, error: "command.timeout",
            message: "The Command reached the specified timeout of \(milliseconds)ms.",
            description: "Try increasing the command timeout.")
    }

    /// 408 `acknowledgement:request.timeout`.
    public static func acknowledgementRequestTimeout(milliseconds: Int64) -> DittoError {
        DittoError(
            status: 408, error: "acknowledgement:request.timeout",
            message: "The acknowledgement request reached the specified timeout of \(milliseconds)ms.",
            description: "Try increasing the timeout and make sure that the requested acknowledgement is sent back in time.")
    }

    /// 415 `mediatype.unsupported`.
    public static func mediaTypeUnsupported(_ contentType: String?, allowed: [String]) -> DittoError {
        DittoError(
            status: 415, error: "mediatype.unsupported",
            message: "The Media-Type <\(contentType ?? "")> is not supported for this resource.",
            description: "Allowed Media-Types are: <\(allowed.joined(separator: ", "))>.")
    }

    /// 400 `messages:subject.invalid` style error for subjects Ditto's header validator refuses.
    public static func messageSubjectInvalid(_ subject: String) -> DittoError {
        headerInvalid(name: "ditto-message-subject", value: subject, type: "message subject")
    }
}

extension DittoError {
    /// 422 `protocoladapter:illegal.adaptable`: the message names a signal whose model refuses its payload (for
    /// example a response status its type does not admit, or a value that is not the resource), with the model's
    /// reason.
    public static func illegalAdaptable(signal: String, reason: String, description: String? = nil) -> DittoError {
        DittoError(status: 422, error: "protocoladapter:illegal.adaptable",
                   message: "Failed to get Signal of type <\(signal)>: \(reason)",
                   description: description ?? "Check that the payload fits the signal the topic and path name.")
    }
}
