"""The three nodes simulated on one machine: network namespaces, the firewalls the cloud would apply, real processes.

``python -m deploy.sim up`` (``make topology-up``) builds it, ``down`` removes it; the tests in ``tests/topology``
drive the same code. Traffic stays inside namespaces it created: the host namespace never gets a route into the VPC.
"""
