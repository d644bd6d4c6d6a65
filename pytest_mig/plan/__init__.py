"""What a run runs: suites as data expanded into cases, and their order by MIG layout."""
