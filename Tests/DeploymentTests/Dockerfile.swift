import Foundation

/// The repository's `Dockerfile`, read the way `docker build` reads it: continuation lines joined, comment lines
/// dropped, instructions grouped by stage. The chroot test takes every command it runs from here, so a change to
/// the Dockerfile is what the test runs.
struct Dockerfile {
    struct Instruction {
        /// Upper-cased: `RUN`, `COPY`, `USER`, ...
        let keyword: String
        /// Everything after the keyword, continuation lines joined with a space.
        let arguments: String
        /// Where the instruction starts (1-based).
        let line: Int
    }

    struct Stage {
        /// The `FROM` image, e.g. `debian:bookworm-slim`.
        let base: String
        /// The `AS` name, if any.
        let name: String?
        var instructions: [Instruction] = []

        func all(_ keyword: String) -> [Instruction] { instructions.filter { $0.keyword == keyword } }
        func last(_ keyword: String) -> Instruction? { instructions.last { $0.keyword == keyword } }
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    var stages: [Stage] = []

    init(text: String) throws {
        var pending: (text: String, line: Int)?
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("#") { continue }
            if pending == nil && line.isEmpty { continue }
            var joined = (pending?.text ?? "")
            if !joined.isEmpty && !line.isEmpty { joined += " " }
            if line.hasSuffix("\\") {
                joined += line.dropLast().trimmingCharacters(in: .whitespaces)
                pending = (joined, pending?.line ?? index + 1)
                continue
            }
            joined += line
            try add(joined, line: pending?.line ?? index + 1)
            pending = nil
        }
        if let pending { try add(pending.text, line: pending.line) }
    }

    private mutating func add(_ instruction: String, line: Int) throws {
        let parts = instruction.split(separator: " ", maxSplits: 1)
        guard let first = parts.first else { return }
        let keyword = first.uppercased()
        let arguments = parts.count > 1 ? String(parts[1]).trimmingCharacters(in: .whitespaces) : ""
        if keyword == "FROM" {
            let words = arguments.split(separator: " ").map(String.init)
            guard let base = words.first(where: { !$0.hasPrefix("--") }) else {
                throw Failure(description: "Dockerfile:\(line): FROM without an image")
            }
            let name = words.count >= 3 && words[words.count - 2].uppercased() == "AS" ? words.last : nil
            stages.append(Stage(base: base, name: name))
            return
        }
        guard !stages.isEmpty else { throw Failure(description: "Dockerfile:\(line): \(keyword) before FROM") }
        stages[stages.count - 1].instructions.append(Instruction(keyword: keyword, arguments: arguments, line: line))
    }

    func stage(_ name: String) throws -> Stage {
        guard let stage = stages.first(where: { $0.name == name }) else {
            throw Failure(description: "the Dockerfile has no stage named '\(name)'")
        }
        return stage
    }

    /// An exec-form argument (`["run", "--config", "..."]`) as its words.
    static func execForm(_ text: String) throws -> [String] {
        guard let data = text.data(using: .utf8),
            let words = try? JSONSerialization.jsonObject(with: data) as? [String]
        else {
            throw Failure(description: "'\(text)' is not an exec-form JSON array of strings")
        }
        return words
    }

    /// The command of a `HEALTHCHECK [options] CMD [...]` instruction.
    static func healthcheckCommand(_ instruction: Instruction) throws -> [String] {
        guard let range = instruction.arguments.range(of: "CMD ") else {
            throw Failure(description: "Dockerfile:\(instruction.line): HEALTHCHECK without CMD")
        }
        return try execForm(String(instruction.arguments[range.upperBound...]).trimmingCharacters(in: .whitespaces))
    }

    /// The packages an `apt-get install` in a RUN's shell command names (options and the rest of the `&&` chain
    /// left out).
    static func aptPackages(in command: String) -> [String] {
        var packages: [String] = []
        for step in command.components(separatedBy: "&&") {
            let words = step.split(separator: " ").map(String.init)
            guard let install = words.firstIndex(of: "install"), words[..<install].contains(where: { $0.hasSuffix("apt-get") })
            else { continue }
            packages += words[(install + 1)...].filter { !$0.hasPrefix("-") }
        }
        return packages
    }
}
