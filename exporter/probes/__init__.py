"""Probers: one endpoint in, one ProbeResult out (`http`), and the TLS material they use (`tls`)."""
