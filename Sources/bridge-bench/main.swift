// Dispatch on the first argument: `bridge-bench protocol`, ... ; no argument runs every benchmark.
let benchmarks: [(name: String, run: () -> Void)] = [
    ("protocol", ProtocolBenchmarks.run),
]

let requested = CommandLine.arguments.dropFirst().first
if let requested {
    if let benchmark = benchmarks.first(where: { $0.name == requested }) {
        benchmark.run()
    } else {
        print("usage: bridge-bench [\(benchmarks.map(\.name).joined(separator: "|"))]")
    }
} else {
    for benchmark in benchmarks { benchmark.run() }
}
