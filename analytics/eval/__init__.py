"""Offline evaluation: NAB scoring, offline CSV detection and simulated-scenario evaluation."""
