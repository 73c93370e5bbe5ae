"""The cluster as a whole: its topology (`config`), its processes (`local`), its status, and the `bazar` command."""
