"""The quiet console: one line per stage with a progress bar and ETA on the terminal, everything else in a log file."""
