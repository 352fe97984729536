"""Leaderboard: tables, plots and pages rendered from result records only."""

from .formats import leaderboard_markdown
from .render import render
from .tables import scores_frame

__all__ = ["leaderboard_markdown", "render", "scores_frame"]
