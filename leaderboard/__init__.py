"""Leaderboard: tables rendered from result records only."""

from .tables import leaderboard_markdown, scores_frame

__all__ = ["leaderboard_markdown", "scores_frame"]
