"""HTTP plumbing shared by replicas and frontends: JSON errors, serving, and group clients."""
