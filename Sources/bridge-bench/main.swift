// Dispatch on the first argument: `bridge-bench protocol|mqtt|bridge|datapath`; no argument runs all but datapath
// (which needs the release binaries: scripts/bench.sh).
// Build with `-c release`: `swift run -c release bridge-bench mqtt`.
let benchmarks: [(name: String, run: () async throws -> Void)] = [
    ("protocol", { ProtocolBenchmarks.run() }),
    ("mqtt", { try await MQTTBenchmarks.run() }),
    ("bridge", { try await BridgeBenchmarks.run() }),
    ("datapath", { try await DataPathBenchmarks.run(arguments: Array(CommandLine.arguments.dropFirst(2))) }),
]

let requested = CommandLine.arguments.dropFirst().first
if let requested {
    if let benchmark = benchmarks.first(where: { $0.name == requested }) {
        try await benchmark.run()
    } else {
        print("usage: bridge-bench [\(benchmarks.map(\.name).joined(separator: "|"))]")
    }
} else {
    for benchmark in benchmarks where benchmark.name != "datapath" { try await benchmark.run() }
}
