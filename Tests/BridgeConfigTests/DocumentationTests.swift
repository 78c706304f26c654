import Foundation
import Testing

@testable import BridgeConfig

/// docs/CONFIG.md is the reference users read; every key the loader accepts must be in it.
struct DocumentationTests {
    @Test func everyAcceptedKeyIsDocumented() throws {
        let docs = try String(
            contentsOf: ConfigFilesTests.configDirectory.deletingLastPathComponent().appendingPathComponent("docs/CONFIG.md"),
            encoding: .utf8)
        for (section, keys) in ConfigSchema.all {
            for key in keys {
                let documented = docs.contains("`\(key)`")
                #expect(documented, "docs/CONFIG.md does not document `\(key)` (\(section))")
            }
        }
    }
}
