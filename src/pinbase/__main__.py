from pinbase.cli.main import app

app(prog_name="pinbase")
