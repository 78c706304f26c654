import Foundation
import MosquittoTestSupport

/// The Dockerfile's runtime stage as a directory tree: `debootstrap --variant=minbase` of the stage's Debian
/// release (what `debian:<release>-slim` is made from), the stage's `RUN` lines run in it by `chroot`, its
/// `COPY` lines copied in, `USER` and `WORKDIR` applied to every command run as the image's user.
struct ImageRoot {
    static let binary = "/usr/local/bin/ditto-mqtt-bridge"
    /// What a container's PATH is in Debian's images.
    static let path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// Holds `root/` and the build stage's `/out`; removed by ``remove()``.
    let directory: URL
    var root: URL { directory.appendingPathComponent("root") }
    /// The `USER` of the runtime stage as `uid:gid`, resolved in the image's `/etc/passwd`.
    var user: String
    /// The last `WORKDIR` of the runtime stage.
    var workingDirectory: String
    /// The `ENV` lines of the runtime stage.
    var imageEnvironment: [String: String]

    /// The build stage's binary and the runtime stage's tree.
    static func build(from file: Dockerfile) async throws -> ImageRoot {
        let directory = URL(fileURLWithPath: "/var/tmp/ditto-mqtt-bridge-image-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var image = ImageRoot(directory: directory, user: "0:0", workingDirectory: "/", imageEnvironment: [:])
        do {
            let out = try await buildStage(file.stage("build"), into: directory)
            try await image.bootstrap(base: file.stage("runtime").base)
            try await image.apply(file.stage("runtime"), buildOutput: out)
        } catch {
            image.remove()
            throw error
        }
        return image
    }

    /// Runs the build stage's `RUN` lines that build with `swift build` on this machine, in the repository, with
    /// two mechanical changes: SwiftPM's scratch path is `.build-image` (the test runner holds `.build`), and
    /// `/out` is a directory of this test's.
    private static func buildStage(_ stage: Dockerfile.Stage, into directory: URL) async throws -> URL {
        let out = directory.appendingPathComponent("out")
        let scratch = Repository.file(".build-image").path
        let runs = stage.all("RUN").filter { $0.arguments.contains("swift build") }
        guard !runs.isEmpty else { throw TestFailure("the build stage has no RUN with swift build") }
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = "/opt/swift/usr/bin:" + (environment["PATH"] ?? "/usr/bin:/bin")
        for run in runs {
            let command = run.arguments
                .replacingOccurrences(of: "swift build", with: "swift build --scratch-path '\(scratch)'")
                .replacingOccurrences(of: " /out/", with: " '\(out.path)'/")
            try await Command.check("/bin/sh", ["-c", command], environment: environment, directory: Repository.root)
        }
        return out
    }

    /// `debootstrap --variant=minbase` of the base image's release, with the apt sources of Debian's images.
    private func bootstrap(base: String) async throws {
        guard let tag = base.split(separator: ":").last, base.hasPrefix("debian:") else {
            throw TestFailure("the runtime stage is based on \(base), not a debian:<release> image")
        }
        let release = tag.hasSuffix("-slim") ? String(tag.dropLast("-slim".count)) : String(tag)
        let mirrors = HostMirrors.read()
        try await Command.check(
            try Command.which("debootstrap"), ["--variant=minbase", release, root.path, mirrors.debian])
        let sources = """
            Types: deb
            URIs: \(mirrors.debian)
            Suites: \(release) \(release)-updates
            Components: main
            Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

            Types: deb
            URIs: \(mirrors.security)
            Suites: \(release)-security
            Components: main
            Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

            """
        try? FileManager.default.removeItem(at: root.appendingPathComponent("etc/apt/sources.list"))
        try FileManager.default.createDirectory(
            at: root.appendingPathComponent("etc/apt/sources.list.d"), withIntermediateDirectories: true)
        try sources.write(to: root.appendingPathComponent("etc/apt/sources.list.d/debian.sources"), atomically: true,
                          encoding: .utf8)
        let resolv = root.appendingPathComponent("etc/resolv.conf")
        try? FileManager.default.removeItem(at: resolv)
        try FileManager.default.copyItem(atPath: "/etc/resolv.conf", toPath: resolv.path)
        // A container has /proc; the Swift runtime and libc read it.
        try await Command.check(try Command.which("mount"), ["-t", "proc", "proc", root.appendingPathComponent("proc").path])
    }

    /// The runtime stage's instructions in order.
    private mutating func apply(_ stage: Dockerfile.Stage, buildOutput: URL) async throws {
        var userName = "root"
        for instruction in stage.instructions {
            switch instruction.keyword {
            case "RUN":
                let result = try await run(["/bin/sh", "-c", instruction.arguments])
                guard result.status == 0 else {
                    throw TestFailure("Dockerfile:\(instruction.line): RUN failed in the chroot: \(result)")
                }
            case "COPY":
                try copy(instruction, buildOutput: buildOutput)
            case "USER":
                userName = instruction.arguments
            case "WORKDIR":
                workingDirectory = instruction.arguments
                try FileManager.default.createDirectory(
                    at: root.appendingPathComponent(workingDirectory), withIntermediateDirectories: true)
            case "ENV":
                let parts = instruction.arguments.split(separator: "=", maxSplits: 1).map(String.init)
                if parts.count == 2 { imageEnvironment[parts[0]] = parts[1] }
            default:
                continue  // EXPOSE, HEALTHCHECK, ENTRYPOINT, CMD: metadata the test reads itself
            }
        }
        user = try resolve(user: userName)
    }

    /// `COPY [--from=build] SOURCE DESTINATION`: the build stage's `/out` is `buildOutput`, other sources are
    /// relative to the repository (the build context); a source ending in `/` copies the folder's contents.
    private func copy(_ instruction: Dockerfile.Instruction, buildOutput: URL) throws {
        let words = instruction.arguments.split(separator: " ").map(String.init)
        let fromBuild = words.contains { $0.hasPrefix("--from=") }
        let paths = words.filter { !$0.hasPrefix("--") }
        guard paths.count == 2 else {
            throw TestFailure("Dockerfile:\(instruction.line): COPY with \(paths.count) paths is not handled here")
        }
        let source: URL
        if fromBuild {
            guard paths[0].hasPrefix("/out/") else {
                throw TestFailure("Dockerfile:\(instruction.line): COPY --from takes files from /out only here")
            }
            source = buildOutput.appendingPathComponent(String(paths[0].dropFirst("/out/".count)))
        } else {
            source = Repository.file(paths[0])
        }
        let destination = root.appendingPathComponent(paths[1])
        let manager = FileManager.default
        if paths[0].hasSuffix("/") {
            try manager.createDirectory(at: destination, withIntermediateDirectories: true)
            for item in try manager.contentsOfDirectory(atPath: source.path) {
                try manager.copyItem(at: source.appendingPathComponent(item), to: destination.appendingPathComponent(item))
            }
        } else {
            try manager.createDirectory(at: destination.deletingLastPathComponent(), withIntermediateDirectories: true)
            try? manager.removeItem(at: destination)
            try manager.copyItem(at: source, to: destination)
        }
    }

    /// `name` as `uid:gid` from the image's `/etc/passwd`.
    private func resolve(user name: String) throws -> String {
        let passwd = try String(contentsOf: root.appendingPathComponent("etc/passwd"), encoding: .utf8)
        for line in passwd.split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            if fields.count >= 4, fields[0] == name || fields[2] == name { return "\(fields[2]):\(fields[3])" }
        }
        throw TestFailure("the image has no user '\(name)' in /etc/passwd")
    }

    private func chrootArguments(_ command: [String], asImageUser: Bool, environment: [String: String]) -> [String] {
        var variables = ["PATH": Self.path, "HOME": asImageUser ? workingDirectory : "/root"]
        variables.merge(imageEnvironment) { _, image in image }
        variables.merge(environment) { _, given in given }
        var arguments: [String] = []
        if asImageUser { arguments.append("--userspec=\(user)") }
        arguments += [root.path, "/usr/bin/env", "-i", "--chdir=\(asImageUser ? workingDirectory : "/")"]
        arguments += variables.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        return arguments + command
    }

    /// Runs `command` in the image to its end, as root in `/` or as the image's `USER` in its `WORKDIR`.
    func run(_ command: [String], asImageUser: Bool = false, environment: [String: String] = [:]) async throws
        -> CommandResult
    {
        try await Command.run(
            try Command.which("chroot"), chrootArguments(command, asImageUser: asImageUser, environment: environment),
            environment: [:])
    }

    /// Starts `command` in the image as its user, as the container's main process.
    func start(_ command: [String], environment: [String: String], logPath: String) throws -> ChrootProcess {
        try ChrootProcess(
            try Command.which("chroot"), chrootArguments(command, asImageUser: true, environment: environment),
            environment: [:], logPath: logPath)
    }

    /// Puts a file into the image (a compose secret, say), owned by root like a bind mount of a root-owned file.
    func write(_ text: String, to path: String, mode: Int) throws {
        let url = root.appendingPathComponent(path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try text.write(to: url, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: url.path)
    }

    /// The absolute paths `ldd` resolved.
    static func libraries(inLDDOutput output: String) -> [String] {
        output.split(separator: "\n").compactMap { line in
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            if let arrow = words.firstIndex(of: "=>"), arrow + 1 < words.count, words[arrow + 1].hasPrefix("/") {
                return words[arrow + 1]
            }
            return words.first.flatMap { $0.hasPrefix("/") ? $0 : nil }
        }
    }

    /// The Debian packages that ship `libraries` in the image, by `dpkg -S` (trying the path without `/usr` or
    /// with it, as the merged `/usr` makes both spellings reach the same file).
    func packagesOwning(libraries: [String]) async throws -> Set<String> {
        var packages: Set<String> = []
        for library in libraries {
            var spellings = [library]
            if library.hasPrefix("/usr/") { spellings.append(String(library.dropFirst(4))) } else { spellings.append("/usr" + library) }
            var owner: String?
            for spelling in spellings where owner == nil {
                let result = try await run(["/usr/bin/dpkg", "-S", spelling])
                if result.status == 0, let colon = result.output.firstIndex(of: ":") {
                    owner = String(result.output[..<colon])
                }
            }
            guard let owner else { throw TestFailure("no package in the image ships \(library)") }
            packages.insert(owner)
        }
        return packages
    }

    /// Unmounts `/proc` and deletes the tree; leaves it (and says so) if anything is still mounted below it.
    func remove() {
        let proc = root.appendingPathComponent("proc").path
        if Self.mounts().contains(proc) {
            _ = try? Command.runBlocking("/bin/umount", [proc], environment: nil, directory: nil)
        }
        let below = Self.mounts().filter { $0.hasPrefix(directory.path + "/") }
        guard below.isEmpty else {
            print("ImageRoot: \(directory.path) left in place, still mounted: \(below)")
            return
        }
        try? FileManager.default.removeItem(at: directory)
    }

    private static func mounts() -> [String] {
        let text = (try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in line.split(separator: " ").dropFirst().first.map(String.init) }
    }
}

/// The Debian mirrors this machine's apt uses (so the chroot is made the way this machine installs packages).
struct HostMirrors {
    var debian = "http://deb.debian.org/debian"
    var security = "http://deb.debian.org/debian-security"

    static func read() -> HostMirrors {
        var mirrors = HostMirrors()
        var uris: [String] = []
        let deb822 = (try? String(contentsOfFile: "/etc/apt/sources.list.d/debian.sources", encoding: .utf8)) ?? ""
        for line in deb822.split(separator: "\n") where line.hasPrefix("URIs:") {
            uris += line.dropFirst("URIs:".count).split(separator: " ").map(String.init)
        }
        let list = (try? String(contentsOfFile: "/etc/apt/sources.list", encoding: .utf8)) ?? ""
        for line in list.split(separator: "\n") where line.hasPrefix("deb ") {
            uris += line.split(separator: " ").filter { $0.hasPrefix("http") }.map(String.init)
        }
        if let debian = uris.first(where: { !$0.contains("security") }) { mirrors.debian = debian }
        if let security = uris.first(where: { $0.contains("security") }) { mirrors.security = security }
        return mirrors
    }
}
