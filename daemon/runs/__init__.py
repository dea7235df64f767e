"""Runs: the runner and what a run is made of (its handle, options, files, sink, child runs),
launching work (one run or a trial set), and the diff of two stored runs."""
