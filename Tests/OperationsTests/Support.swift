import Foundation
import Logging
import MosquittoTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A response read off the wire by ``HTTPProbe``.
struct HTTPProbeResponse {
    var status: Int
    var headers: [String: String]
    var body: String
}

enum HTTPProbeError: Error, CustomStringConvertible {
    case connect(String)
    case io(String)
    case malformed(String)

    var description: String {
        switch self {
        case .connect(let m): return "connect: \(m)"
        case .io(let m): return "io: \(m)"
        case .malformed(let m): return "malformed response: \(m)"
        }
    }
}

/// A deliberately independent HTTP/1.1 client over POSIX sockets, as curl or Prometheus would
/// talk to the endpoint. Blocking I/O runs on its own thread with a 30 s socket timeout, never on the
/// cooperative pool the server needs.
enum HTTPProbe {
    static func get(_ path: String, port: Int, method: String = "GET") async throws -> HTTPProbeResponse {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result { try blockingRequest(method: method, path: path, port: port) })
            }
            thread.start()
        }
    }

    /// Whether a TCP connect to 127.0.0.1:`port` succeeds.
    static func canConnect(port: Int) async -> Bool {
        await withCheckedContinuation { continuation in
            Thread {
                let fd = try? connect(port: port)
                if let fd { close(fd) }
                continuation.resume(returning: fd != nil)
            }.start()
        }
    }

    private static func connect(port: Int) throws -> Int32 {
        do {
            // The endpoint answers in milliseconds; the generous bound is for the parallel run, whose other
            // tests can keep the server's tasks off the cooperative pool (two threads here) for seconds.
            return try Loopback.connect(port: port, timeoutSeconds: 30)
        } catch {
            throw HTTPProbeError.connect(error.description)
        }
    }

    private static func blockingRequest(method: String, path: String, port: Int) throws -> HTTPProbeResponse {
        let fd = try connect(port: port)
        defer { close(fd) }
        let request = Array("\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n\r\n".utf8)
        let sent = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == request.count else { throw HTTPProbeError.io("send: \(errno)") }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 { throw HTTPProbeError.io("recv: \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            received += buffer[0..<n]
        }
        let text = String(decoding: received, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw HTTPProbeError.malformed(text) }
        let head = text[..<split.lowerBound].components(separatedBy: "\r\n")
        let statusParts = head[0].split(separator: " ")
        guard statusParts.count >= 2, statusParts[0] == "HTTP/1.1", let status = Int(statusParts[1]) else {
            throw HTTPProbeError.malformed(head[0])
        }
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { throw HTTPProbeError.malformed(line) }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return HTTPProbeResponse(status: status, headers: headers, body: String(text[split.upperBound...]))
    }
}

/// A value tests flip while a server reads it from another task.
final class Flag<Value: Sendable>: Sendable {
    private let state: Mutex<Value>
    init(_ value: Value) { state = Mutex(value) }
    var value: Value {
        get { state.withLock { $0 } }
        set { state.withLock { $0 = newValue } }
    }
}

/// Lines written by a log handler under test.
final class LineCollector: Sendable {
    private let state = Mutex<[String]>([])
    func append(_ line: String) { state.withLock { $0.append(line) } }
    var lines: [String] { state.withLock { $0 } }
}

extension Logger {
    /// Quiet unless a test fails in a way worth reading.
    static let test: Logger = {
        var logger = Logger(label: "operations-tests", factory: { _ in SwiftLogNoOpLogHandler() })
        logger.logLevel = .critical
        return logger
    }()
}

/// The repository root, from this file's path (tests run from anywhere).
enum Repository {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func file(_ relative: String) -> URL { root.appendingPathComponent(relative) }

    static func text(_ relative: String) throws -> String {
        try String(contentsOf: file(relative), encoding: .utf8)
    }
}
