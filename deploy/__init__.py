"""How Logorhythms runs: the `logorhythms` command line, the local stack, deployment assets."""
