"""The tests' loopback-only network guard (loopback_guard.py), and the sitecustomize.py that installs
it in every Python process the tests start."""
