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
    /// (only when `allowPlaceholder`, as in `requested-acks` / `declaredAcks`).
    public static func isValid(_ label: String, maximumLength: Int = maximumAcceptedLength, allowPlaceholder: Bool = false)
        -> Bool
    {
        var body = Substring(label)
        if allowPlaceholder, body.hasPrefix("{{") {
            guard let close = body.firstRange(of: "}}:") else { return false }
            let inner = body[body.index(body.startIndex, offsetBy: 2)..<close.lowerBound]
                .trimmingCharacters(inSet: [" ", "\t"])
            let parts = inner.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2,
                parts.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy { $0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z") } })
            else { return false }
            body = body[close.upperBound...]
        }
        let count = body.utf8.count
        guard count >= 3 && count <= maximumLength else { return false }
        return body.utf8.allSatisfy { isLabelByte($0) }
    }

    @inline(__always)
    static func isLabelByte(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
            || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: "-") || c == UInt8(ascii: "_")
            || c == UInt8(ascii: ":")
    }

    /// Checks a label the bridge is about to issue: reserved labels → `acknowledgement:ditto.acklabel.forbidden`,
    /// anything not matching `[a-zA-Z0-9-_:]{3,100}` → `acknowledgement:label.invalid`.
    public static func validateForIssuing(_ label: String) throws(DittoError) {
        if reserved.contains(label) { throw DittoError.ackLabelForbidden(label) }
        guard isValid(label, maximumLength: maximumEmittedLength) else { throw DittoError.ackLabelInvalid(label) }
    }
}

extension Substring {
    func trimmingCharacters(inSet set: Set<Character>) -> Substring {
        var s = self
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return s
    }
}
