"""Pure building blocks: exit codes, errors, redaction, durations.

No I/O and no third-party imports here.
"""
