"""Operations that combine layers: diagnose (runbook + checks + settings + timeline), and
the pieces of mitigation that are not terminal I/O. No typer/rich here: progress and prompts
come in as callbacks from the commands."""
