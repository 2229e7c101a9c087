"""Kept for existing imports: claiming lives in the store (sagas/engine/store/claim.py)."""

from sagas.engine.store import Claimed, next_due_at, saga_claim

__all__ = ["Claimed", "next_due_at", "saga_claim"]
