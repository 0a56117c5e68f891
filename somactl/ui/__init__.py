"""The terminal: output, prompts, consent, progress.

Only app, commands and ui import typer or rich.
"""
