import BridgeConfig
import Foundation
import Testing

/// A minimal valid file the broken-config tests change one line of. Line numbers in tests count from the
/// first line of the YAML text.
enum Fixture {
    /// Parses and returns errors (empty if it loaded) and warnings.
    static func diagnose(
        _ yaml: String, environment: [String: String] = [:], baseDirectory: String? = nil
    ) -> (errors: [ConfigDiagnostic], warnings: [ConfigDiagnostic]) {
        do {
            let c = try BridgeConfiguration.parse(
                yaml: yaml, fileName: "test.yaml", environment: environment, baseDirectory: baseDirectory)
            return ([], c.warnings)
        } catch {
            return (error.errors, error.warnings)
        }
    }

    static func load(_ yaml: String, environment: [String: String] = [:]) throws -> BridgeConfiguration {
        try BridgeConfiguration.parse(yaml: yaml, fileName: "test.yaml", environment: environment)
    }
}

/// Expects exactly one error, at `line` (and `column` if given), for `keyPath`, whose text contains `message`.
func expectSingleError(
    _ yaml: String, line: Int, column: Int? = nil, keyPath: String, message: String, hint: String? = nil,
    environment: [String: String] = [:], baseDirectory: String? = nil,
    sourceLocation: Testing.SourceLocation = #_sourceLocation
) {
    let (errors, _) = Fixture.diagnose(yaml, environment: environment, baseDirectory: baseDirectory)
    #expect(errors.count == 1, "expected one error, got: \(errors.map(\.description))", sourceLocation: sourceLocation)
    guard let error = errors.first else { return }
    #expect(error.file == "test.yaml", sourceLocation: sourceLocation)
    #expect(error.line == line, "\(error)", sourceLocation: sourceLocation)
    if let column { #expect(error.column == column, "\(error)", sourceLocation: sourceLocation) }
    #expect(error.keyPath == keyPath, "\(error)", sourceLocation: sourceLocation)
    #expect(error.message.contains(message), "\(error)", sourceLocation: sourceLocation)
    if let hint { #expect(error.hint?.contains(hint) == true, "\(error)", sourceLocation: sourceLocation) }
    #expect(error.description.hasPrefix("test.yaml:\(line):"), sourceLocation: sourceLocation)
}
