"""Who may do what: principals and the device-coverage rule of the Organization API."""

from __future__ import annotations

from dataclasses import dataclass

from pinbase.domain.errors import Forbidden, NotFound
from pinbase.domain.model import Catalog, Device, Permission

VIEW_PERMISSIONS = frozenset({Permission.OWN_DEVICES_VIEW, Permission.ORG_DEVICES_VIEW})


@dataclass(frozen=True, slots=True)
class Principal:
    """The bearer of an access token: a whole organization, or one user of it."""

    org_id: int
    user_id: int | None
    permissions: frozenset[Permission]

    @property
    def sees_whole_org(self) -> bool:
        return Permission.ORG_DEVICES_VIEW in self.permissions

    def covers(self, device: Device) -> bool:
        """A device is covered when it is in the principal's organization and visible to it."""
        if device.org_id != self.org_id:
            return False
        if self.sees_whole_org:
            return True
        return (
            Permission.OWN_DEVICES_VIEW in self.permissions
            and self.user_id is not None
            and device.owner_id == self.user_id
        )

    def require(self, permission: Permission) -> None:
        if permission not in self.permissions:
            raise Forbidden(f"Access denied: the {permission.value} permission is required.")

    def require_view(self) -> None:
        if not self.permissions & VIEW_PERMISSIONS:
            raise Forbidden(
                "Access denied: the OWN_DEVICES_VIEW or ORG_DEVICES_VIEW permission is required."
            )


def device_not_found(device_id: int) -> NotFound:
    return NotFound(
        f"Device with identifier {device_id} is not found or belong to another organization."
    )


def covered_device(catalog: Catalog, principal: Principal, device_id: int) -> Device:
    """The device, if the principal covers it; otherwise the same 404 as a missing device."""
    device = catalog.devices.get(device_id)
    if device is None or not principal.covers(device):
        raise device_not_found(device_id)
    return device
