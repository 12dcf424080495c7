"""The commands of the `ownlm` CLI, one record each (command.py): `run`, one per registered stage
and `config` (stage_commands.py), and the tools (model_tools.py, eval_tools.py, cluster_tools.py).
The one table of them is `pipeline.cli.COMMANDS`."""
