"""The demo: a synthetic programme through the four services, and the programme report."""
