"""The cluster file: its topology, validated (`config`), where its secret and admin token
come from (`secrets`), and the Prometheus scrape configuration that follows from it
(`prometheus`). The bottom layer: it imports nothing else of Bazar's."""
