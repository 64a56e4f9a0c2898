"""FlavorFusion: culture-aware multi-document summaries of restaurant reviews."""

import flavorfusion.config  # noqa: E402,F401  (registers the config schemas in Hydra's ConfigStore)
from flavorfusion.import_noise import drop_torchao_import_noise, quiet_libraries
from flavorfusion.resources import register_resolvers

register_resolvers()
drop_torchao_import_noise()  # before anything imports transformers' model classes, hence torchao
quiet_libraries()

__version__ = "0.1.0"
