"""The program runs of tests/components, shared so the pack is checked against the real stacks."""

from tests.components.conftest import dev_run, prod_run, stack_run  # noqa: F401 (pytest fixtures)
