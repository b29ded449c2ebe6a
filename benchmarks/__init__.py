"""Benchmarks of ptrain: speed and memory (speed.py), accuracy on real data (accuracy.py); see README.md."""
