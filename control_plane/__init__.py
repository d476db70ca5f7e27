"""The agent control plane: the platform operated through Dagster's GraphQL API only (issue #7).

Agents and people reach the platform through vps_1's webserver (behind the TLS proxy); nothing here talks
to a database, the object store or a private node directly, so every action is recorded by the orchestrator.
"""
