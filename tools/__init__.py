"""The maintainers' instruments, beside the package and never imported by it: the load test and its
hostile clients, the stage, viewer and upload benchmarks, the domain calibration, the cue probes,
the family's assembly and the demo scenes. Each runs as `python -m tools.NAME --help`."""
