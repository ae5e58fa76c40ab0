"""Capability middleware: the layers every tool call passes, in one fixed order."""
