"""The training engine and what it needs: events, the early-training rule, output files, devices, processes."""
