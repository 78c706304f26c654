import Foundation
import Testing

@testable import DittoProtocol

/// Ditto's verdicts on thing values, entity ids and response statuses (`Resources/responses`, see its NOTICE):
/// each message there was run through Ditto's own parser, and `Envelope.decode` must agree with it.
@Suite struct ValueRulesTests {
    struct Verdict: Sendable {
        let name: String
        let message: [UInt8]
        let ok: Bool
        let error: String?
        let entity: String?
    }

    static func fixture(_ file: String) -> [Verdict] {
        let candidates = [
            Bundle.module.resourceURL?.appendingPathComponent("responses/\(file)"),
            Bundle.module.resourceURL?.appendingPathComponent("Resources/responses/\(file)"),
            Bundle.module.bundleURL.appendingPathComponent("Resources/responses/\(file)"),
            Bundle.module.bundleURL.appendingPathComponent("Contents/Resources/Resources/responses/\(file)"),
        ].compactMap { $0 }
        guard let url = candidates.first(where: { FileManager.default.fileExists(atPath: $0.path) }),
              let data = FileManager.default.contents(atPath: url.path)
        else { return [] }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap { line in
            guard let row = try? JSON.parse(Array(line.utf8)).objectValue, let message = row["message"],
                  let ditto = row["ditto"]?.objectValue, let ok = ditto["ok"]?.boolValue
            else { return nil }
            return Verdict(name: row["name"]?.stringValue ?? "", message: JSON.serialize(message), ok: ok,
                           error: ditto["error"]?.stringValue, entity: ditto["entity"]?.stringValue)
        }
    }

    /// Where `Envelope.decode` knowingly differs from Ditto (by name prefix), with the reason.
    static let knownDifferences: [(prefix: String, reason: String)] = [
        // Ditto's DeleteFeaturePropertiesResponse reads any status; its type's own status is 204, as for every delete.
        ("probe1: resp-delete-/features/f/properties-", "stricter: a delete response has status 204"),
        ("probe2: modify-201 /:created", "`_created` timestamps are not modelled"),
        ("probe2: create-201 /:created", "`_created` timestamps are not modelled"),
        ("probe2: modify-cmd /:created", "`_created` timestamps are not modelled"),
        ("probe2: merge-cmd /:created", "`_created` timestamps are not modelled"),
        ("probe2: created-ev /:created", "`_created` timestamps are not modelled"),
        ("probe2: modified-ev /:created", "`_created` timestamps are not modelled"),
        ("probe3: merge-cmd / {\"a\": 1}", "which members a merge patch of a whole thing may have is not modelled"),
    ]

    static func isKnownDifference(_ name: String) -> Bool {
        knownDifferences.contains { name.hasPrefix($0.prefix) }
    }

    @Test func everyVerdictHolds() {
        let verdicts = Self.fixture("value-rules.jsonl")
        #expect(verdicts.count == 1607)
        var disagreements: [String] = []
        for verdict in verdicts where !Self.isKnownDifference(verdict.name) {
            let text = String(decoding: verdict.message, as: UTF8.self)
            do {
                let envelope = try Envelope.decode(verdict.message)
                if !verdict.ok {
                    disagreements.append("\(verdict.name): accepted, Ditto: \(verdict.error ?? "")\n    \(text)")
                } else if let entity = verdict.entity, envelope.entityThingID?.description != entity {
                    disagreements.append("\(verdict.name): entity \(envelope.entityThingID?.description ?? "nil"), Ditto: \(entity)\n    \(text)")
                }
            } catch {
                if verdict.ok {
                    disagreements.append("\(verdict.name): refused \(error.error) (\(error.message)), Ditto accepts\n    \(text)")
                } else if error.error != verdict.error {
                    disagreements.append("\(verdict.name): \(error.error) (\(error.message)), Ditto: \(verdict.error ?? "")\n    \(text)")
                }
            }
        }
        #expect(disagreements.isEmpty, "\(disagreements.count) disagreements:\n\(disagreements.joined(separator: "\n"))")
    }
}
