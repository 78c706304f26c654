import Foundation
import Testing

/// The README and `docs/*.md` point at each other and at the repository's files: every relative link must reach
/// an existing file, and every `#anchor` a heading of the file it names (anchors as GitHub makes them).
struct DocumentationLinksTests {
    /// README.md and every Markdown file in docs/, as paths relative to the repository root.
    static func documents() throws -> [String] {
        let docs = try FileManager.default.contentsOfDirectory(atPath: Repository.file("docs").path)
            .filter { $0.hasSuffix(".md") }.sorted().map { "docs/\($0)" }
        return ["README.md"] + docs
    }

    @Test func everyRelativeLinkReachesAFileAndAnchor() throws {
        let documents = try Self.documents()
        #expect(documents.contains("docs/ARCHITECTURE.md"))
        var checked = 0
        for document in documents {
            let text = try Repository.text(document)
            let directory = (document as NSString).deletingLastPathComponent
            for link in MarkdownText.links(in: text) {
                guard !link.contains("://"), !link.hasPrefix("mailto:") else { continue }
                checked += 1
                let parts = link.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
                let path = parts[0].isEmpty
                    ? document
                    : ((directory as NSString).appendingPathComponent(parts[0]) as NSString).standardizingPath
                var isDirectory: ObjCBool = false
                let exists = FileManager.default.fileExists(
                    atPath: Repository.file(path).path, isDirectory: &isDirectory)
                #expect(exists, "\(document): link \(link): \(path) does not exist")
                guard exists, parts.count == 2 else { continue }
                #expect(!isDirectory.boolValue && path.hasSuffix(".md"),
                        "\(document): link \(link): an anchor in \(path), which is not a Markdown file")
                guard !isDirectory.boolValue, path.hasSuffix(".md") else { continue }
                let anchors = MarkdownText.anchors(in: try Repository.text(path))
                #expect(anchors.contains(parts[1]), "\(document): link \(link): \(path) has no heading #\(parts[1])")
            }
        }
        #expect(checked > 50, "only \(checked) relative links found: is the link pattern still right?")
    }

    /// The README's table of contents names every section of the README.
    @Test func theREADMEContentsNameEverySection() throws {
        let readme = try Repository.text("README.md")
        // The paragraph that starts with "**Contents:**".
        let start = try #require(readme.range(of: "\n**Contents:**"))
        let contents = readme[start.upperBound...].components(separatedBy: "\n\n")[0]
        let listed = Set(MarkdownText.links(in: contents).map { $0.drop(while: { $0 != "#" }).dropFirst() }
            .map(String.init))
        #expect(listed.count >= 5, "README.md's contents list \(listed.count) sections")
        for line in readme.split(separator: "\n") where line.hasPrefix("## ") {
            let anchor = MarkdownText.anchor(forHeading: String(line.drop(while: { $0 == "#" })))
            #expect(listed.contains(anchor), "README.md's contents do not list \(line)")
        }
    }

    /// The checker's own rules, on the headings and links these documents use.
    @Test func anchorsAndLinksAsGitHubMakesThem() {
        #expect(MarkdownText.anchor(forHeading: " Reload (SIGHUP)") == "reload-sighup")
        #expect(MarkdownText.anchor(forHeading: " Troubleshooting with `map`") == "troubleshooting-with-map")
        #expect(MarkdownText.anchor(forHeading: " A device message's path") == "a-device-messages-path")
        #expect(MarkdownText.anchor(forHeading: " Uplink: at-least-once") == "uplink-at-least-once")
        #expect(MarkdownText.anchors(in: "# A\n## A\n```\n# not a heading\n```\n") == ["a", "a-1"])
        #expect(MarkdownText.links(in: "[x](a.md#b) `[y](c.md)` [z](https://e.org) ![i](p.png)")
            == ["a.md#b", "https://e.org", "p.png"])
        #expect(MarkdownText.links(in: "```\n[x](in-code.md)\n```\n[y](out.md)") == ["out.md"])
    }
}

/// Just enough Markdown for the checks above: headings, inline links outside code.
enum MarkdownText {
    /// Targets of `[text](target)` and `![alt](target)` outside code blocks and code spans.
    static func links(in text: String) -> [String] {
        var links: [String] = []
        for line in proseLines(text) {
            let prose = withoutCodeSpans(line)
            var rest = prose[...]
            while let close = rest.range(of: "](") {
                let after = rest[close.upperBound...]
                guard let end = after.firstIndex(of: ")") else { break }
                links.append(String(after[..<end]).split(separator: " ").first.map(String.init) ?? "")
                rest = after[after.index(after: end)...]
            }
        }
        return links
    }

    /// Every heading's anchor, with GitHub's `-1`, `-2` suffixes for repeated headings.
    static func anchors(in text: String) -> Set<String> {
        var seen: [String: Int] = [:]
        var anchors = Set<String>()
        for line in proseLines(text) where line.hasPrefix("#") {
            let heading = line.drop(while: { $0 == "#" })
            guard heading.first == " " else { continue }
            let base = anchor(forHeading: String(heading))
            let count = seen[base, default: 0]
            seen[base] = count + 1
            anchors.insert(count == 0 ? base : "\(base)-\(count)")
        }
        return anchors
    }

    /// GitHub's anchor of a heading: lower-cased, punctuation removed, spaces as hyphens.
    static func anchor(forHeading heading: String) -> String {
        let kept = heading.trimmingCharacters(in: .whitespaces).lowercased().unicodeScalars.filter { scalar in
            CharacterSet.alphanumerics.contains(scalar) || scalar == " " || scalar == "-" || scalar == "_"
        }
        return String(String.UnicodeScalarView(kept)).replacingOccurrences(of: " ", with: "-")
    }

    /// Lines outside fenced code blocks.
    private static func proseLines(_ text: String) -> [String] {
        var inFence = false
        var lines: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.trimmingCharacters(in: .whitespaces).hasPrefix("```") {
                inFence.toggle()
                continue
            }
            if !inFence { lines.append(String(line)) }
        }
        return lines
    }

    /// The line with its `code spans` removed.
    private static func withoutCodeSpans(_ line: String) -> String {
        var result = ""
        var inSpan = false
        for character in line {
            if character == "`" {
                inSpan.toggle()
            } else if !inSpan {
                result.append(character)
            }
        }
        return result
    }
}
