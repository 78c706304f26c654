import Foundation
import MosquittoTestSupport

#if canImport(Glibc)
import Glibc
#endif

// MARK: - HTTP

struct HTTPResponse: Sendable {
    var status: Int
    var body: String
}

/// A plain HTTP/1.1 GET over a POSIX socket, as curl or Prometheus would ask the operations endpoint.
/// Blocking I/O runs on a thread of its own with a 5 s socket timeout.
enum HTTPClient {
    static func get(_ path: String, port: Int) async throws -> HTTPResponse {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try blockingGet(path, port: port) }) }.start()
        }
    }

    private static func blockingGet(_ path: String, port: Int) throws -> HTTPResponse {
        let fd = try Loopback.connect(port: port)
        defer { close(fd) }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n\r\n".utf8)
        let sent = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == request.count else { throw TestFailure("send: errno \(errno)") }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 { throw TestFailure("recv: \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            received += buffer[0..<n]
        }
        let text = String(decoding: received, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw TestFailure("malformed HTTP response: \(text)") }
        let statusLine = text[..<split.lowerBound].prefix { $0 != "\r" }.split(separator: " ")
        guard statusLine.count >= 2, statusLine[0] == "HTTP/1.1", let status = Int(statusLine[1]) else {
            throw TestFailure("malformed status line: \(text.prefix(80))")
        }
        return HTTPResponse(status: status, body: String(text[split.upperBound...]))
    }
}

// MARK: - Prometheus text format

/// One sample of a scrape: `name{label="value",...} value`.
struct MetricSample: Sendable, Hashable {
    var name: String
    var labels: [String: String]
    var value: Double
}

/// A `/metrics` body in Prometheus text format 0.0.4, parsed line by line: `# TYPE` lines give each family's
/// type, other `#` lines are comments, every other non-empty line is `name[{labels}] value [timestamp]`.
/// Anything else is an error, so a malformed exposition fails the test instead of reading as zero.
struct MetricsScrape: Sendable {
    var samples: [MetricSample] = []
    /// Family name -> `counter`, `gauge`, `histogram`, ...
    var types: [String: String] = [:]

    init(parsing text: String) throws {
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
            if line.hasPrefix("#") {
                let words = line.split(separator: " ", omittingEmptySubsequences: true)
                if words.count >= 4, words[1] == "TYPE" { types[String(words[2])] = String(words[3]) }
                continue
            }
            do {
                samples.append(try Self.sample(Array(line.unicodeScalars)))
            } catch {
                throw TestFailure("/metrics line \(index + 1) '\(line)': \(error)")
            }
        }
    }

    /// The sum of every sample of `name` whose labels include `labels` (other labels, such as `rule`, summed
    /// over); 0 when there is none (a counter that was never incremented has no series yet).
    func sum(_ name: String, _ labels: [String: String] = [:]) -> Double {
        matching(name, labels).reduce(0) { $0 + $1.value }
    }

    func matching(_ name: String, _ labels: [String: String] = [:]) -> [MetricSample] {
        samples.filter { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }
    }

    /// Every sample of a counter family (`# TYPE ... counter`), keyed by name and sorted labels.
    var counters: [String: Double] {
        var result: [String: Double] = [:]
        for sample in samples where types[sample.name] == "counter" {
            result[Self.key(sample)] = sample.value
        }
        return result
    }

    static func key(_ sample: MetricSample) -> String {
        sample.name + "{" + sample.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\"\($0.value)\"" }.joined(separator: ",") + "}"
    }

    private static func sample(_ scalars: [Unicode.Scalar]) throws -> MetricSample {
        var i = 0
        func isNameStart(_ c: Unicode.Scalar) -> Bool { c == "_" || c == ":" || ("a"..."z").contains(c) || ("A"..."Z").contains(c) }
        func isName(_ c: Unicode.Scalar) -> Bool { isNameStart(c) || ("0"..."9").contains(c) }
        func name() throws -> String {
            guard i < scalars.count, isNameStart(scalars[i]) else { throw TestFailure("expected a name at \(i)") }
            var text = ""
            while i < scalars.count, isName(scalars[i]) {
                text.unicodeScalars.append(scalars[i])
                i += 1
            }
            return text
        }
        func skipSpaces() { while i < scalars.count, scalars[i] == " " || scalars[i] == "\t" { i += 1 } }

        let metric = try name()
        var labels: [String: String] = [:]
        if i < scalars.count, scalars[i] == "{" {
            i += 1
            skipSpaces()
            while i < scalars.count, scalars[i] != "}" {
                let label = try name()
                skipSpaces()
                guard i + 1 < scalars.count, scalars[i] == "=", scalars[i + 1] == "\"" else {
                    throw TestFailure("expected =\" after label \(label)")
                }
                i += 2
                var value = ""
                while true {
                    guard i < scalars.count else { throw TestFailure("unterminated value of label \(label)") }
                    let c = scalars[i]
                    i += 1
                    if c == "\"" { break }
                    if c == "\\" {
                        guard i < scalars.count else { throw TestFailure("dangling escape") }
                        let escaped = scalars[i]
                        i += 1
                        switch escaped {
                        case "n": value += "\n"
                        case "\\": value += "\\"
                        case "\"": value += "\""
                        default: throw TestFailure("invalid escape \\\(escaped)")
                        }
                    } else {
                        value.unicodeScalars.append(c)
                    }
                }
                guard labels.updateValue(value, forKey: label) == nil else { throw TestFailure("label \(label) twice") }
                skipSpaces()
                if i < scalars.count, scalars[i] == "," {
                    i += 1
                    skipSpaces()
                }
            }
            guard i < scalars.count else { throw TestFailure("unterminated label set") }
            i += 1
        }
        guard i < scalars.count, scalars[i] == " " || scalars[i] == "\t" else { throw TestFailure("expected a space before the value") }
        skipSpaces()
        let rest = String(String.UnicodeScalarView(scalars[i...])).split(separator: " ", omittingEmptySubsequences: true)
        guard (1...2).contains(rest.count) else { throw TestFailure("expected a value and an optional timestamp") }
        let value: Double
        switch rest[0] {
        case "+Inf": value = .infinity
        case "-Inf": value = -.infinity
        case "NaN": value = .nan
        default:
            guard let number = Double(rest[0]) else { throw TestFailure("invalid value '\(rest[0])'") }
            value = number
        }
        if rest.count == 2, Int64(rest[1]) == nil { throw TestFailure("invalid timestamp '\(rest[1])'") }
        return MetricSample(name: metric, labels: labels, value: value)
    }
}
