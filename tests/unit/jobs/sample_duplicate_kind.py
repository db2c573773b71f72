"""A job kind module that declares a kind under a built-in's name."""

from __future__ import annotations

from dataclasses import replace

from shared.jobs.kinds.echo import kind as builtin_echo

kind = replace(builtin_echo, description="A second echo.")
