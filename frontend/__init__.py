"""The frontend gateway: the public HTTP API, its cache, its balancing, its pages."""
