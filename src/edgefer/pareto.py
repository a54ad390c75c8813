"""Pareto fronts, shared by the AutoML trial tables and the comparison report."""

from __future__ import annotations

from collections.abc import Sequence


def pareto_front(points: Sequence[Sequence[float]], maximise: Sequence[bool]) -> list[int]:
    """Indices of the points that no other point dominates: at least as good on every objective
    and better on one (``maximise[k]`` says whether objective k is better high or low)."""
    signs = [-1.0 if up else 1.0 for up in maximise]
    costs = [[sign * value for sign, value in zip(signs, point)] for point in points]

    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    return [i for i, cost in enumerate(costs) if not any(dominates(other, cost) for other in costs)]
