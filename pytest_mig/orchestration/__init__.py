"""Running one case: the main and its backgrounds as child processes, their health, the dry run."""
