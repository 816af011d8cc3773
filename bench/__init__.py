"""The benchmark harness, installed as `gpuconv.bench`: layer sets (layers), check and time (harness,
timing, baselines), results JSON, Markdown report and plots (report). `gpuconv bench`, `tune` and
`report` drive it; test_micro.py holds pytest-benchmark microbenchmarks (`pytest bench/ --benchmark-only`)."""
