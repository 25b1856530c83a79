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
    """All knobs of one profile, one section per stage.

    ``data`` is typed; the later stages' sections are keyword dictionaries that
    the stage passes on to its ``recsys_utils`` function (e.g.
    ``text.load_text_encoder(**profile.text)``).
    """

    name: str
    data: DataScale
    text: dict[str, Any] = dataclasses.field(default_factory=dict)
    fusion: dict[str, Any] = dataclasses.field(default_factory=dict)
    retrieval: dict[str, Any] = dataclasses.field(default_factory=dict)
    ranking: dict[str, Any] = dataclasses.field(default_factory=dict)
    compress: dict[str, Any] = dataclasses.field(default_factory=dict)
    search: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PROFILE_NAMES = ("smoke", "default", "full")

# One block per stage, one entry per profile.

_DATA = {
    "smoke": DataScale(synthetic_items=600, synthetic_users=500,
                       fashion_items=1500, fashion_users=600, image_size=48),
    "default": DataScale(synthetic_items=3000, synthetic_users=3000,
                         fashion_items=8000, fashion_users=3000),
    "full": DataScale(synthetic_items=20000, synthetic_users=50000,
                      fashion_items=None, fashion_users=50000),
}

# Text encoder (recsys_utils.text.load_text_encoder(**profile.text)): short
# item texts fit in 64 tokens; "auto" = bfloat16 where the hardware has it.
_TEXT = {
    "smoke": dict(max_length=64, batch_size=64, pooling="mean", precision="auto"),
    "default": dict(max_length=128, batch_size=64, pooling="mean", precision="auto"),
    "full": dict(max_length=128, batch_size=256, pooling="mean", precision="auto"),
}

# Image encoder and fusion (notebook 03).
_FUSION: dict[str, dict[str, Any]] = {
    "smoke": {},
    "default": {},
    "full": {},
}

# Two-tower retrieval and serving (notebook 04).
_RETRIEVAL: dict[str, dict[str, Any]] = {
    "smoke": {},
    "default": {},
    "full": {},
}

# Ranking and the chain (notebook 05).
_RANKING: dict[str, dict[str, Any]] = {
    "smoke": {},
    "default": {},
    "full": {},
}

# Quantization (notebook 06).
_COMPRESS: dict[str, dict[str, Any]] = {
    "smoke": {},
    "default": {},
    "full": {},
}

# Product search (notebook 08).
_SEARCH: dict[str, dict[str, Any]] = {
    "smoke": {},
    "default": {},
    "full": {},
}

PROFILES: dict[str, Profile] = {
    name: Profile(name=name, data=_DATA[name], text=_TEXT[name], fusion=_FUSION[name],
                  retrieval=_RETRIEVAL[name], ranking=_RANKING[name],
                  compress=_COMPRESS[name], search=_SEARCH[name])
    for name in PROFILE_NAMES
}


def get_profile(name: str) -> Profile:
    """Return the profile called ``name``; the error lists the valid names."""
    try:
        return PROFILES[name]
    except KeyError:
        raise DataError(
            f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}"
        ) from None
