"""Mutations. Each action: plan(live state) -> Plan; apply(plan) -> Outcome; verify().

Actions never prompt and never print: `somactl.ui.actions.execute` shows the plan, asks for
consent, writes the audit journal around `apply`, and renders the result.
"""
