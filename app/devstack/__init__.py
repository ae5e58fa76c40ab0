"""Local stand-ins for development and tests: a throwaway Postgres, GitHub and a webhook sink. Never a TEE."""
