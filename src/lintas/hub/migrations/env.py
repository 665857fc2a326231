from lintas.storage.migration_env import run

run()
