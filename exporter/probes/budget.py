"""The body budget: how many decoded body bytes one process's probes may keep at once.

A probe keeps a body only when a check reads its text, up to its `body_size_limit`; with many
probes at once that adds up (64 x 10 MiB). The budget hands out bytes as bodies arrive, and a
probe it cannot serve waits (its connection paused: back-pressure, not a failure) until others
give theirs back, within its own deadline.

Handing out bytes a chunk at a time could deadlock: every probe holding part of its body and
waiting for the rest. So a grant is made only if afterwards some order still lets every probe
holding bytes finish (the banker's algorithm, for one resource): each claim says the most its
body may need, and at least one holder can always get all it still needs.
"""

from __future__ import annotations

from collections.abc import Callable

DEFAULT_BODY_BUDGET = 64 * 1024 * 1024


class BodyBudget:
    """Decoded body bytes that one process's probes may keep at once, granted without deadlock."""

    def __init__(self, total: int = DEFAULT_BODY_BUDGET) -> None:
        self.total = total
        self.used = 0
        self.peak = 0  # the most ever kept at once
        self.waits = 0  # how many times a probe had to wait for bytes
        self._holders: set[BodyClaim] = set()  # claims holding bytes
        self._waiting: list[BodyClaim] = []  # in the order they began to wait

    @property
    def waiting(self) -> int:
        """Probes waiting for bytes now."""
        return len(self._waiting)

    def resize(self, total: int) -> None:
        """Change the bound (a reload); bytes held stay held, and waiting probes get what now fits."""
        self.total = total
        self._serve_waiting()

    def claim(self, most: int) -> BodyClaim:
        """A claim for one response's body of at most `most` bytes; raises ValueError if that is over the budget."""
        if most > self.total:
            raise ValueError(f"a body of up to {most} bytes cannot fit in the body budget of {self.total} bytes")
        return BodyClaim(self, most)

    def _request(self, claim: BodyClaim, amount: int) -> bool:
        if amount <= 0:
            return True
        if claim.held == 0 and any(c.held == 0 for c in self._waiting):
            # A newcomer queues behind newcomers already waiting; a holder may pass them, as finishing frees bytes.
            self._enqueue(claim, amount)
            return False
        if not self._safe(claim, amount):
            self._enqueue(claim, amount)
            return False
        self._grant(claim, amount)
        return True

    def _enqueue(self, claim: BodyClaim, amount: int) -> None:
        claim.wanted = amount
        self._waiting.append(claim)
        self.waits += 1

    def _grant(self, claim: BodyClaim, amount: int) -> None:
        claim.held += amount
        self._holders.add(claim)
        self.used += amount
        self.peak = max(self.peak, self.used)

    def _safe(self, claim: BodyClaim, amount: int) -> bool:
        """Whether, with `amount` more for `claim`, every holder could still finish in some order."""
        if self.used + amount > self.total:
            return False
        free = self.total - self.used - amount
        holders = [(c.most - c.held, c.held) for c in self._holders if c is not claim]
        holders.append((claim.most - claim.held - amount, claim.held + amount))
        for need, held in sorted(holders):
            if need > free:
                return False
            free += held
        return True

    def _release(self, claim: BodyClaim) -> None:
        if claim in self._waiting:
            self._waiting.remove(claim)
        claim.wanted = 0
        if claim.held:
            self.used -= claim.held
            claim.held = 0
            self._holders.discard(claim)
            self._serve_waiting()

    def _serve_waiting(self) -> None:
        """Grant what can be granted now, in the order probes began to wait (newcomers strictly in turn)."""
        blocked_newcomer = False
        for claim in list(self._waiting):
            if claim.held == 0 and blocked_newcomer:
                continue
            if self._safe(claim, claim.wanted):
                self._waiting.remove(claim)
                self._grant(claim, claim.wanted)
                claim.wanted = 0
                if claim.on_grant is not None:
                    claim.on_grant()
            elif claim.held == 0:
                blocked_newcomer = True


class BodyClaim:
    """One response's share of the budget: bytes taken as the body arrives, all given back by `release`."""

    __slots__ = ("_budget", "held", "most", "on_grant", "wanted")

    def __init__(self, budget: BodyBudget, most: int) -> None:
        self._budget = budget
        self.most = most
        self.held = 0
        self.wanted = 0  # bytes asked for and not yet granted
        self.on_grant: Callable[[], object] | None = None  # called (soon, on the loop) when `wanted` is granted

    @property
    def waiting(self) -> bool:
        """Whether this claim waits for bytes."""
        return self.wanted > 0

    def take(self, amount: int) -> bool:
        """Take `amount` more bytes now if the budget allows; else wait for them (`on_grant` says when)."""
        return self._budget._request(self, amount)

    def release(self) -> None:
        """Give back every byte held and stop waiting (the response is done with, however it ended)."""
        self._budget._release(self)
