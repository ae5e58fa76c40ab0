"""Policies that guard the deployment: the Key Vault key-release policy and the CrossGuard pack."""
