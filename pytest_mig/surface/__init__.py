"""The pytest surface below the entry point: the hook objects, the case runner, the options."""
