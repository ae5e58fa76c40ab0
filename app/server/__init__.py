"""Builds and runs the server: the one assembly of state, layers and tools, the HTTP app, the run loop."""
