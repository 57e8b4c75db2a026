"""The `fxmix` verbs: argument parsing and printing over the library (the only place argparse appears)."""
