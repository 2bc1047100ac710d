"""Benchmarks that print tables and never fail a build: `python -m bench.polling`,
`python -m bench.scale`, `python -m bench.ack` (and `python -m bench.simulate`)."""
