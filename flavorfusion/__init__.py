"""FlavorFusion: culture-aware multi-document summaries of restaurant reviews."""

from flavorfusion.resources import register_resolvers

register_resolvers()

__version__ = "0.1.0"
