"""Speed benchmarks: dfdet against the paper's implementation and against the hardware's peak.

Run a script from the repository root, e.g. `python -m bench.bench_inference --device cpu`; each
writes bench/results_<name>.md with the machine, the command and the date. bench/RESULTS.md
collects the headline numbers. tests/test_bench_smoke.py runs every script at tiny sizes.
"""
