"""Tooling beside the asset graph: make dev's supervisor, the class-archive builder, sample data,
the top-brands report. Nothing in the graph imports this package."""
