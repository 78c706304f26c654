import Foundation
import MosquittoTestSupport
import Synchronization
#if canImport(Glibc)
    import Glibc
#endif

// Helpers of SystemdUnitTests and NginxTests. Names start with `SN` or name the systemd/nginx thing they stand
// for, so they do not clash with the other suites of this target.

// MARK: - Files and processes

enum SNRepository {
    /// The package root, from this file's place in `Tests/DeploymentTests`.
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func text(_ path: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }
}

/// A temp directory for one test, removed by ``remove()``; kept (and printed) when the test failed.
struct SNTempDirectory {
    let url: URL

    init(_ prefix: String) throws {
        // Short: a unix socket path (sun_path) holds 108 bytes.
        url = URL(fileURLWithPath: "/tmp").appendingPathComponent("\(prefix)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    var path: String { url.path }

    func file(_ name: String) -> String { url.appendingPathComponent(name).path }

    func write(_ text: String, to name: String) throws -> String {
        let path = file(name)
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func remove() { try? FileManager.default.removeItem(at: url) }
}

/// How a child process ended.
struct SNExit: Equatable, CustomStringConvertible {
    var status: Int32
    var signaled: Bool

    /// The status a shell (and systemd's `status=`) shows: 128 + signal for a process killed by a signal,
    /// 159 for SIGSYS, the filter's kill.
    var shellStatus: Int32 { signaled ? 128 + status : status }

    var description: String { signaled ? "killed by signal \(status) (shell status \(shellStatus))" : "exit \(status)" }
}

/// A child process with its output in a file; started with an empty signal mask (the test runner's threads block
/// SIGTERM and SIGHUP, and a child inherits the mask).
final class SNProcess: Sendable {
    let logPath: String
    private let process: ChildProcess

    init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
         directory: String? = nil, logPath: String) throws {
        self.logPath = logPath
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process = try ChildProcess(executable, arguments, environment: environment, directory: directory,
                                   standardOutput: .file(logPath), standardError: .standardOutput)
    }

    /// Runs a command to its end on a thread of its own.
    static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil,
                    directory: String? = nil, logPath: String, timeout: Duration = .seconds(60)) async throws
        -> (exit: SNExit, output: String)
    {
        let child = try SNProcess(executable, arguments, environment: environment, directory: directory, logPath: logPath)
        let exit = await child.waitForExit(timeout: timeout)
        return (exit, child.output)
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }
    var output: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func signal(_ signal: Int32) {
        process.signal(signal)
    }

    /// Waits for the exit; SIGKILL after `timeout` (then the exit says so).
    func waitForExit(timeout: Duration) async -> SNExit {
        var termination = await process.waitForExit(timeout: timeout)
        if termination == nil {
            process.signal(SIGKILL)
            termination = await process.waitForExit()
        }
        switch termination! {
        case .exited(let status): return SNExit(status: status, signaled: false)
        case .signalled(let signal): return SNExit(status: signal, signaled: true)
        }
    }

    /// SIGKILL if still running (cleanup after a failed test), and wait.
    func kill9() {
        process.kill9()
    }
}

// MARK: - HTTP over a socket

/// One HTTP/1.1 exchange over a fresh loopback connection, as curl would send it.
struct SNHTTPResponse: Sendable {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: String

    func header(_ name: String) -> String? { headers.first { $0.name.lowercased() == name.lowercased() }?.value }
}

enum SNHTTP {
    static func request(_ method: String, _ path: String, port: Int, headers: [(String, String)] = [],
                        body: String? = nil) async throws -> SNHTTPResponse {
        try await onOwnThread { try blocking(method, path, port: port, headers: headers, body: body) }
    }

    static func basic(_ user: String, _ password: String) -> (String, String) {
        ("Authorization", "Basic " + Data("\(user):\(password)".utf8).base64EncodedString())
    }

    private static func blocking(_ method: String, _ path: String, port: Int, headers: [(String, String)],
                                 body: String?) throws -> SNHTTPResponse {
        let fd = try Loopback.connect(port: port)
        defer { close(fd) }
        var text = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        if let body { text += "Content-Length: \(body.utf8.count)\r\n" }
        text += "\r\n" + (body ?? "")
        let request = Array(text.utf8)
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw TestFailure("send to 127.0.0.1:\(port): errno \(errno)") }
            sent += n
        }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { break }
            guard n > 0 else { throw TestFailure("recv from 127.0.0.1:\(port): errno \(errno)") }
            received += buffer[0..<n]
        }
        let whole = String(decoding: received, as: UTF8.self)
        guard let end = whole.range(of: "\r\n\r\n") else { throw TestFailure("no HTTP header in: \(whole)") }
        let lines = whole[..<end.lowerBound].components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else {
            throw TestFailure("bad status line: \(lines[0])")
        }
        let parsed = lines.dropFirst().compactMap { line -> (name: String, value: String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        return SNHTTPResponse(status: status, headers: parsed, body: String(whole[end.upperBound...]))
    }
}

// MARK: - systemd: the unit file

/// A unit file's `Key=value` settings in order, as systemd reads them (comments, sections, `\` continuations).
struct SystemdUnit {
    struct Setting {
        var section: String
        var key: String
        var value: String
    }

    let settings: [Setting]

    init(settings: [Setting]) { self.settings = settings }

    init(text: String) throws {
        var section = ""
        var result: [Setting] = []
        var pending = ""
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            var line = raw.trimmingCharacters(in: .whitespaces)
            if pending.isEmpty, line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasSuffix("\\") {
                line.removeLast()
                pending += line + " "
                continue
            }
            line = pending + line
            pending = ""
            if line.hasPrefix("[") {
                guard line.hasSuffix("]") else { throw TestFailure("unit file: bad section line '\(line)'") }
                section = String(line.dropFirst().dropLast())
                continue
            }
            guard let equals = line.firstIndex(of: "=") else { throw TestFailure("unit file: no '=' in '\(line)'") }
            result.append(Setting(section: section,
                                  key: line[..<equals].trimmingCharacters(in: .whitespaces),
                                  value: line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)))
        }
        settings = result
    }

    /// Every value of `key` in `[Service]`, in order.
    func values(_ key: String) -> [String] {
        settings.filter { $0.section == "Service" && $0.key == key }.map(\.value)
    }

    /// The last value of a boolean setting (systemd: the last assignment wins).
    func flag(_ key: String) -> Bool {
        guard let value = values(key).last?.lowercased() else { return false }
        return ["yes", "true", "on", "1"].contains(value)
    }

    /// The single command line of `key` split into words. Command prefixes (`-`, `@`, `+`, `!`, `:`) and quoting
    /// are not needed by the shipped unit, and a line with them is an error here rather than a wrong reading.
    func commandLine(_ key: String) throws -> [String] {
        let lines = values(key)
        guard lines.count == 1, let line = lines.first else {
            throw TestFailure("\(key)= appears \(lines.count) times; the test runs exactly one")
        }
        guard let first = line.first, first == "/" else {
            throw TestFailure("\(key)=\(line): prefixes before the absolute path are not reproduced by this test")
        }
        guard !line.contains("\""), !line.contains("'") else {
            throw TestFailure("\(key)=\(line): quoting is not reproduced by this test")
        }
        return line.split(separator: " ").map(String.init)
    }
}

// MARK: - systemd: the seccomp settings, applied with libseccomp

/// systemd's named system call sets (`@system-service`, ...) as the installed systemd lists them with
/// `systemd-analyze syscall-filter`: the same table `SystemCallFilter=` expands.
struct SyscallSets {
    static let systemdAnalyze = "/usr/bin/systemd-analyze"
    let members: [String: [String]]

    static func load() throws -> SyscallSets {
        guard FileManager.default.isExecutableFile(atPath: systemdAnalyze) else {
            throw TestFailure("\(systemdAnalyze) is missing (apt-get install systemd)")
        }
        let text = try TestBroker.run(systemdAnalyze, ["syscall-filter", "--no-pager"])
        var members: [String: [String]] = [:]
        var current: String?
        for raw in text.split(separator: "\n") {
            if raw.hasPrefix("@") {
                let name = raw.trimmingCharacters(in: .whitespaces)
                current = name
                members[name] = []
                continue
            }
            let line = raw.trimmingCharacters(in: .whitespaces)
            // Comments: a set's description, and the closing list of calls in no set.
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard raw.hasPrefix(" "), let current else { current = nil; continue }
            members[current, default: []].append(line)
        }
        guard members["@system-service"]?.isEmpty == false, members["@default"]?.isEmpty == false else {
            throw TestFailure("systemd-analyze syscall-filter listed no @system-service/@default:\n\(text)")
        }
        return SyscallSets(members: members)
    }

    /// The system call names of a set or a single call, nested sets expanded.
    func expand(_ item: String) throws -> Set<String> {
        guard item.hasPrefix("@") else { return [item] }
        guard let list = members[item] else { throw TestFailure("unknown system call set \(item)") }
        var result: Set<String> = []
        for member in list { result.formUnion(try expand(member)) }
        return result
    }
}

/// The seccomp-based settings of a unit, reduced to what the kernel gets. What systemd 252 does with them
/// (src/core/execute.c, src/shared/seccomp-util.c) and this reproduces:
/// - `SystemCallFilter=`: the first assignment without `~` makes an allow list whose other calls kill the
///   process (SIGSYS; no `SystemCallErrorNumber=`), and systemd adds `@default` (execve, exit, futex, clocks, ...)
///   to it; later `~` assignments remove calls, later plain ones add. An empty assignment resets.
/// - `SystemCallArchitectures=native`: calls of another ABI (x86 on x86-64) kill.
/// - `MemoryDenyWriteExecute=yes`: mmap with PROT_WRITE|PROT_EXEC, mprotect/pkey_mprotect with PROT_EXEC,
///   shmat with SHM_EXEC fail with EPERM.
/// - `RestrictAddressFamilies=` (allow list): socket() with another family fails with EAFNOSUPPORT.
/// - `NoNewPrivileges=yes`: prctl(PR_SET_NO_NEW_PRIVS).
struct SeccompPolicy: Encodable {
    struct SyscallFilter: Encodable {
        var allowList: Bool
        var names: [String]
    }

    struct AddressFamilies: Encodable {
        var allowList: Bool
        var families: [String]
    }

    var noNewPrivileges: Bool
    var nativeArchitectureOnly: Bool
    var syscallFilter: SyscallFilter?
    var memoryDenyWriteExecute: Bool
    var addressFamilies: AddressFamilies?

    init(unit: SystemdUnit, sets: SyscallSets) throws {
        noNewPrivileges = unit.flag("NoNewPrivileges")
        memoryDenyWriteExecute = unit.flag("MemoryDenyWriteExecute")

        let architectures = unit.values("SystemCallArchitectures").last ?? ""
        guard architectures == "" || architectures == "native" else {
            throw TestFailure("SystemCallArchitectures=\(architectures): only 'native' is reproduced")
        }
        nativeArchitectureOnly = architectures == "native"
        if let number = unit.values("SystemCallErrorNumber").last, !number.isEmpty, number != "kill" {
            throw TestFailure("SystemCallErrorNumber=\(number) is not reproduced (the filter would kill)")
        }

        var allowList: Bool?
        var names: Set<String> = []
        for value in unit.values("SystemCallFilter") {
            if value.isEmpty {
                allowList = nil
                names = []
                continue
            }
            let invert = value.hasPrefix("~")
            let items = value.dropFirst(invert ? 1 : 0).split(separator: " ").map(String.init)
            if allowList == nil {
                allowList = !invert
                if !invert { names = try sets.expand("@default") }
            }
            for item in items {
                guard !item.contains(":") else {
                    throw TestFailure("SystemCallFilter=\(value): per-call errno (\(item)) is not reproduced")
                }
                let calls = try sets.expand(item)
                // Allow list: plain adds, `~` removes. Deny list: `~` adds, plain removes.
                if invert != (allowList ?? true) { names.formUnion(calls) } else { names.subtract(calls) }
            }
        }
        syscallFilter = allowList.map { SyscallFilter(allowList: $0, names: names.sorted()) }

        if let families = unit.values("RestrictAddressFamilies").last, !families.isEmpty {
            let invert = families.hasPrefix("~")
            let list = families.dropFirst(invert ? 1 : 0).split(separator: " ").map(String.init)
            guard !list.contains("none") else { throw TestFailure("RestrictAddressFamilies=none is not reproduced") }
            addressFamilies = AddressFamilies(allowList: !invert, families: list)
        }
    }

    /// Whether the filter lets `call` through (for assertions about the unit).
    func allows(_ call: String) -> Bool {
        guard let syscallFilter else { return true }
        return syscallFilter.names.contains(call) == syscallFilter.allowList
    }
}

/// Runs a command under a ``SeccompPolicy``, the way systemd's exec step does: set no_new_privs, load the
/// filters, exec. Debian's python3-seccomp (libseccomp's own bindings) through Debian's /usr/bin/python3:
/// libseccomp resolves the names and compiles the BPF exactly as for systemd, no compiler is needed at test
/// time, and the exec keeps the process id (so $MAINPID, signals and /proc/<pid>/status are the bridge's).
enum SeccompSandbox {
    static let python = "/usr/bin/python3"

    static let script = #"""
        import ctypes, json, os, seccomp, signal, socket, sys

        policy = json.load(open(sys.argv[1]))
        command = sys.argv[2:]
        NATIVE = seccomp.Arch.NATIVE

        def number(name):
            # Unknown to libseccomp, or not a call of this architecture (mmap2 on x86-64): systemd skips it too.
            n = seccomp.resolve_syscall(NATIVE, name)
            return n if n >= 0 else None

        def per_arch_filter(default):
            # systemd's seccomp_init_for_arch: other ABIs pass this filter (the architecture filter handles them),
            # and no_new_privs is set on its own, not by libseccomp.
            f = seccomp.SyscallFilter(defaction=default)
            f.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.ALLOW)
            f.set_attr(seccomp.Attr.CTL_NNP, 0)
            return f

        if policy["noNewPrivileges"]:
            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_NO_NEW_PRIVS = 38
            if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                sys.exit("prctl(PR_SET_NO_NEW_PRIVS): errno %d" % ctypes.get_errno())

        if policy["nativeArchitectureOnly"]:
            # seccomp_restrict_archs: no rules, only the native ABI; another ABI gets libseccomp's bad-arch kill.
            f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
            f.set_attr(seccomp.Attr.CTL_NNP, 0)
            f.load()

        families = policy.get("addressFamilies")
        if families:
            # seccomp_restrict_address_families
            f = per_arch_filter(seccomp.ALLOW)
            refuse = seccomp.ERRNO(97)  # EAFNOSUPPORT
            numbers = sorted(getattr(socket, name) for name in families["families"])
            if families["allowList"]:
                f.add_rule_exactly(refuse, "socket", seccomp.Arg(0, seccomp.LT, numbers[0]))
                f.add_rule_exactly(refuse, "socket", seccomp.Arg(0, seccomp.GT, numbers[-1]))
                for af in range(1, numbers[-1]):
                    if af not in numbers:
                        f.add_rule_exactly(refuse, "socket", seccomp.Arg(0, seccomp.EQ, af))
            else:
                for af in numbers:
                    f.add_rule_exactly(refuse, "socket", seccomp.Arg(0, seccomp.EQ, af))
            f.load()

        if policy["memoryDenyWriteExecute"]:
            # seccomp_memory_deny_write_execute (x86-64, arm64: mmap; shmat exists)
            PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000
            refuse = seccomp.ERRNO(1)  # EPERM
            f = per_arch_filter(seccomp.ALLOW)
            f.add_rule_exactly(refuse, "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC | PROT_WRITE, PROT_EXEC | PROT_WRITE))
            f.add_rule_exactly(refuse, "mprotect", seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, PROT_EXEC))
            f.add_rule_exactly(refuse, "pkey_mprotect", seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, PROT_EXEC))
            f.add_rule_exactly(refuse, "shmat", seccomp.Arg(2, seccomp.MASKED_EQ, SHM_EXEC, SHM_EXEC))
            f.load()

        calls = policy.get("syscallFilter")
        if calls:
            # apply_syscall_filter + seccomp_load_syscall_filter_set_raw, loaded last as systemd does.
            if calls["allowList"]:
                f = per_arch_filter(seccomp.KILL_PROCESS)
                action = seccomp.ALLOW
            else:
                f = per_arch_filter(seccomp.ALLOW)
                action = seccomp.KILL_PROCESS
            for name in calls["names"]:
                n = number(name)
                if n is not None:
                    f.add_rule_exactly(action, n)
            f.load()

        # IgnoreSIGPIPE=yes is systemd's default; every other signal starts with its default action.
        for s in (signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        os.execv(command[0], command)
        """#

    /// Writes the script and the policy into `directory`; the command that runs `command` under the policy.
    static func command(_ command: [String], policy: SeccompPolicy, in directory: SNTempDirectory) throws
        -> (executable: String, arguments: [String])
    {
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw TestFailure("\(python) is missing (apt-get install python3 python3-seccomp)")
        }
        let scriptPath = try directory.write(script, to: "systemd-exec.py")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let policyPath = directory.file("seccomp-policy-\(UUID().uuidString.prefix(6)).json")
        try encoder.encode(policy).write(to: URL(fileURLWithPath: policyPath))
        return (python, [scriptPath, policyPath] + command)
    }
}

/// `/proc/<pid>/status` lines of a running process (`Seccomp:`, `NoNewPrivs:`, ...).
func snProcStatus(_ pid: Int32) -> [String: String] {
    let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    var result: [String: String] = [:]
    for line in text.split(separator: "\n") {
        guard let colon = line.firstIndex(of: ":") else { continue }
        result[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    return result
}

// MARK: - systemd: the notify socket

/// systemd's side of `sd_notify`: a datagram socket the service's `$NOTIFY_SOCKET` names; every datagram kept.
final class SNNotifySocket: Sendable {
    let path: String
    private let datagrams = Mutex<[String]>([])
    private let open = Atomic<Bool>(true)

    init(path: String) throws {
        self.path = path
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket(AF_UNIX): errno \(errno)") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8) + [0]
        guard bytes.count <= MemoryLayout.size(ofValue: address.sun_path) else {
            Glibc.close(fd)
            throw TestFailure("\(path): too long for a unix socket path")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(2 + bytes.count)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw TestFailure("bind \(path): \(reason)")
        }
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while open.load(ordering: .relaxed) {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n > 0 { datagrams.withLock { $0.append(String(decoding: buffer[0..<n], as: UTF8.self)) } }
            }
            // Closed by the reader: no recv can then run on a descriptor number already reused elsewhere.
            Glibc.close(fd)
        }.start()
    }

    var received: [String] { datagrams.withLock { $0 } }

    /// Whether a datagram carried the line `state` (e.g. `READY=1`), waiting up to `timeout`.
    func waitFor(_ state: String, timeout: Duration = .seconds(20)) async -> Bool {
        await eventually(timeout: timeout) { received.contains { $0.split(separator: "\n").contains(Substring(state)) } }
    }

    /// Stops the reader (within its 100 ms receive timeout, when it closes the socket) and removes the path.
    func close() {
        open.store(false, ordering: .relaxed)
        unlink(path)
    }
}

// MARK: - nginx and the upstream it proxies to

/// A stand-in for Ditto's gateway: an HTTP server on 127.0.0.1 (Debian's /usr/bin/python3, http.server) that
/// answers every request 200 and records its method, path and headers, one JSON line each.
final class UpstreamStub: Sendable {
    struct Request: Decodable, Sendable {
        var method: String
        var path: String
        var headers: [[String]]

        /// Every value of a header (names compare case-insensitively, as HTTP's do).
        func values(_ name: String) -> [String] {
            headers.filter { $0.first?.lowercased() == name.lowercased() }.compactMap { $0.last }
        }
    }

    static let script = #"""
        import json, sys
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        port, record = int(sys.argv[1]), sys.argv[2]

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with open(record, "a") as out:
                    out.write(json.dumps({"method": self.command, "path": self.path,
                                          "headers": [[k, v] for k, v in self.headers.items()]}) + "\n")
                body = b'{"upstream":"stub"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = answer

            def log_message(self, *args):
                pass

        ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
        """#

    let port: Int
    let recordPath: String
    private let process: SNProcess

    init(in directory: SNTempDirectory) async throws {
        port = try TestBroker.freePort()
        recordPath = directory.file("upstream-requests.jsonl")
        _ = FileManager.default.createFile(atPath: recordPath, contents: nil)
        let scriptPath = try directory.write(Self.script, to: "upstream.py")
        process = try SNProcess(SeccompSandbox.python, [scriptPath, String(port), recordPath],
                                logPath: directory.file("upstream.log"))
        let port = self.port
        let up = await eventually(timeout: .seconds(10)) { (try? await onOwnThread { snAccepts(port) }) == true }
        guard up, process.isRunning else {
            process.kill9()
            throw TestFailure("the upstream stub did not listen on 127.0.0.1:\(port): \(process.output)")
        }
    }

    /// Everything the stub received so far.
    func requests() throws -> [Request] {
        let text = try String(contentsOfFile: recordPath, encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode(Request.self, from: Data($0.utf8)) }
    }

    func stop() async {
        process.signal(SIGTERM)
        _ = await process.waitForExit(timeout: .seconds(5))
    }
}

/// Debian's nginx serving a config file in a directory of its own, in the foreground.
final class NginxServer: Sendable {
    static let executable = "/usr/sbin/nginx"
    let port: Int
    let directory: SNTempDirectory
    private let process: SNProcess

    /// `config`: the whole nginx.conf, already pointed at `port`; files it names relative to itself are
    /// copied into the directory by the caller.
    init(config: String, port: Int, directory: SNTempDirectory) async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.executable) else {
            throw TestFailure("\(Self.executable) is missing (apt-get install nginx-light)")
        }
        self.port = port
        self.directory = directory
        let configPath = try directory.write(config, to: "nginx.conf")
        // -e: the error log before the config is read (the built-in /var/log/nginx would need root's paths).
        let arguments = ["-p", directory.path + "/", "-c", configPath, "-e", directory.file("error.log"),
                         "-g", "daemon off;"]
        let test = try await SNProcess.run(Self.executable, ["-t"] + arguments, logPath: directory.file("nginx-t.log"))
        guard test.exit == SNExit(status: 0, signaled: false) else {
            throw TestFailure("nginx -t rejected the config (\(test.exit)): \(test.output)")
        }
        process = try SNProcess(Self.executable, arguments, logPath: directory.file("nginx.out"))
        let up = await eventually(timeout: .seconds(10)) { (try? await onOwnThread { snAccepts(port) }) == true }
        guard up, process.isRunning else {
            process.kill9()
            let log = (try? String(contentsOfFile: directory.file("error.log"), encoding: .utf8)) ?? ""
            throw TestFailure("nginx did not listen on 127.0.0.1:\(port): \(process.output)\n\(log)")
        }
    }

    func stop() async {
        // SIGTERM: nginx's fast shutdown; the master stops its workers before it exits.
        process.signal(SIGTERM)
        _ = await process.waitForExit(timeout: .seconds(10))
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port` now.
func snAccepts(_ port: Int) -> Bool {
    guard let fd = try? Loopback.connect(port: port, timeoutSeconds: 1) else { return false }
    close(fd)
    return true
}
