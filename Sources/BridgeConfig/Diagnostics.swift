import Foundation

/// One problem found in a config file, located by file, line, column and key path.
///
/// `description` reads like a compiler message so editors and terminals can jump to it:
/// `Config/bridge.yaml:14:5: uplink[1].thing-id: unknown placeholder {device}; known here: {deviceId}, {namespace}`.
public struct ConfigDiagnostic: Sendable, Hashable, CustomStringConvertible {
    /// Whether the problem stops the bridge from starting.
    public enum Severity: String, Sendable, Hashable {
        /// The file is rejected.
        case error
        /// The file is accepted; `check` prints the warning.
        case warning
    }

    /// Error or warning.
    public var severity: Severity
    /// The config file as the user named it.
    public var file: String
    /// 1-based line; 0 when the problem concerns the whole file (for example an unreadable file).
    public var line: Int
    /// 1-based column (in Unicode scalars, as libyaml counts); 0 when unknown.
    public var column: Int
    /// Where in the document, e.g. `uplink[1].thing-id` or `connections.device.port`; empty for the document root.
    public var keyPath: String
    /// What is wrong.
    public var message: String
    /// What would be right, when there is something useful to say.
    public var hint: String?

    /// Creates a diagnostic; `line`/`column` 0 mean unknown.
    public init(
        severity: Severity = .error, file: String, line: Int, column: Int, keyPath: String, message: String,
        hint: String? = nil
    ) {
        self.severity = severity
        self.file = file
        self.line = line
        self.column = column
        self.keyPath = keyPath
        self.message = message
        self.hint = hint
    }

    public var description: String {
        var text = file
        if line > 0 {
            text += ":\(line)"
            if column > 0 { text += ":\(column)" }
        }
        text += ": "
        if severity == .warning { text += "warning: " }
        if !keyPath.isEmpty { text += "\(keyPath): " }
        text += message
        if let hint, !hint.isEmpty { text += "; \(hint)" }
        return text
    }
}

/// Every error found in a config file (never only the first), thrown by ``BridgeConfiguration/load(path:environment:)``.
public struct ConfigErrors: Error, Sendable, CustomStringConvertible {
    /// The errors, in document order.
    public var errors: [ConfigDiagnostic]
    /// Warnings found along the way; `check` prints them too.
    public var warnings: [ConfigDiagnostic]

    /// Wraps the diagnostics of one file.
    public init(errors: [ConfigDiagnostic], warnings: [ConfigDiagnostic] = []) {
        self.errors = errors
        self.warnings = warnings
    }

    /// One line per error, then one per warning.
    public var description: String {
        (errors + warnings).map(\.description).joined(separator: "\n")
    }
}

/// Collects diagnostics while one file is read.
final class DiagnosticSink {
    let file: String
    private(set) var errors: [ConfigDiagnostic] = []
    private(set) var warnings: [ConfigDiagnostic] = []

    init(file: String) { self.file = file }

    func error(_ location: SourceLocation, _ keyPath: String, _ message: String, hint: String? = nil) {
        errors.append(
            ConfigDiagnostic(
                file: file, line: location.line, column: location.column, keyPath: keyPath, message: message,
                hint: hint))
    }

    func warning(_ location: SourceLocation, _ keyPath: String, _ message: String, hint: String? = nil) {
        warnings.append(
            ConfigDiagnostic(
                severity: .warning, file: file, line: location.line, column: location.column, keyPath: keyPath,
                message: message, hint: hint))
    }

    var sortedErrors: [ConfigDiagnostic] {
        errors.enumerated().sorted { a, b in
            (a.element.line, a.element.column, a.offset) < (b.element.line, b.element.column, b.offset)
        }.map(\.element)
    }

    var sortedWarnings: [ConfigDiagnostic] {
        warnings.enumerated().sorted { a, b in
            (a.element.line, a.element.column, a.offset) < (b.element.line, b.element.column, b.offset)
        }.map(\.element)
    }
}

/// A position in the config file, so the runtime can name the rule's line in its logs.
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
    /// 1-based line, 0 if unknown.
    public var line: Int
    /// 1-based column, 0 if unknown.
    public var column: Int

    /// A 1-based position.
    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    static let unknown = SourceLocation(line: 0, column: 0)

    public var description: String { "\(line):\(column)" }
}

enum Suggestions {
    /// Levenshtein distance over Unicode scalars; config keys are short, so the quadratic cost does not matter.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.lowercased().unicodeScalars)
        let b = Array(b.lowercased().unicodeScalars)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }

    /// The closest candidate when it is close enough to be a plausible typo.
    static func closest(to word: String, in candidates: [String]) -> String? {
        let normalized = word.lowercased().replacingOccurrences(of: "_", with: "-")
        var best: (String, Int)?
        for candidate in candidates {
            if candidate.lowercased() == normalized { return candidate }
            // `lowercase` for `lower`, `dev` for `deviceId`: a shared stem is as telling as a small edit distance.
            if min(candidate.count, normalized.count) >= 4,
                normalized.hasPrefix(candidate.lowercased()) || candidate.lowercased().hasPrefix(normalized)
            {
                return candidate
            }
            let distance = editDistance(normalized, candidate)
            if let current = best, current.1 <= distance { continue }
            best = (candidate, distance)
        }
        guard let best else { return nil }
        let limit = max(2, min(word.count, best.0.count) / 3)
        return best.1 <= limit ? best.0 : nil
    }

    static func didYouMean(_ word: String, in candidates: [String]) -> String? {
        closest(to: word, in: candidates).map { "did you mean '\($0)'?" }
    }
}
