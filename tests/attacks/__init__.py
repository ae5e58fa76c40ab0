"""Regression tests for issue 13: each makes one attack through the real server and sees it refused."""
