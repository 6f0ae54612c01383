from amc.cli import app

app()
