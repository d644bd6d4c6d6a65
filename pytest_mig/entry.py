"""The `mig` pytest11 entry point: it only names the plugin module, so that `-p mig`,
`-p no:mig`, `-p pytest_mig.plugin` and the automatic load all register pytest_mig.plugin
once, under its module name (an entry point naming the module itself would register it
twice under two names when `-p pytest_mig.plugin` is also given, which pytest refuses)."""
pytest_plugins = ["pytest_mig.plugin"]
