"""Test-data generators and pure-Python reference implementations shared by the tests."""
