from clarion.cli import app

app(prog_name="clarion")
