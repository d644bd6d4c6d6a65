"""Fleet runs: shards of one suite across nodes (shard.py) and their merge (merge.py, cli.py)."""
