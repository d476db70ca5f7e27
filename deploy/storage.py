"""Block-storage volumes for stateful data: created by the Pulumi program, mounted by cloud-init, used by the stacks.

Each volume is attached to one node and mounted at ``/mnt/<name>``; the compose files bind their named volumes
into sub-folders of these mounts, so a droplet can be rebuilt without losing data.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BlockVolume:
    name: str  # DigitalOcean volume name: lowercase letters, digits and hyphens
    node: str
    size_gb: int
    description: str

    @property
    def mount_point(self) -> str:
        return f"/mnt/{self.name}"

    @property
    def device(self) -> str:
        """How DigitalOcean exposes an attached volume inside the droplet."""
        return f"/dev/disk/by-id/scsi-0DO_Volume_{self.name}"


VOLUMES: tuple[BlockVolume, ...] = (
    BlockVolume("oltp-postgres", "vps_1", 50, "PostgreSQL OLTP data directory"),
    BlockVolume("dagster-postgres", "vps_1", 10, "PostgreSQL for Dagster's run/event storage"),
    BlockVolume("seaweedfs", "vps_1", 200, "SeaweedFS volumes, filer metadata and the backups"),
    BlockVolume("edge-state", "vps_1", 1, "OpenVPN PKI and the TLS proxy's certificates"),
    BlockVolume("clickhouse", "vps_3", 200, "ClickHouse shards and Keeper"),
)


def volumes_on(node: str) -> list[BlockVolume]:
    return [v for v in VOLUMES if v.node == node]


def volume(name: str) -> BlockVolume:
    return next(v for v in VOLUMES if v.name == name)
