"""The Pod Security Standards' **restricted** profile (which includes baseline) as Pod Security admission applies it
at the version k3s runs, for manifests checked offline: no admission controller runs here (no k3s).

The controls are those of https://kubernetes.io/docs/concepts/security/pod-security-standards/, with the exact
conditions and allowed values of the admission's own checks (``k8s.io/pod-security-admission/policy/check_*.go``)
for the versions up to ``VERSION``: a check added later (e.g. 1.34's probe and lifecycle ``host``) is left out, and a
``VERSION`` that no longer matches ``deploy.versions.k8s_minor()`` fails the tests until the rules are revisited.
No Python package implements these checks (the one listed, ``k8s-policy-guard``, lets a container with a non-zero
``runAsUser`` pass without ``runAsNonRoot``, which admission refuses). Windows pods and user-namespace pods
(``hostUsers: false``), which relax some controls, are not relaxed here: the platform runs neither.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

VERSION = "1.33"

# baseline
_SYSCTLS = {  # the "safe" set as of 1.32
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
}
_SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}  # as of 1.31
_PROFILE_TYPES = {"RuntimeDefault", "Localhost"}  # seccomp (required) and AppArmor (if set)
_APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
# restricted
_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image", "persistentVolumeClaim",
                 "projected", "secret"}  # fmt: skip
_ADDABLE_CAPABILITY = "NET_BIND_SERVICE"


def _containers(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(field path, container) of every container kind admission visits."""
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(kind) or []:
            yield f"spec.{kind}[{c.get('name')}]", c


def violations(spec: dict[str, Any], metadata: dict[str, Any] | None = None) -> list[str]:
    """Every control of the restricted profile that the pod (``spec`` and ``metadata`` of a Pod or pod template, in
    the manifests' camelCase) violates, each as ``<field>: <what is required>``; empty when admission admits it."""
    found: list[str] = []
    pod_sc = spec.get("securityContext") or {}
    containers = list(_containers(spec))
    annotations = (metadata or {}).get("annotations") or {}

    # baseline: host namespaces, host ports, privileged, procMount, sysctls, SELinux, AppArmor, Windows host process
    found += [f"spec.{f}: must be unset or false" for f in ("hostNetwork", "hostPID", "hostIPC") if spec.get(f)]
    for path, c in containers:
        sc = c.get("securityContext") or {}
        found += [f"{path}.ports[{p.get('name', i)}].hostPort: must be unset or 0"
                  for i, p in enumerate(c.get("ports") or []) if p.get("hostPort")]  # fmt: skip
        if sc.get("privileged"):
            found.append(f"{path}.securityContext.privileged: must be unset or false")
        if sc.get("procMount", "Default") != "Default":
            found.append(f"{path}.securityContext.procMount: must be unset or Default")
    found += [f"spec.securityContext.sysctls[{s['name']}]: not a safe sysctl"
              for s in pod_sc.get("sysctls") or [] if s["name"] not in _SYSCTLS]  # fmt: skip
    for path, sc in [("spec.securityContext", pod_sc)] + [(f"{p}.securityContext", c.get("securityContext") or {})
                                                          for p, c in containers]:  # fmt: skip
        selinux = sc.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in _SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
            found.append(f"{path}.seLinuxOptions: only a container type, no user or role")
        apparmor = sc.get("appArmorProfile")
        if apparmor is not None and apparmor.get("type") not in _PROFILE_TYPES:
            found.append(f"{path}.appArmorProfile.type: must be RuntimeDefault or Localhost")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"{path}.windowsOptions.hostProcess: must be unset or false")
    for key, value in annotations.items():
        if key.startswith(_APPARMOR_ANNOTATION) and not (
            value in ("", "runtime/default") or value.startswith("localhost/")
        ):
            found.append(f"metadata.annotations[{key}]: must be runtime/default or localhost/*")

    # restricted: volume types
    for v in spec.get("volumes") or []:
        kinds = set(v) - {"name"}
        if not kinds <= _VOLUME_TYPES:
            found.append(f"spec.volumes[{v['name']}]: {'/'.join(sorted(kinds - _VOLUME_TYPES))} is not an allowed type")

    # restricted: runAsNonRoot, runAsUser, seccompProfile, at pod level or on every container
    pod_non_root = pod_sc.get("runAsNonRoot")
    if pod_non_root is False:
        found.append("spec.securityContext.runAsNonRoot: must not be false")
    if pod_sc.get("runAsUser") == 0:
        found.append("spec.securityContext.runAsUser: must not be 0")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in _PROFILE_TYPES:
        found.append("spec.securityContext.seccompProfile.type: must be RuntimeDefault or Localhost")
    for path, c in containers:
        sc = c.get("securityContext") or {}
        at = f"{path}.securityContext"
        if sc.get("runAsNonRoot") is False or (sc.get("runAsNonRoot") is None and pod_non_root is not True):
            found.append(f"{at}.runAsNonRoot: must be true (here or in spec.securityContext)")
        if sc.get("runAsUser") == 0:
            found.append(f"{at}.runAsUser: must not be 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if (seccomp is not None and seccomp not in _PROFILE_TYPES) or (
            seccomp is None and pod_seccomp not in _PROFILE_TYPES
        ):
            found.append(
                f"{at}.seccompProfile.type: must be RuntimeDefault or Localhost (here or in spec.securityContext)"
            )

        # restricted: privilege escalation and capabilities, per container only
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{at}.allowPrivilegeEscalation: must be false")
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"{at}.capabilities.drop: must include ALL")
        added = [cap for cap in capabilities.get("add") or [] if cap != _ADDABLE_CAPABILITY]
        if added:
            found.append(f"{at}.capabilities.add: {', '.join(added)} not allowed (only {_ADDABLE_CAPABILITY})")
    return found
