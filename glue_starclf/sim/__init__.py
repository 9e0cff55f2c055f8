"""Mock HST star-cluster data engine (``../shared/specs/mock-hst-data.md``)."""

__all__ = []
