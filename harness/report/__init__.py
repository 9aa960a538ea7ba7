"""Reports of a scenario run: verdicts (``verdict``), and artifacts."""
