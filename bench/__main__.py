"""`python -m bench [NAME] [OPTIONS]`: run a benchmark (default: scifact). Results go to bench/results/."""
import runpy
import sys

BENCHES = {"scifact": "bench.scifact", "repro": "bench.repro_time", "ingest_scale": "bench.ingest_scale",
           "load": "bench.load", "encode_scale": "bench.encode_scale", "precision": "bench.precision"}

if __name__ == "__main__":
    name = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "scifact"
    if name not in BENCHES:
        sys.exit(f"error: unknown benchmark '{name}'; choose from: {', '.join(BENCHES)}")
    sys.argv = [BENCHES[name], *sys.argv[2 if len(sys.argv) > 1 and sys.argv[1] == name else 1:]]
    runpy.run_module(BENCHES[name], run_name="__main__")
