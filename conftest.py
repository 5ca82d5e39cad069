collect_ignore = ["graphexplain/__main__.py", "examples", "benchmarks", "docs"]
