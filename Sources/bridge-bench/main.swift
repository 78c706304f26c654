// Dispatch on the first argument: `bridge-bench protocol|mqtt|bridge`; no argument runs every benchmark.
// Build with `-c release`: `swift run -c release bridge-bench mqtt`.
let benchmarks: [(name: String, run: () async throws -> Void)] = [
    ("protocol", { ProtocolBenchmarks.run() }),
    ("mqtt", { try await MQTTBenchmarks.run() }),
    ("bridge", { try await BridgeBenchmarks.run() }),
]

let requested = CommandLine.arguments.dropFirst().first
if let requested {
    if let benchmark = benchmarks.first(where: { $0.name == requested }) {
        try await benchmark.run()
    } else {
        print("usage: bridge-bench [\(benchmarks.map(\.name).joined(separator: "|"))]")
    }
} else {
    for benchmark in benchmarks { try await benchmark.run() }
}
