"""Run profiles: how big each stage runs, chosen by a notebook parameter.

* ``smoke``: the whole series in minutes on a 2-core CPU, for tests. Small but
  real: the models still learn.
* ``default``: meaningful results on a laptop-class CPU in about a quarter of
  an hour on the embedded data set (what ``make run-all`` uses).
* ``full``: sized for one modern GPU.

Each stage reads its own section (``profile.data``, ``profile.text``, ...), so
adding a stage never changes another stage's knobs. Notebooks choose a
profile by name; they never edit these numbers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .schema import DataError


@dataclasses.dataclass(frozen=True)
class DataScale:
    """Data-preparation sizes.

    Attributes:
        synthetic_items / synthetic_users: size of the generated world.
        fashion_items: catalogue items kept from the fashion data set
            (``None`` keeps all 44,446); fashion_users: simulated shoppers.
        image_size: side of the generated synthetic product images, pixels.
        cold_item_fraction: share of interacted items held out as cold-start.
    """

    synthetic_items: int
    synthetic_users: int
    fashion_items: int | None
    fashion_users: int
    image_size: int = 64
    cold_item_fraction: float = 0.1


@dataclasses.dataclass(frozen=True)
class Profile:
    """All knobs of one profile, one section per stage."""

    name: str
    data: DataScale
    text: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        data=DataScale(synthetic_items=600, synthetic_users=500,
                       fashion_items=1500, fashion_users=600, image_size=48),
    ),
    "default": Profile(
        name="default",
        data=DataScale(synthetic_items=3000, synthetic_users=3000,
                       fashion_items=8000, fashion_users=3000),
    ),
    "full": Profile(
        name="full",
        data=DataScale(synthetic_items=20000, synthetic_users=50000,
                       fashion_items=None, fashion_users=50000),
    ),
}


def get_profile(name: str) -> Profile:
    """Return the profile called ``name``; the error lists the valid names."""
    try:
        return PROFILES[name]
    except KeyError:
        raise DataError(
            f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}"
        ) from None
