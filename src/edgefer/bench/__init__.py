"""The comparison report: every target's accuracy, latency, power and energy from one command."""
