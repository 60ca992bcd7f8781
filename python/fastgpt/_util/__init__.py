"""Shared plumbing used by every step: atomic output, sharding and executors, device setup."""
