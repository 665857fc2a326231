from lintas.cli.main import app

app(prog_name="lintas")
