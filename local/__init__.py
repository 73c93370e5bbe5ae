"""Clusters run on this machine: every process a cluster file names as children of one
process (`cluster`, for `bazar up`, the tests, chaos and bench), a supervisor that restarts
them, and throwaway cluster files on free loopback ports. A tool, above the frontend."""
