"""The organizations and users whose calls the sample records."""

from __future__ import annotations

import bisect
import random
from typing import NamedTuple

from ingest.sample.constants import NO_ORGANIZATION_SHARE


class User(NamedTuple):
    user_id: str
    organization_id: str | None


class Population:
    """4-6 organizations of 3-10 users, plus two users without an organization."""

    def __init__(self, rng: random.Random) -> None:
        self.users: list[User] = []
        weights: list[float] = []
        for _ in range(rng.randint(4, 6)):
            organization_id = f"org_{rng.getrandbits(48):012x}"
            organization_weight = rng.choice((1.0, 2.0, 3.0, 5.0, 8.0))
            for _ in range(rng.randint(3, 10)):
                self.users.append(User(f"user_{rng.getrandbits(48):012x}", organization_id))
                weights.append(organization_weight * rng.uniform(0.1, 1.0))

        # Two users without an organization share NO_ORGANIZATION_SHARE of all picks.
        unaffiliated_weight = sum(weights) * NO_ORGANIZATION_SHARE / (1 - NO_ORGANIZATION_SHARE)
        for _ in range(2):
            self.users.append(User(f"user_{rng.getrandbits(48):012x}", None))
            weights.append(unaffiliated_weight / 2)

        self._cumulative_weights: list[float] = []
        running = 0.0
        for weight in weights:
            running += weight
            self._cumulative_weights.append(running)

    def pick(self, rng: random.Random) -> User:
        draw = rng.random() * self._cumulative_weights[-1]
        return self.users[bisect.bisect(self._cumulative_weights, draw)]
