"""Fault suite: bad input, full disks, fuzzed files and cut downloads, each handled."""
