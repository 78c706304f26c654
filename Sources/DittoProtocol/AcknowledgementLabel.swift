/// Acknowledgement label rules (`AcknowledgementLabels.java`, `DittoAcknowledgementLabel.java`).
public enum AcknowledgementLabel {
    /// Labels only Ditto may issue.
    public static let reserved: Set<String> = ["twin-persisted", "live-response", "search-persisted"]

    /// Longest label the documentation and schema allow (`[a-zA-Z0-9-_:]{3,100}`); Ditto's code allows 165,
    /// but what we emit stays within the documented bound.
    public static let maximumEmittedLength = 100

    /// Longest label Ditto's code accepts.
    public static let maximumAcceptedLength = 165

    /// Whether `label` matches `[a-zA-Z0-9-_:]{3,max}`, optionally behind a `{{ x:y }}:` placeholder prefix
    /// (`\{\{\s*[a-z]+:[a-z]+\s*}}:`, only when `allowPlaceholder`, as in `requested-acks` / `declaredAcks`).
    public static func isValid(_ label: String, maximumLength: Int = maximumAcceptedLength, allowPlaceholder: Bool = false)
        -> Bool
    {
        let b = Array(label.utf8)
        var i = 0
        if allowPlaceholder && b.count >= 2 && b[0] == UInt8(ascii: "{") && b[1] == UInt8(ascii: "{") {
            i = 2
            func isSpace(_ c: UInt8) -> Bool { c == 0x20 || (c >= 0x09 && c <= 0x0D) }
            func isLower(_ c: UInt8) -> Bool { c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z") }
            while i < b.count && isSpace(b[i]) { i += 1 }
            let firstWord = i
            while i < b.count && isLower(b[i]) { i += 1 }
            guard i > firstWord, i < b.count, b[i] == UInt8(ascii: ":") else { return false }
            i += 1
            let secondWord = i
            while i < b.count && isLower(b[i]) { i += 1 }
            guard i > secondWord else { return false }
            while i < b.count && isSpace(b[i]) { i += 1 }
            guard i + 3 <= b.count, b[i] == UInt8(ascii: "}"), b[i + 1] == UInt8(ascii: "}"),
                b[i + 2] == UInt8(ascii: ":")
            else { return false }
            i += 3
        }
        let count = b.count - i
        guard count >= 3 && count <= maximumLength else { return false }
        return b[i...].allSatisfy { isLabelByte($0) }
    }

    @inline(__always)
    static func isLabelByte(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
            || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: "-") || c == UInt8(ascii: "_")
            || c == UInt8(ascii: ":")
    }

    /// Checks a label the bridge is about to issue: reserved labels → `acknowledgement:ditto.acklabel.forbidden`,
    /// anything not matching `[a-zA-Z0-9-_:]{3,100}` (optionally behind the `{{connection:id}}:` placeholder
    /// Ditto resolves for connections) → `acknowledgement:label.invalid`.
    public static func validateForIssuing(_ label: String) throws(DittoError) {
        if reserved.contains(label) { throw DittoError.ackLabelForbidden(label) }
        guard isValid(label, maximumLength: maximumEmittedLength, allowPlaceholder: true) else {
            throw DittoError.ackLabelInvalid(label)
        }
    }

    /// Ditto's rule for acknowledgements a connection sends: each label (the topic's, or every label of an
    /// aggregated acknowledgement's `value`) must be one the connection declares (`declaredAcks`, with
    /// `{{connection:id}}:` resolved to `connectionID`); otherwise `acknowledgement:label.not.declared`.
    public static func requireDeclared(
        _ envelope: Envelope, declared: some Collection<String>, connectionID: String
    ) throws(DittoError) {
        guard envelope.topic.criterion == .acks else { return }
        let resolved = Set(declared.map { resolvingConnectionPlaceholder($0, connectionID: connectionID) })
        let labels: [String]
        if let label = envelope.topic.subject {
            labels = [label]
        } else {
            labels = envelope.value?.objectValue?.keys ?? []
        }
        for label in labels where !resolved.contains(label) {
            throw DittoError.ackLabelNotDeclared(label)
        }
    }

    /// `{{connection:id}}:x` (any spacing inside the braces) as Ditto resolves it for a connection.
    static func resolvingConnectionPlaceholder(_ label: String, connectionID: String) -> String {
        let scalars = Array(label.unicodeScalars)
        guard scalars.count > 2, scalars[0] == "{", scalars[1] == "{" else { return label }
        var i = 2
        var inner = ""
        while i + 2 < scalars.count, !(scalars[i] == "}" && scalars[i + 1] == "}" && scalars[i + 2] == ":") {
            if !scalars[i].properties.isWhitespace { inner.unicodeScalars.append(scalars[i]) }
            i += 1
        }
        guard i + 2 < scalars.count, inner == "connection:id" else { return label }
        var rest = ""
        rest.unicodeScalars.append(contentsOf: scalars[(i + 3)...])
        return connectionID + ":" + rest
    }
}
