public import BridgeConfig
#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

/// What `ditto-mqtt-bridge check` reports about one config file, as text or JSON.
///
/// JSON form (`check --format json`), one document:
/// `{"errors":[{"column":28,"file":"bridge.yaml","hint":"...","key":"uplink[1].thing-id","line":14,"message":"...","severity":"error"}],"file":"bridge.yaml","ok":false,"warnings":[...]}`
/// `line`/`column` are 0 when the problem concerns the whole file; `hint` is left out when there is none.
public struct CheckReport: Sendable {
    /// The config file as named on the command line.
    public var file: String
    /// Errors in document order; empty when the file is usable.
    public var errors: [ConfigDiagnostic]
    /// Warnings in document order.
    public var warnings: [ConfigDiagnostic]
    /// Rule counts of a usable file.
    public var uplinkRules: Int
    /// Rule counts of a usable file.
    public var downlinkRules: Int

    /// Whether the bridge would start with this file.
    public var ok: Bool { errors.isEmpty }

    /// Loads `path` the way `run` does and collects every diagnostic.
    public init(path: String, environment: [String: String] = ProcessInfo.processInfo.environment) {
        file = path
        do {
            let configuration = try BridgeConfiguration.load(path: path, environment: environment)
            errors = []
            warnings = configuration.warnings
            uplinkRules = configuration.uplink.count
            downlinkRules = configuration.downlink.count
        } catch {
            errors = error.errors
            warnings = error.warnings
            uplinkRules = 0
            downlinkRules = 0
        }
    }

    /// Errors and warnings together, by position (as a compiler prints them): the order of `check`'s lines,
    /// which `run` also logs them in (at start and on a refused reload).
    public static func byPosition(errors: [ConfigDiagnostic], warnings: [ConfigDiagnostic]) -> [ConfigDiagnostic] {
        (errors + warnings).enumerated().sorted { a, b in
            (a.element.line, a.element.column, a.offset) < (b.element.line, b.element.column, b.offset)
        }.map(\.element)
    }

    /// Errors and warnings together, by position (as a compiler prints them), then a summary line.
    public var textLines: [String] {
        let all = Self.byPosition(errors: errors, warnings: warnings).map(\.description)
        let summary: String
        if ok {
            summary = "\(file): OK (\(uplinkRules) uplink rules, \(downlinkRules) downlink rules"
                + (warnings.isEmpty ? ")" : ", \(Self.count(warnings.count, "warning")))")
        } else {
            summary = "\(file): \(Self.count(errors.count, "error"))"
                + (warnings.isEmpty ? "" : ", \(Self.count(warnings.count, "warning"))")
        }
        return all + [summary]
    }

    /// The JSON document (sorted keys, one line, no trailing newline).
    public var json: String {
        let document = Document(
            file: file, ok: ok, errors: errors.map(Entry.init), warnings: warnings.map(Entry.init))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Strings, integers and booleans only: encoding cannot fail.
        guard let data = try? encoder.encode(document) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    private static func count(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }

    struct Document: Codable {
        var file: String
        var ok: Bool
        var errors: [Entry]
        var warnings: [Entry]
    }

    struct Entry: Codable {
        var file: String
        var line: Int
        var column: Int
        var key: String
        var message: String
        var hint: String?
        var severity: String

        init(_ diagnostic: ConfigDiagnostic) {
            file = diagnostic.file
            line = diagnostic.line
            column = diagnostic.column
            key = diagnostic.keyPath
            message = diagnostic.message
            hint = diagnostic.hint
            severity = diagnostic.severity.rawValue
        }
    }
}
