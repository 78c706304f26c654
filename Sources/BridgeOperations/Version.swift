/// The bridge's version, printed by `--version` and exported as `ditto_mqtt_bridge_build_info{version}`.
public enum BridgeVersion {
    /// Semantic version of this source tree; raise it with every release.
    public static let current = "0.3.0"
}
