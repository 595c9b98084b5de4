"""upwatch: HTTP endpoint probes and host metrics for Prometheus."""

# The one place the version is written (pyproject.toml reads it from here). Not looked up with
# importlib.metadata: that import costs every process, probe workers included, about 2 MB.
__version__ = "0.4.0"
