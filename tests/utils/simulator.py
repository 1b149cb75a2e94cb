"""The simulator's chaos ended as the real factory's is: by the factory's admin
(`DELETE /api/admin/vendor {id, deleteType: "chaos"}`), since the real factory has no
`chaos/none`. Following the chaos' link is the other way, and the service's job."""

from __future__ import annotations

import httpx

from factory_sim import DEV_ADMIN_KEY, VENDOR_ID

ADMIN_KEY = DEV_ADMIN_KEY  # the simulator's default admin key (SimulatorConfig.admin_key)
REMOVAL = {"id": VENDOR_ID, "deleteType": "chaos"}


def admin(admin_key: str = ADMIN_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_key}"}


def end_chaos(factory: httpx.Client, admin_key: str = ADMIN_KEY) -> None:
    """The admin removes the simulator vendor's chaos (running, scheduled or fixed)."""
    path = "/api/admin/vendor"
    factory.request("DELETE", path, json=REMOVAL, headers=admin(admin_key)).raise_for_status()


async def end_chaos_async(factory: httpx.AsyncClient, admin_key: str = ADMIN_KEY) -> None:
    """`end_chaos` for an async client."""
    path = "/api/admin/vendor"
    answer = await factory.request("DELETE", path, json=REMOVAL, headers=admin(admin_key))
    answer.raise_for_status()


def end_chaos_at(factory_url: str, admin_key: str = ADMIN_KEY) -> None:
    """`end_chaos` for the simulator at ``factory_url`` (a `pizza factory-sim` process)."""
    with httpx.Client(base_url=factory_url, timeout=10) as factory:
        end_chaos(factory, admin_key)
