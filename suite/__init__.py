"""The application around the two libraries: what a run is (``suite.run``), what its jobs ask a
scheduler for (``suite.resources``), their cost and memory before launch (``suite.plan``,
``suite.memory``) and the ``ecdp`` command line (``suite.cli``). It imports ``ecdp`` (the method
and its training) and ``baselines`` (the other methods); neither imports it."""
