"""A module named as a job kind module that declares neither `kind` nor `kinds`."""

from __future__ import annotations

something_else = "not a job kind"
