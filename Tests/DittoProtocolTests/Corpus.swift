import Foundation

/// The Ditto documentation examples copied into `Resources/examples` (see its NOTICE).
enum Corpus {
    struct Example: Sendable {
        /// `<group>/<file>.json`
        let name: String
        let bytes: [UInt8]
    }

    static let examples: [Example] = {
        // Where `.copy("Resources")` lands differs by platform (Linux treats `Resources` as the resource dir).
        let candidates = [
            Bundle.module.resourceURL?.appendingPathComponent("examples"),
            Bundle.module.resourceURL?.appendingPathComponent("Resources/examples"),
            Bundle.module.bundleURL.appendingPathComponent("Resources/examples"),
            Bundle.module.bundleURL.appendingPathComponent("Contents/Resources/Resources/examples"),
        ].compactMap { $0 }
        guard let root = candidates.first(where: { FileManager.default.fileExists(atPath: $0.path) }) else {
            return []
        }
        let manager = FileManager.default
        var result: [Example] = []
        let groups = (try? manager.contentsOfDirectory(atPath: root.path)) ?? []
        for group in groups.sorted() {
            let directory = root.appendingPathComponent(group)
            var isDirectory: ObjCBool = false
            guard manager.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
                continue
            }
            let files = (try? manager.contentsOfDirectory(atPath: directory.path)) ?? []
            for file in files.sorted() where file.hasSuffix(".json") {
                guard let data = manager.contents(atPath: directory.appendingPathComponent(file).path) else { continue }
                result.append(Example(name: "\(group)/\(file)", bytes: [UInt8](data)))
            }
        }
        return result
    }()
}
