/// What loading reads besides the config text: the files the config names (password files, TLS files) and
/// environment variables. The loader asks only this, so the rest of BridgeConfig is pure; ``SystemConfigSource``
/// answers from the process's file system and environment.
public protocol ConfigSource: Sendable {
    /// The value of an environment variable, or nil when it is not set.
    func environmentVariable(_ name: String) -> String?
    /// What is at an absolute path.
    func entry(atPath path: String) -> ConfigFileEntry
    /// The bytes of the file at an absolute path, or nil when it cannot be read.
    func contents(atPath path: String) -> [UInt8]?
    /// Where relative paths start when the config text comes from no file.
    var currentDirectory: String { get }
}

/// What is at a path the config names.
public enum ConfigFileEntry: Sendable, Hashable {
    case missing
    case file(readable: Bool)
    case directory(readable: Bool)
}
