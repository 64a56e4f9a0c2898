"""Registers FlavorFusion's config schemas whenever Hydra scans its plugins, so that every compose of `conf/` finds
them, also where nothing imported flavorfusion first (DVC composing conf/pipeline.yaml into params.yaml)."""

import flavorfusion.config  # noqa: F401
