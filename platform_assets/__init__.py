"""The data platform's Dagster code location (``platform_assets.definitions``)."""

# How workspace.yaml and vps_1's code server name the location (the deploy files import these).
CODE_LOCATION = "data_platform"
CODE_MODULE = "platform_assets.definitions"
