"""The `lstm-engine` command line."""
