# An ordinary uncaught exception: status 1.
raise ValueError("expected failure")
