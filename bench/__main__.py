"""`python -m bench [NAME]`: run a benchmark (default: repro). Results go to bench/results/."""
import runpy
import sys

BENCHES = {"repro": "bench.repro_time"}

if __name__ == "__main__":
    name = sys.argv[1] if len(sys.argv) > 1 else "repro"
    if name not in BENCHES:
        sys.exit(f"error: unknown benchmark '{name}'; choose from: {', '.join(BENCHES)}")
    sys.argv = [BENCHES[name], *sys.argv[2:]]
    runpy.run_module(BENCHES[name], run_name="__main__")
