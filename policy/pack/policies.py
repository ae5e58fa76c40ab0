"""Wires the plain rule functions into mandatory CrossGuard `ResourceValidationPolicy` objects."""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from policy.pack.rules import RULES, Rule

PACK_NAME = "mcp-tee-guards"


def _validator(rule: Rule):
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in rule(args.resource_type, args.props):
            report_violation(message, None)
    return validate


POLICIES = [
    ResourceValidationPolicy(
        name=name,
        description=description,
        enforcement_level=EnforcementLevel.MANDATORY,
        validate=_validator(rule),
    )
    for name, (description, rule) in RULES.items()
]
