"""Probers: one endpoint in, one ProbeResult out."""

from __future__ import annotations

from exporter.probes.http import HttpProber, ProberSetupError

__all__ = ["HttpProber", "ProberSetupError"]
