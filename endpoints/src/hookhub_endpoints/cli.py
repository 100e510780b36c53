"""`hookhub endpoints add|list|show|disable|enable|remove|resend|rotate-secret`."""

import typer

app = typer.Typer(help="Outbound endpoints: who receives which events, signed.")


def register(target: typer.Typer) -> None:
    target.add_typer(app, name="endpoints")
