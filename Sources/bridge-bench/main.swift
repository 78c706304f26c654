print("bridge-bench: no benchmarks yet")
