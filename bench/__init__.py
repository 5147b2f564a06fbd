"""Benchmarks that print figures (moim beside a bare python-telegram-bot echo bot in the same
run where the target is a ratio). They never decide pass or fail; `python -m bench` runs them."""
