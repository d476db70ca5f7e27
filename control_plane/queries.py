"""The GraphQL documents the commands send (Dagster 1.13 schema), kept apart so they can be read at a glance."""

ASSET_NODES = """
query AssetNodes {
  assetNodes(loadMaterializations: true) {
    assetKey { path }
    groupName
    description(characterLimit: 200)
    kinds
    jobNames
    isMaterializable
    isPartitioned
    partitionDefinition { type description dimensionTypes { dynamicPartitionsDefinitionName } }
    dependencyKeys { path }
    tags { key value }
    repository { name location { name } }
    assetMaterializations(limit: 1) { timestamp runId }
    assetChecksOrError { ... on AssetChecks { checks { name } } }
  }
}
"""

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId jobName status } }
    ... on PythonError { message }
    ... on Error { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""

ADD_DYNAMIC_PARTITION = """
mutation AddPartition($repositorySelector: RepositorySelector!, $partitionsDefName: String!, $partitionKey: String!) {
  addDynamicPartition(
    repositorySelector: $repositorySelector, partitionsDefName: $partitionsDefName, partitionKey: $partitionKey
  ) {
    __typename
    ... on Error { message }
  }
}
"""

RUN_FIELDS = """
    runId jobName status creationTime startTime endTime
    tags { key value }
    assetSelection { path }
    stepStats { stepKey status startTime endTime }
"""

RUN = f"""
query Run($runId: ID!) {{
  runOrError(runId: $runId) {{
    __typename
    ... on Run {{ {RUN_FIELDS} }}
    ... on RunNotFoundError {{ message }}
    ... on PythonError {{ message }}
  }}
}}
"""

RUNS = f"""
query Runs($limit: Int!) {{
  runsOrError(limit: $limit) {{
    __typename
    ... on Runs {{ results {{ {RUN_FIELDS} }} }}
    ... on PythonError {{ message }}
  }}
}}
"""

RUN_LOGS = """
query Logs($runId: ID!, $cursor: String) {
  runOrError(runId: $runId) { ... on Run { status } }
  logsForRun(runId: $runId, afterCursor: $cursor) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on MessageEvent { message timestamp level stepKey eventType }
        ... on ExecutionStepFailureEvent { error { className message causes { className message } } }
        ... on RunFailureEvent { error { className message causes { className message } } }
        ... on MaterializationEvent { assetKey { path } }
        ... on AssetCheckEvaluationEvent { evaluation { checkName success assetKey { path } } }
      }
    }
    ... on PythonError { message }
    ... on RunNotFoundError { message }
  }
}
"""

METADATA = """
  label
  ... on IntMetadataEntry { intValue }
  ... on FloatMetadataEntry { floatValue }
  ... on TextMetadataEntry { text }
  ... on BoolMetadataEntry { boolValue }
"""

ASSET_CHECKS = f"""
query Checks($key: AssetKeyInput!) {{
  assetNodeOrError(assetKey: $key) {{
    __typename
    ... on AssetNode {{
      assetChecksOrError {{
        __typename
        ... on AssetChecks {{
          checks {{
            name
            description
            blocking
            executionForLatestMaterialization {{
              runId status timestamp partition
              evaluation {{ success severity description metadataEntries {{ {METADATA} }} }}
            }}
          }}
        }}
        ... on Error {{ message }}
      }}
    }}
  }}
}}
"""

COLUMN_LINEAGE = """
query ColumnLineage {
  assetNodes(loadMaterializations: true) {
    assetKey { path }
    assetMaterializations(limit: 1) {
      metadataEntries {
        label
        ... on TableColumnLineageMetadataEntry {
          lineage { columnName columnDeps { assetKey { path } columnName } }
        }
      }
    }
  }
}
"""
