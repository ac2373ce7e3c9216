"""pygqa: Grouped Query Attention as a backend-agnostic Keras 3 layer, for Python and R."""

from pygqa.compose import layer_group_query_attention
from pygqa.conversion import from_keras, from_multi_head_attention, to_keras
from pygqa.distribution import layout_map
from pygqa.keras_hub import from_keras_hub
from pygqa.layer import GroupQueryAttention
from pygqa.saving import installed_version, load_model

__version__ = installed_version()

__all__ = [
    "GroupQueryAttention",
    "layer_group_query_attention",
    "load_model",
    "from_multi_head_attention",
    "from_keras",
    "to_keras",
    "from_keras_hub",
    "layout_map",
    "__version__",
]
