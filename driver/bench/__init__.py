"""``ipledger bench``: the benchmarks, each measuring into data that a renderer prints."""
