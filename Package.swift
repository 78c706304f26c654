// swift-tools-version:6.1
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "ditto-mqtt-bridge",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ditto-mqtt-bridge", targets: ["ditto-mqtt-bridge"]),
        .library(name: "MQTT", targets: ["MQTT"]),
        .library(name: "Mosquitto", targets: ["Mosquitto"]),
        .library(name: "DittoProtocol", targets: ["DittoProtocol"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // No HTTP library: BridgeOperations serves /metrics, /health and /ready on POSIX sockets itself, so
        // the binary needs no SwiftNIO (minutes of build time) and no FoundationNetworking (libcurl).
    ],
    targets: [
        // C layer: Debian's libmosquitto-dev, nothing but two #includes.
        .systemLibrary(
            name: "CMosquitto",
            pkgConfig: "libmosquitto",
            providers: [.apt(["libmosquitto-dev"])]
        ),
        // MQTT's vocabulary: QoS, versions, PUBLISH properties, the message, subscriptions, reconnect policy and
        // the topic name / topic filter rules. Pure, no C: the client, the config and the mapping share it.
        .target(name: "MQTT", swiftSettings: strict),
        // Swift MQTT client over libmosquitto; hides every C pointer.
        .target(
            name: "Mosquitto",
            dependencies: [
                "CMosquitto", "MQTT",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "HeapModule", package: "swift-collections"),
            ],
            swiftSettings: strict
        ),
        // Private mosquitto brokers for tests and benchmarks.
        .target(
            name: "MosquittoTestSupport",
            dependencies: ["Mosquitto", "MQTT"],
            swiftSettings: strict
        ),
        // RFC 6455 client (and server) codec for Ditto's WebSocket binding: handshake, proxy CONNECT, frames. Pure.
        .target(name: "WebSocketCodec", swiftSettings: strict),
        // C layer: Debian's libssl-dev, the OpenSSL libmosquitto links too; TLS for `wss://`.
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        // The WebSocket client of Ditto's `/ws/2` binding: connecting (TCP, HTTP CONNECT proxy, TLS, upgrade) off the
        // loop, then frames on the bridge's event loop.
        .target(
            name: "WebSocketClient",
            dependencies: ["WebSocketCodec", "COpenSSL", "Mosquitto", "MQTT"],
            swiftSettings: strict
        ),
        // A stand-in for Ditto's gateway `/ws/2` on 127.0.0.1 for tests: auth, control messages, acks, limits.
        .target(
            name: "DittoWebSocketTestSupport",
            dependencies: ["WebSocketCodec", "MosquittoTestSupport"],
            swiftSettings: strict
        ),
        // Ditto Protocol model: pure, no I/O.
        .target(name: "DittoProtocol", swiftSettings: strict),
        // The config file: YAML -> typed, located, validated configuration. Pure but for SystemConfigSource.swift,
        // the one place that reads the files a config names and the environment (a ConfigSource).
        .target(
            name: "BridgeConfig",
            dependencies: ["DittoProtocol", "MQTT", .product(name: "Yams", package: "Yams")],
            swiftSettings: strict
        ),
        // The mapping: config -> rules -> envelopes, both directions, plus the header mapper. Pure.
        .target(
            name: "BridgeMapping",
            dependencies: ["DittoProtocol", "MQTT", "BridgeConfig"],
            swiftSettings: strict
        ),
        // Wires MQTT clients, mapper, pending requests and metrics into services.
        .target(
            name: "BridgeRuntime",
            dependencies: [
                "MQTT", "Mosquitto", "DittoProtocol", "BridgeConfig", "BridgeMapping", "WebSocketClient", "WebSocketCodec",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                "BridgeOperations",
            ],
            swiftSettings: strict
        ),
        // What an operator needs around the runtime: /metrics, /health and /ready over HTTP, sd_notify,
        // metric names, JSON log lines. No MQTT, no mapping: the runtime hands it closures and a registry.
        .target(
            name: "BridgeOperations",
            dependencies: [
                "BridgeConfig",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "ditto-mqtt-bridge",
            dependencies: [
                "BridgeRuntime", "BridgeConfig", "BridgeMapping", "BridgeOperations", "DittoProtocol", "MQTT",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // The zero-work relays the data-path benchmark compares the bridge with (on the project's event loop and on
        // libmosquitto's threaded loop).
        .executableTarget(
            name: "mqtt-relay",
            dependencies: [
                "CMosquitto", "MQTT", "Mosquitto", .product(name: "Logging", package: "swift-log"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // Prints numbers; run with `swift run -c release bridge-bench`, or `scripts/bench.sh` for the data path.
        .executableTarget(
            name: "bridge-bench",
            dependencies: [
                "CMosquitto", "MQTT", "Mosquitto", "MosquittoTestSupport", "DittoProtocol", "BridgeConfig", "BridgeMapping", "BridgeRuntime",
                "DittoWebSocketTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "MQTTTests",
            dependencies: ["MQTT"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "MosquittoTests",
            dependencies: ["MQTT", "Mosquitto", "MosquittoTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "DittoProtocolTests",
            dependencies: ["DittoProtocol"],
            resources: [.copy("Resources")],
            swiftSettings: strict
        ),
        .testTarget(name: "WebSocketCodecTests", dependencies: ["WebSocketCodec"], swiftSettings: strict),
        // The test server and the codec against each other over real sockets, and each against Debian's
        // python3-websockets.
        .testTarget(
            name: "DittoWebSocketServerTests",
            dependencies: ["DittoWebSocketTestSupport", "WebSocketCodec", "MosquittoTestSupport"],
            swiftSettings: strict
        ),
        // The connector against the test server over real sockets: plain, through the test proxy, and behind
        // Debian's nginx terminating TLS.
        .testTarget(
            name: "WebSocketClientTests",
            dependencies: ["WebSocketClient", "WebSocketCodec", "DittoWebSocketTestSupport", "MosquittoTestSupport", "MQTT", "Mosquitto"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "BridgeConfigTests",
            dependencies: ["BridgeConfig", "MQTT"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "BridgeMappingTests",
            dependencies: ["BridgeMapping", "BridgeConfig", "DittoProtocol", "MQTT"],
            swiftSettings: strict
        ),
        // Delivery guarantees of the real `ditto-mqtt-bridge` process under faults (kill -9, SIGTERM, broker
        // restarts, outages, scale-out); `swift build --build-tests` builds the executable they run.
        .testTarget(
            name: "DataPathTests",
            dependencies: ["MQTT", "Mosquitto", "MosquittoTestSupport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // Issue 11's acceptance through the real `ditto-mqtt-bridge` binary between two private mosquittos:
        // /metrics counts what happened, /ready follows the brokers, SIGHUP reloads (valid and invalid files).
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "MQTT", "Mosquitto", "MosquittoTestSupport", "DittoWebSocketTestSupport", "WebSocketCodec",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // OperationsServer, sd_notify, JSON logs, `check` reports; and the deployment files (compose,
        // Dockerfile, Ditto connection, systemd unit) checked against the config with real parsers.
        .testTarget(
            name: "OperationsTests",
            dependencies: [
                "BridgeOperations", "BridgeConfig", "BridgeMapping", "DittoProtocol", "MQTT", "Mosquitto",
                "MosquittoTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "BridgeRuntimeTests",
            dependencies: [
                "BridgeRuntime", "BridgeConfig", "BridgeMapping", "DittoProtocol", "MQTT", "Mosquitto",
                "MosquittoTestSupport", "BridgeOperations", "DittoWebSocketTestSupport",
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),
        // The deployment artifacts run for real: the Dockerfile's runtime stage as a chroot, the systemd unit's
        // command lines under its SystemCallFilter= (libseccomp), the compose nginx config in a real nginx.
        .testTarget(
            name: "DeploymentTests",
            dependencies: [
                "MQTT", "Mosquitto", "MosquittoTestSupport", .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),
    ],
    swiftLanguageModes: [.v6]
)
