"""The CrossGuard policy pack that guards the confidential deployment's invariants."""
