#if canImport(Glibc)
    import Glibc
#endif

// Dispatch on the first argument: `bridge-bench protocol|mapping|mqtt|bridge|datapath`; no argument runs protocol, mqtt
// and bridge. Build with `-c release`: `swift run -c release bridge-bench mqtt`. `datapath` runs the bridge and
// the relay as child processes: use `scripts/bench.sh`, which builds them first.
let benchmarks: [(name: String, run: () async throws -> Void)] = [
    ("protocol", { ProtocolBenchmarks.run() }),
    ("mapping", { try MappingBenchmarks.run() }),
    ("mqtt", { try await MQTTBenchmarks.run() }),
    ("bridge", { try await BridgeBenchmarks.run() }),
    ("datapath", { try await Datapath.run(arguments: Array(CommandLine.arguments.dropFirst(2))) }),
]

let requested = CommandLine.arguments.dropFirst().first
if let requested {
    if let benchmark = benchmarks.first(where: { $0.name == requested }) {
        do {
            try await benchmark.run()
        } catch {
            // Subjects and brokers are stopped by then (defer); say why and fail.
            print("bridge-bench \(requested): \(error)")
            Children.killAll()
            exit(1)
        }
    } else {
        print("usage: bridge-bench [\(benchmarks.map(\.name).joined(separator: "|"))]")
        exit(2)
    }
} else {
    for benchmark in benchmarks where benchmark.name != "datapath" { try await benchmark.run() }
}
