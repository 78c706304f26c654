public import Foundation

/// The process's file system and environment: the one place BridgeConfig reads outside the config text.
public struct SystemConfigSource: ConfigSource {
    /// The environment variables, by default the process's.
    public var environment: [String: String]

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    public func environmentVariable(_ name: String) -> String? {
        environment[name]
    }

    public func entry(atPath path: String) -> ConfigFileEntry {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return .missing }
        let readable = FileManager.default.isReadableFile(atPath: path)
        return isDirectory.boolValue ? .directory(readable: readable) : .file(readable: readable)
    }

    public func contents(atPath path: String) -> [UInt8]? {
        FileManager.default.contents(atPath: path).map { Array($0) }
    }

    public var currentDirectory: String { FileManager.default.currentDirectoryPath }
}

extension BridgeConfiguration {
    /// Reads and validates a config file, with the process's file system and `environment`.
    ///
    /// Relative `password-file` and TLS paths are resolved against the config file's directory.
    /// - throws: every error in the file (never only the first), each naming file, line, column and key path.
    public static func load(
        path: String, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(ConfigErrors) -> BridgeConfiguration {
        try load(path: path, source: SystemConfigSource(environment: environment))
    }

    /// Validates config text, with the process's file system and `environment`.
    ///
    /// - parameter fileName: the name used in diagnostics.
    /// - parameter baseDirectory: where relative file paths (password files, TLS files) start; the current directory
    ///   when nil.
    public static func parse(
        yaml: String, fileName: String = "<config>",
        environment: [String: String] = ProcessInfo.processInfo.environment, baseDirectory: String? = nil
    ) throws(ConfigErrors) -> BridgeConfiguration {
        try parse(yaml: yaml, fileName: fileName, source: SystemConfigSource(environment: environment),
                  baseDirectory: baseDirectory)
    }
}
