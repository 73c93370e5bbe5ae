"""`bazar bench`: latency, throughput, failover, recovery and memory of throwaway clusters.

- `measure`: sequential latency samples over one keep-alive session, and their statistics.
- `load`:    throughput with N concurrent clients, each a process with its own keep-alive session.
- `floor`:   a hello-world Flask app served by waitress exactly like the frontend, the
             fastest any Bazar route could possibly answer.
- `runner`:  starts the clusters, runs every measurement, cleans up.
- `report`:  results.json, results.md (the summary table) and latency_cdf.png.

Nothing here is a test: the targets in the table are goals to compare against, not assertions.
"""
