"""Commands beyond the pipeline stages; each module has `register(subparsers, common)` and is
listed in pipeline.cli.TOOL_MODULES."""
