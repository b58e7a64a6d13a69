"""`tweetkit benchmark`: suites (suite.py), units of work (units.py), the report (report.py)."""
